"""The results folder's contract as a check for the plugin tests: ``job.json`` and
``task.json`` validated against ``docs/job.schema.json`` and ``docs/task.schema.json``
(JSON Schema 2020-12; the same files the daemon's and the GDAL helper's tests use), so
that the folders these tests write and load are the ones the daemon publishes.

Used by ``jobfolder.py`` and ``taskfolder.py`` (every folder they write), by
``conftest.manifest_layer_names`` (folders the daemon published) and by
``test_results_schema.py``.
"""

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, List

from jsonschema import Draft202012Validator

DOCS = Path(__file__).resolve().parents[2] / "docs"
MANIFEST = "job.json"
TASK_MANIFEST = "task.json"


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def validator(name: str, pointer: str = "") -> Draft202012Validator:
    """A validator of schema ``name`` of ``docs/`` (or of its definition at ``pointer``,
    e.g. ``/$defs/layer``); references between the two schemas are resolved from the
    files, nothing is fetched."""
    schemas = {s["$id"]: s for s in (load("job.schema.json"), load("task.schema.json"))}
    root = load(name)
    schema = {"$ref": f"{root['$id']}#{pointer}"} if pointer else root
    try:  # jsonschema >= 4.18
        from referencing import Registry, Resource

        registry = Registry().with_resources((i, Resource.from_contents(s)) for i, s in schemas.items())
        return Draft202012Validator(schema, registry=registry)
    except ImportError:  # Debian 12's 4.10
        from jsonschema import RefResolver

        return Draft202012Validator(schema, resolver=RefResolver.from_schema(root, store=schemas))


def errors(name: str, doc: Any, pointer: str = "") -> List[str]:
    """What is wrong with ``doc``: one line per error (``/layers/0/kind: ...``)."""
    found = validator(name, pointer).iter_errors(doc)
    return sorted("/" + "/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in found)


def job_json_errors(doc: Any) -> List[str]:
    return errors("job.schema.json", doc)


def task_json_errors(doc: Any) -> List[str]:
    return errors("task.schema.json", doc)


def check_job_json(doc: Any) -> None:
    """Raises AssertionError, naming every error, unless ``doc`` is a valid job.json."""
    found = job_json_errors(doc)
    assert not found, "job.json breaks docs/job.schema.json:\n" + "\n".join(found) + "\n" + json.dumps(doc, indent=1)


def check_task_json(doc: Any) -> None:
    """Raises AssertionError, naming every error, unless ``doc`` is a valid task.json."""
    found = task_json_errors(doc)
    assert not found, "task.json breaks docs/task.schema.json:\n" + "\n".join(found) + "\n" + json.dumps(doc, indent=1)


def check_folder(folder) -> int:
    """Validates a published folder: its job.json, or its task.json and every tile
    folder's job.json. How many documents were checked."""
    folder = Path(folder)
    if (folder / TASK_MANIFEST).is_file():
        check_task_json(json.loads((folder / TASK_MANIFEST).read_text(encoding="utf-8")))
        tiles = [p for p in sorted(folder.iterdir()) if (p / MANIFEST).is_file()]
        for tile in tiles:
            check_job_json(json.loads((tile / MANIFEST).read_text(encoding="utf-8")))
        return 1 + len(tiles)
    check_job_json(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
    return 1
