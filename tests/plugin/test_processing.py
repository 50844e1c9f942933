"""The "EO Dispatch" Processing provider against the real daemon and the fake backend:
an algorithm per known service with parameters from /params, run through
processing.run with an extent in a projected CRS; it submits, waits with progress, and
returns the result layers; cancelling the feedback cancels the job."""

import threading
import time

import pytest

from conftest import PV_UDP, daemon_catalog, manifest_layer_names, publish_when_finished, wait_until


@pytest.fixture
def provider(qgis_app, qgis_processing, daemon):
    from qgis.core import QgsApplication

    from eodispatch.core.client import DaemonClient
    from eodispatch.core.services import ServiceCatalog
    from eodispatch.processing.provider import EoDispatchProvider

    services, params = daemon_catalog(DaemonClient())
    catalog = ServiceCatalog(None, persist=False)
    catalog.set_data(services, params)
    p = EoDispatchProvider(catalog)
    assert QgsApplication.processingRegistry().addProvider(p)
    yield p
    QgsApplication.processingRegistry().removeProvider(p)


def test_service_algorithms_have_parameters_from_params(provider):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("eodispatch:eurac_pv_farm_detection")
    assert alg is not None and alg.displayName() == "Photovoltaic farms mapping"
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names[:3] == ["spatial_extent", "temporal_extent_start", "temporal_extent_end"], names
    assert {"TITLE", "FORMAT", "ENDPOINT"} <= set(names)
    assert alg.parameterDefinition("ENDPOINT").defaultValue() == "https://openeofed.dataspace.copernicus.eu"
    assert alg.parameterDefinition("spatial_extent").type() == "extent"
    assert alg.parameterDefinition("temporal_extent_start").type() == "datetime"
    assert [o.name() for o in alg.outputDefinitions()] == ["OUTPUT_LAYERS", "OUTPUT_FOLDER", "JOB_ID"]
    assert QgsApplication.processingRegistry().algorithmById("eodispatch:run_service") is not None


def test_algorithm_runs_a_job_and_returns_layers(provider, daemon, fake_backend):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils, QgsProject

    # The registered algorithm, pointed at the fake through its (advanced) backend field.
    alg = "eodispatch:eurac_pv_farm_detection"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    publisher = {}

    def publish():  # the daemon's published folder, once the job has finished
        deadline = time.time() + 30
        while time.time() < deadline:
            jobs = daemon.api("GET", "/unit_jobs")[1]
            if jobs:
                publisher["t"] = publish_when_finished(daemon, jobs[0]["id"])
                return
            time.sleep(0.1)

    threading.Thread(target=publish, daemon=True).start()
    result = processing.run(alg, {
        "spatial_extent": "600000,606000,5310000,5316000 [EPSG:32633]",
        "temporal_extent_start": "2023-05-01",
        "temporal_extent_end": "2023-09-30",
        "TITLE": "PV from Processing",
        "FORMAT": 0,
        "ENDPOINT": fake_backend,
    }, context=context, feedback=feedback)
    job = daemon.api("GET", f"/unit_jobs/{result['JOB_ID']}")[1]
    assert job["status"] == "finished" and job["title"] == "PV from Processing"
    box = job["parameters"]["spatial_extent"]
    assert 16.3 < box["west"] < box["east"] < 16.5 and 47.9 < box["south"] < box["north"] < 48.1, box
    assert job["parameters"]["temporal_extent"] == ["2023-05-01", "2023-09-30"]
    assert result["OUTPUT_FOLDER"] == str(publisher["t"].folder)
    # processing.run hands back the layers themselves for a multiple-layers output.
    layers = [QgsProcessingUtils.mapLayerFromString(i, context) if isinstance(i, str) else i
              for i in result["OUTPUT_LAYERS"]]
    assert [l.name() for l in layers] == manifest_layer_names(result["OUTPUT_FOLDER"])
    assert layers
    assert all(l.isValid() for l in layers)
    assert progress and progress[-1] == 100
    assert set(context.layersToLoadOnCompletion()) == {l.id() for l in layers}


def test_generic_algorithm_and_cancellation(provider, daemon, fake_backend):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    # Cancel as soon as the job exists on the daemon.
    def cancel_when_submitted():
        deadline = time.time() + 20
        while time.time() < deadline:
            if daemon.api("GET", "/unit_jobs")[1]:
                feedback.cancel()
                return
            time.sleep(0.05)

    threading.Thread(target=cancel_when_submitted, daemon=True).start()
    with pytest.raises(QgsProcessingException):
        processing.run("eodispatch:run_service", {
            "ENDPOINT": fake_backend,
            "APPLICATION": PV_UDP,
            "EXTENT": "16.34,16.41,47.96,48.0 [EPSG:4326]",
            "PARAMETERS": '{"temporal_extent": ["2023-05-01", "2023-09-30"]}',
            "TITLE": "generic",
            "FORMAT": 0,
        }, context=context, feedback=feedback)
    jobs = daemon.api("GET", "/unit_jobs")[1]
    assert len(jobs) == 1
    assert jobs[0]["parameters"]["spatial_extent"] == {"west": 16.34, "south": 47.96, "east": 16.41, "north": 48.0}
    wait_until(lambda: daemon.api("GET", f"/unit_jobs/{jobs[0]['id']}")[1]["status"] == "canceled", timeout=15,
               message="job canceled on the daemon")


