"""The results folder's contract on the plugin's side (docs/results-folder.md,
docs/job.schema.json, docs/task.schema.json): the folders these tests write
(jobfolder.py, taskfolder.py) and a folder the daemon publishes follow the schemas, the
plugin's manifest reader loads each of them, and the schemas can fail."""

import copy
import json
import uuid as _uuid

import pytest
from jsonschema import Draft202012Validator

from conftest import pv_job, publish_when_finished
from jobfolder import write_job_folder
from results_schema import check_folder, job_json_errors, load, task_json_errors
from taskfolder import TaskFolder


def _map_layer_names(data):
    return [x["name"] for x in data["layers"] if x["kind"] in ("raster", "vector") and x["readable"]]


def test_the_schemas_are_json_schema_2020_12():
    for name in ("job.schema.json", "task.schema.json"):
        schema = load(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_written_job_and_task_folders_follow_the_schemas_and_load(qgis_app, tmp_path):
    from eodispatch.core.manifest import create_layers, read_any_manifest, read_manifest

    results = tmp_path / "results"
    plain = write_job_folder(results, 1, str(_uuid.uuid4()), "Plain")
    classes = write_job_folder(results, 2, str(_uuid.uuid4()), "Classes", with_vector=False, style={
        "type": "palette", "band": 1,
        "classes": [{"value": 0, "color": "#d9d9d9", "label": "0"}, {"value": 1, "color": "#e41a1c", "label": "1"}]})
    for folder in (plain, classes):
        assert check_folder(folder) == 1
        m = read_manifest(folder)
        loaded = create_layers(m)
        assert [l.name() for l in loaded.layers] == _map_layer_names(m.data) and loaded.skipped == []

    task = TaskFolder(results, 3, str(_uuid.uuid4()), "Mosaic")
    task.add_tile(4, (16.30, 47.96, 16.32, 47.98))
    task.add_tile(5, (16.32, 47.96, 16.34, 47.98))
    folder = task.publish(final=True)
    assert check_folder(folder) == 3, "task.json and two tiles"
    m = read_any_manifest(folder)
    assert m.is_task and m.final
    loaded = create_layers(m)
    assert [l.name() for l in loaded.layers] == ["Mosaic"] and loaded.skipped == []


def test_a_folder_the_daemon_publishes_follows_the_schema_and_loads(qgis_app, daemon, fake_backend):
    from eodispatch.core.manifest import create_layers, read_manifest

    status, job = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "Published"))
    assert status == 201, job
    publisher = publish_when_finished(daemon, job["id"])
    publisher.join(60)
    assert publisher.folder is not None, "not published"
    assert check_folder(publisher.folder) == 1
    m = read_manifest(publisher.folder)
    assert m.job_id == job["id"] and m.uuid == job["uuid"]
    loaded = create_layers(m)
    assert [l.name() for l in loaded.layers] == _map_layer_names(m.data) != []
    assert loaded.skipped == []


@pytest.mark.parametrize(
    "at, value, reported",
    [
        ("eodispatch_manifest", 2, "/eodispatch_manifest"),
        ("job/status", "done", "/job/status"),
        ("job/created", "2026-11-25", "/job/created"),
        ("layers/0/kind", "image", "/layers/0/kind"),
        ("layers/0/error", "readable, yet an error", "/layers/0/error"),
        ("layers/0/path", "../openEO.tif", "/layers/0/path"),
        ("layers/0/colour", "red", "/layers/0"),
        ("layers/0/style/type", "fancy", "/layers/0/style"),
        ("layers/1/layers/0/feature_count", -1, "/layers/1/layers/0/feature_count"),
        ("service/application", None, "/service/application"),
    ],
)
def test_a_planted_error_in_job_json_is_found(tmp_path, at, value, reported):
    folder = write_job_folder(tmp_path, 1, str(_uuid.uuid4()), "Planted")
    doc = json.loads((folder / "job.json").read_text())
    assert job_json_errors(doc) == []
    assert any(e.startswith(reported + ":") for e in job_json_errors(_planted(doc, at, value))), at


@pytest.mark.parametrize(
    "at, value, reported",
    [
        ("final", "yes", "/final"),
        ("counts/finished", -1, "/counts/finished"),
        ("tiles/0/folder", "a/b", "/tiles/0/folder"),
        ("mosaic/kind", "zip", "/mosaic/kind"),
        ("layers/0/asset", "openEO.tif", "/layers/0"),
    ],
)
def test_a_planted_error_in_task_json_is_found(tmp_path, at, value, reported):
    task = TaskFolder(tmp_path, 1, str(_uuid.uuid4()), "Planted")
    task.add_tile(2, (16.30, 47.96, 16.32, 47.98))
    doc = json.loads((task.publish() / "task.json").read_text())
    assert task_json_errors(doc) == []
    assert any(e.startswith(reported + ":") for e in task_json_errors(_planted(doc, at, value))), at


def _planted(doc, at, value):
    doc = copy.deepcopy(doc)
    *parents, key = at.split("/")
    target = doc
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if isinstance(target, list):
        target[int(key)] = value
    else:
        target[key] = value
    return doc