def test_algorithm_runs_inside_a_model(provider, daemon, fake_backend):
    """The graphical modeler's way: a model with an extent input feeding the generic
    algorithm; running the model submits the job with that extent and completes."""
    import processing
    from qgis.core import (QgsProcessingContext, QgsProcessingFeedback, QgsProcessingModelAlgorithm,
                           QgsProcessingModelChildAlgorithm, QgsProcessingModelChildParameterSource,
                           QgsProcessingModelParameter, QgsProcessingParameterExtent, QgsProject)

    model = QgsProcessingModelAlgorithm("pv_model", "tests")
    model.addModelParameter(QgsProcessingParameterExtent("AOI", "Area"), QgsProcessingModelParameter("AOI"))
    child = QgsProcessingModelChildAlgorithm("eodispatch:run_service")
    child.setChildId("eo")
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    child.addParameterSources("ENDPOINT", [static(fake_backend)])
    child.addParameterSources("APPLICATION", [static(PV_UDP)])
    child.addParameterSources("PARAMETERS", [static('{"temporal_extent": ["2023-06-01", "2023-06-30"]}')])
    child.addParameterSources("TITLE", [static("from a model")])
    child.addParameterSources("FORMAT", [static(0)])
    child.addParameterSources("EXTENT", [QgsProcessingModelChildParameterSource.fromModelParameter("AOI")])
    model.addChildAlgorithm(child)
    ok, errors = model.validate()
    assert ok, errors

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    processing.run(model, {"AOI": "16.35,16.40,47.97,48.0 [EPSG:4326]"}, context=context,
                   feedback=QgsProcessingFeedback())
    jobs = daemon.api("GET", "/unit_jobs")[1]
    assert [j["title"] for j in jobs] == ["from a model"]
    assert jobs[0]["status"] == "finished"
    assert jobs[0]["parameters"]["spatial_extent"] == {"west": 16.35, "south": 47.97, "east": 16.4, "north": 48.0}
    assert jobs[0]["parameters"]["temporal_extent"] == ["2023-06-01", "2023-06-30"]


def test_algorithm_in_a_background_task_keeps_the_ui_thread_free(provider, daemon, fake_backend):
    """As the Processing dialog runs it: in a QgsTask (worker thread). The GUI thread's
    event loop keeps turning all along (a 20 ms timer never waits more than 0.25 s)."""
    from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext,
                           QgsProcessingFeedback, QgsProject)
    from qgis.PyQt.QtCore import QTimer

    alg = QgsApplication.processingRegistry().algorithmById("eodispatch:run_service")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    params = {"ENDPOINT": fake_backend, "APPLICATION": PV_UDP, "EXTENT": "16.34,16.41,47.96,48.0 [EPSG:4326]",
              "PARAMETERS": '{"temporal_extent": ["2023-05-01", "2023-09-30"]}', "TITLE": "in a task", "FORMAT": 0}
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    done = {}
    task.executed.connect(lambda ok, results: done.update(ok=ok, results=results))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)

    QgsApplication.taskManager().addTask(task)
    wait_until(lambda: "ok" in done, timeout=40, message="task finished")
    timer.stop()
    assert done["ok"], feedback.textLog()
    assert done["results"]["JOB_ID"] == 1
    assert len(done["results"]["OUTPUT_LAYERS"]) == len(manifest_layer_names(done["results"]["OUTPUT_FOLDER"])) > 0
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(f"GUI thread: {len(ticks)} ticks, longest gap {max(gaps) * 1000:.0f} ms")
    assert len(ticks) > 50 and max(gaps) < 0.25, max(gaps)


def test_batch_mode_runs_each_row_as_its_own_job(provider, daemon, fake_backend):
    """As the batch dialog does (processing/gui/BatchAlgorithmDialog.py): a fresh algorithm
    instance and context per row, executed one after the other."""
    from processing.core.ProcessingConfig import ProcessingConfig  # noqa: F401 (Processing initialised)
    from processing.gui.AlgorithmExecutor import execute
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject

    rows = [
        {"EXTENT": "16.35,16.38,47.97,47.99 [EPSG:4326]", "TITLE": "batch row 1"},
        {"EXTENT": "600000,603000,5310000,5313000 [EPSG:32633]", "TITLE": "batch row 2"},
    ]
    outputs = []
    for row in rows:
        alg = QgsApplication.processingRegistry().createAlgorithmById("eodispatch:run_service")
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = QgsProcessingFeedback()
        params = dict(row, ENDPOINT=fake_backend, APPLICATION=PV_UDP, FORMAT=0,
                      PARAMETERS='{"temporal_extent": ["2023-05-01", "2023-09-30"]}')
        ok, results = execute(alg, params, context, feedback)
        assert ok, results
        outputs.append(results)
    ids = [r["JOB_ID"] for r in outputs]
    assert len(set(ids)) == 2
    for job_id, row, results in zip(ids, rows, outputs):
        job = daemon.api("GET", f"/unit_jobs/{job_id}")[1]
        assert job["title"] == row["TITLE"] and job["status"] == "finished", job
        assert results["OUTPUT_FOLDER"] and results["OUTPUT_LAYERS"], results
    assert outputs[0]["OUTPUT_FOLDER"] != outputs[1]["OUTPUT_FOLDER"]
