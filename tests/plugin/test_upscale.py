"""Upscaling end to end: from an area drawn on the map to one mosaic layer.

Against the real daemon and the fake backend: a polygon drawn on the canvas with the
dock's polygon tool, the grid cells shown (with their count) before submitting, the
upscale task as one row of the job list expanding into its tiles, each tile's
footprint coloured by status, cancel all / retry failed, the mosaic loaded as ONE layer
(not a group per tile); the area from the features of a layer; the Processing
algorithm. Without the daemon (task folders written as it publishes them): the mosaic
layer is reopened in place as task.json is republished — same layer, place and style,
the new extent — and QGIS never writes the daemon's VRT back."""

import hashlib
import json
import time
import uuid as _uuid
from pathlib import Path

import pytest

from conftest import PV_UDP, daemon_catalog, wait_until
from taskfolder import TaskFolder

# Around Vienna, in UTM 33N (the canvas CRS of these tests).
POLYGON_UTM = [(598000, 5334000), (610000, 5333000), (611000, 5343000), (599000, 5344000)]


def task_groups(project):
    from eodispatch.core.manifest import PROP_TASK_ID, _all_groups

    return [g for g in _all_groups(project.layerTreeRoot()) if g.customProperty(PROP_TASK_ID) is not None]


def job_groups(project):
    from eodispatch.core.manifest import PROP_JOB_UUID, PROP_TASK_ID, _all_groups

    return [g for g in _all_groups(project.layerTreeRoot())
            if g.customProperty(PROP_JOB_UUID) and g.customProperty(PROP_TASK_ID) is None]


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def click(canvas, tool, x, y, button=None):
    """A mouse click on the canvas at map coordinates (x, y), as the map tool gets it."""
    from qgis.core import QgsPointXY
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    button = button or Qt.MouseButton.LeftButton
    pixel = canvas.getCoordinateTransform().transform(QgsPointXY(x, y))
    pos = QPoint(round(pixel.x()), round(pixel.y()))
    tool.canvasPressEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonPress, pos, button))
    tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.Type.MouseButtonRelease, pos, button))


@pytest.fixture
def plugin(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    import eodispatch

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    qgis_canvas.resize(800, 600)
    qgis_canvas.setExtent(QgsRectangle(590000, 5325000, 626000, 5353000))
    p = eodispatch.classFactory(qgis_iface)
    p.initGui()
    p.start()
    wait_until(lambda: p.stream.is_connected, message="event stream")
    yield p
    p.unload()


def pick_service(dock, fake_backend, title=None):
    dock.select_service(fake_backend, PV_UDP)
    wait_until(lambda: "spatial_extent" in dock.form.editors and dock.upscale_check.isEnabled()
               and dock.service_view is not None, message="form")
    if title is not None:
        dock.title_edit.setText(title)
        dock.title_edit.textEdited.emit(title)  # typed: kept


def test_drawn_polygon_to_the_loaded_mosaic(plugin, qgis_canvas, daemon, fake_backend):
    from qgis.core import QgsProject, QgsRasterLayer

    from eodispatch.core.footprints import STATUS_COLORS
    from eodispatch.core.upscale import PREVIEW_NAME

    dock = plugin.dock
    pick_service(dock, fake_backend, "PV farms upscaled")
    dock.upscale_check.setChecked(True)
    extent_box = dock.form.editors["spatial_extent"].parentWidget()
    assert extent_box.isHidden(), "the extent parameter is the grid's now"
    # The form's extent is the first area: its cells come at once.
    wait_until(lambda: dock.upscale.cells and not dock.upscale.busy, message="cells of the form's extent")
    assert dock.upscale.area_text == "the extent of the form"

    # Draw the polygon: four clicks, a right click closes it.
    dock.upscale.polygon_button.click()
    tool = dock.upscale.tool
    assert tool is not None and qgis_canvas.mapTool() is tool
    for x, y in POLYGON_UTM:
        click(qgis_canvas, tool, x, y)
    from qgis.PyQt.QtCore import Qt

    click(qgis_canvas, tool, *POLYGON_UTM[-1], button=Qt.MouseButton.RightButton)
    assert dock.upscale.area_text == "a drawn polygon"
    assert qgis_canvas.mapTool() is not tool
    wait_until(lambda: not dock.upscale.busy, message="cells of the drawn polygon")
    cells = list(dock.upscale.cells)
    n = len(cells)
    assert 2 <= n <= 6, (n, dock.upscale.area.asWkt(3))
    # What the daemon answers for the same polygon (lon/lat), drawn before submitting.
    area = dock.upscale.area
    assert area.boundingBox().xMinimum() > 16.0 and area.boundingBox().xMaximum() < 16.8
    _, answer = daemon.api("POST", "/tiles", {"grid": "20x20km", "aoi": json.loads(area.asJson(6))})
    assert len(answer["geometries"]) == n
    preview = dock.upscale.preview.layer()
    assert preview is not None and preview.name() == PREVIEW_NAME
    assert dock.upscale.preview.cell_count() == n and preview.featureCount() == n + 1  # cells + the area
    assert dock.upscale.status.text().startswith(f"{n} cells of 20 km")
    assert dock.submit_button.text() == f"Submit upscale task ({n} tiles)"

    dock.submit()
    wait_until(lambda: dock.last_task is not None, message="task submitted")
    tid = dock.last_task["id"]
    task = daemon.api("GET", f"/upscale_tasks/{tid}")[1]
    assert task["title"] == "PV farms upscaled" and task["dimension"]["name"] == "spatial_extent"
    assert len(task["dimension"]["values"]) == n == len(task["jobs"])
    west = min(v["west"] for v in task["dimension"]["values"])
    assert 16.0 < west < 16.4, task["dimension"]["values"]
    assert "spatial_extent" not in task["parameters"]
    assert task["parameters"]["temporal_extent"]
    assert dock.upscale.preview.layer() is None, "the preview made way for the tiles' footprints"
    assert dock.tabs.currentWidget() is dock.job_list

    # One row for the task, expanding into its tiles.
    job_list = dock.job_list
    wait_until(lambda: tid in job_list.task_items and job_list.task_items[tid].childCount() == n,
               message="task row with its tiles")
    row = job_list.task_items[tid]
    assert job_list.tree.indexOfTopLevelItem(row) >= 0
    assert all(job_list.items[j["id"]].parent() is row for j in task["jobs"])
    assert f"(task #{tid}, {n} tiles)" in row.text(0)
    progress_seen = set()
    plugin.tasks.task_changed.connect(lambda t: progress_seen.add(round(t.get("progress") or 0)))
    wait_until(lambda: plugin.tasks.task(tid)["status"] == "finished", timeout=90, message="task finished")
    assert row.text(1) == "finished" and row.text(2) == "100 %"
    assert len(progress_seen) >= 2, progress_seen  # aggregate progress moved
    want = STATUS_COLORS["finished"].lower()
    for j in task["jobs"]:
        wait_until(lambda j=j: plugin.footprints.color_of(j["id"]) == want, message=f"tile {j['id']} green")

    # The mosaic: one group, one layer, opened through vrt://; no group per tile.
    project = QgsProject.instance()
    wait_until(lambda: task_groups(project) and not plugin.autoloader.tracked and plugin.tasks.task(tid)[
        "results"]["ready"] == n, timeout=60, message="final mosaic loaded")
    wait_until(lambda: json.loads((Path(task_groups(project)[0].customProperty("eodispatch/folder")) / "task.json")
                                  .read_text())["final"], message="final task.json")
    plugin.autoloader.scan()
    groups = task_groups(project)
    assert len(groups) == 1 and groups[0].name() == f"PV farms upscaled (task #{tid})"
    layers = [node.layer() for node in groups[0].findLayers()]
    assert len(layers) == 1, [l.name() for l in layers]
    mosaic = layers[0]
    assert isinstance(mosaic, QgsRasterLayer) and mosaic.isValid() and mosaic.name() == "PV farms upscaled"
    assert mosaic.source().startswith("vrt://") and mosaic.source().endswith("openEO.vrt")
    assert job_groups(project) == [], "tile folders are not loaded one by one"
    folder = Path(groups[0].customProperty("eodispatch/folder"))
    manifest = json.loads((folder / "task.json").read_text())
    assert manifest["final"] and len(manifest["tiles"]) == n
    # The layer covers every tile.
    ext = mosaic.extent()
    tile_bounds = [t["bounds"] for t in manifest["tiles"]]
    assert ext.xMinimum() <= min(b[0] for b in tile_bounds) + 1 and ext.xMaximum() >= max(b[2] for b in tile_bounds) - 1
    # Looking at the mosaic (statistics) and unloading leave the daemon's VRT as it was.
    vrt = folder / "openEO.vrt"
    before = md5(vrt)
    mosaic.dataProvider().bandStatistics(1)
    project.removeMapLayer(mosaic.id())
    qgis_app = __import__("qgis.core", fromlist=["QgsApplication"]).QgsApplication
    qgis_app.processEvents()
    assert md5(vrt) == before
    # The folder action finds the task folder.
    assert dock.task_folder(tid) == folder


def test_cancel_all_and_retry_failed_from_the_task_row(plugin, daemon, fake_backend):
    dock = plugin.dock
    pick_service(dock, fake_backend, "to cancel")
    dock.upscale_check.setChecked(True)
    wait_until(lambda: len(dock.upscale.cells) >= 2 and not dock.upscale.busy, message="cells")
    n = len(dock.upscale.cells)
    # An older job in the list: the task, newer, goes above it.
    plugin.jobs.on_event("job", {"id": 999, "title": "older job", "status": "finished",
                                 "created": "2000-01-01T00:00:00.000Z", "updated": "2000-01-01T00:00:00.000Z"})
    # A task answered with its tiles (which carry no creation time) goes above it too.
    plugin.tasks.on_task({"id": 77, "title": "answered", "status": "created", "created": "2001-01-01T00:00:00.000Z",
                          "updated": "2001-01-01T00:00:00.000Z", "progress": 0, "counts": {"created": 1},
                          "results": {}, "jobs": [{"id": 501, "title": "answered - Processing Job 1",
                                                   "status": "created", "parameters": {}}]})
    rows = dock.job_list.tree
    assert rows.indexOfTopLevelItem(dock.job_list.task_items[77]) == 0
    assert dock.job_list.items[501].parent() is dock.job_list.task_items[77]
    plugin.tasks.on_event("task", {"id": 77, "deleted": True})
    assert 77 not in dock.job_list.task_items and 501 not in dock.job_list.items and plugin.jobs.job(501) is None
    dock.submit()
    wait_until(lambda: dock.last_task is not None, message="task submitted")
    tid = dock.last_task["id"]
    job_list = dock.job_list
    wait_until(lambda: tid in job_list.task_items, message="task row")
    assert job_list.tree.indexOfTopLevelItem(job_list.task_items[tid]) == 0
    assert job_list.tree.indexOfTopLevelItem(job_list.items[999]) == 1
    job_list.tree.setCurrentItem(job_list.task_items[tid])
    assert job_list.buttons["cancel"].text() == "Cancel all" and job_list.buttons["cancel"].isEnabled()
    assert job_list.buttons["logs"].isHidden() and not job_list.buttons["retry"].isHidden()
    job_list.buttons["cancel"].click()
    wait_until(lambda: plugin.tasks.task(tid)["status"] == "canceled", timeout=30, message="task canceled")
    task = daemon.api("GET", f"/upscale_tasks/{tid}")[1]
    assert task["counts"]["canceled"] == n, task["counts"]
    assert job_list.task_items[tid].text(1) == f"canceled ({n} canceled of {n})"
    wait_until(lambda: all(plugin.jobs.job(j["id"])["status"] == "canceled" for j in task["jobs"]),
               message="tiles canceled in the list")
    wait_until(lambda: job_list.buttons["retry"].isEnabled(), message="retry enabled")
    assert not job_list.buttons["cancel"].isEnabled()
    job_list.buttons["retry"].click()
    wait_until(lambda: plugin.tasks.task(tid)["status"] == "finished", timeout=90, message="retried task finished")
    task = daemon.api("GET", f"/upscale_tasks/{tid}")[1]
    assert task["counts"]["finished"] == n
    wait_until(lambda: all(job_list.items[j["id"]].text(1) == "finished" for j in task["jobs"]),
               message="tiles finished in the list")
    # A tile row is a job: its own actions.
    job_list.tree.setCurrentItem(job_list.items[task["jobs"][0]["id"]])
    assert job_list.buttons["cancel"].text() == "Cancel" and not job_list.buttons["logs"].isHidden()


def test_area_from_the_features_of_a_layer(plugin, daemon, fake_backend):
    """Two polygons 60 km apart: the daemon gets their hull, the plugin keeps the cells
    that touch the polygons themselves."""
    from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsVectorLayer

    dock = plugin.dock
    pick_service(dock, fake_backend)
    dock.upscale_check.setChecked(True)
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633", "fields", "memory")
    feats = []
    for wkt in ("POLYGON((600000 5330000, 605000 5330000, 605000 5335000, 600000 5335000, 600000 5330000))",
                "POLYGON((660000 5390000, 665000 5390000, 665000 5395000, 660000 5395000, 660000 5390000))"):
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    QgsProject.instance().addMapLayer(layer)
    dock.upscale.layer_combo.setLayer(layer)
    dock.upscale.layer_button.click()
    assert dock.upscale.area_text == "2 feature(s) of fields"
    wait_until(lambda: not dock.upscale.busy, message="cells of the features")
    cells = dock.upscale.cells
    hull = json.loads(dock.upscale.area.convexHull().asJson(6))
    _, answer = daemon.api("POST", "/tiles", {"grid": "20x20km", "aoi": hull})
    assert 2 <= len(cells) < len(answer["geometries"]), (len(cells), len(answer["geometries"]))
    # The 250 km grid: one cell holds both.
    dock.upscale.set_grid("250x250km")
    assert dock.upscale.busy
    wait_until(lambda: not dock.upscale.busy, message="250 km cells")
    assert "of 250 km × 250 km over 2 feature(s) of fields" in dock.upscale.status.text()
    assert 1 <= len(dock.upscale.cells) <= 2
    # Leaving the mode removes the preview and brings the extent parameter back.
    dock.upscale_check.setChecked(False)
    assert dock.upscale.preview.layer() is None
    assert not dock.form.editors["spatial_extent"].parentWidget().isHidden()
    assert dock.submit_button.text() == "Submit"


def test_mosaic_layer_is_reopened_in_place_as_task_json_is_republished(qgis_app, qgis_new_project, tmp_path):
    from qgis.core import QgsProject, QgsRasterLayer, QgsSingleBandPseudoColorRenderer

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    results.mkdir()
    loader = AutoLoader(results, LoadedRegistry(tmp_path / "loaded.json"))
    refreshed, final = [], []
    loader.task_refreshed.connect(refreshed.append)
    loader.task_final.connect(final.append)
    loader.start()
    project = QgsProject.instance()
    other = QgsRasterLayer("", "not ours")  # something else in the tree, above the group later
    task = TaskFolder(results, 5, str(_uuid.uuid4()), "Growing mosaic")
    task.add_tile(11, (16.30, 48.00, 16.40, 48.10))
    folder = task.publish()
    wait_until(lambda: task_groups(project), message="task group")
    group = task_groups(project)[0]
    assert group.name() == "Growing mosaic (task #5)"
    [node] = group.findLayers()
    layer = node.layer()
    layer_id = layer.id()
    assert layer.source() == "vrt://" + str(folder / "openEO.vrt")
    width1, xmax1 = layer.width(), layer.extent().xMaximum()
    assert job_groups(project) == [], "the tile's folder is not loaded by itself"
    assert str(folder) in loader.tracked
    # The user styles the mosaic and puts another layer above its group.
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1)
    layer.setRenderer(renderer)
    project.addMapLayer(other, False)
    project.layerTreeRoot().insertLayer(0, other)
    index = project.layerTreeRoot().children().index(group)
    # Statistics make GDAL keep them in the VRT (written back when a VRT opened by name closes).
    layer.dataProvider().bandStatistics(1)

    task.add_tile(12, (16.40, 48.00, 16.50, 48.10))
    task.publish()
    published = md5(folder / "openEO.vrt")
    loader.scan()
    assert len(refreshed) == 1 and final == []
    layer = project.mapLayer(layer_id)
    assert layer is not None and [n.layer() for n in task_groups(project)[0].findLayers()] == [layer]
    assert layer.width() > width1 and layer.extent().xMaximum() > xmax1 + 1000, "the new mosaic's extent"
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer), "the user's style stays"
    assert project.layerTreeRoot().children().index(task_groups(project)[0]) == index
    layer.dataProvider().bandStatistics(1)
    width2 = layer.width()

    task.add_tile(13, (16.50, 48.00, 16.60, 48.10))
    task.publish(final=True)
    assert md5(folder / "openEO.vrt") != published
    published = md5(folder / "openEO.vrt")
    loader.scan()
    assert len(refreshed) == 2 and [m.title for m in final] == ["Growing mosaic"]
    assert layer.width() > width2 and project.mapLayer(layer_id) is layer
    assert str(folder) not in loader.tracked, "final: no longer followed"
    loader.scan()
    assert len(refreshed) == 2
    # QGIS closing the layer does not write the old mosaic over the daemon's.
    project.removeMapLayer(layer_id)
    qgis_app.processEvents()
    assert md5(folder / "openEO.vrt") == published
    assert len(task_groups(project)) == 1 and job_groups(project) == []
    loader.stop()


def test_a_removed_task_group_is_not_brought_back(qgis_app, qgis_new_project, tmp_path):
    from qgis.core import QgsProject

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    results.mkdir()
    loader = AutoLoader(results, LoadedRegistry(tmp_path / "loaded.json"))
    loader.start()
    project = QgsProject.instance()
    task = TaskFolder(results, 6, str(_uuid.uuid4()), "Removed")
    task.add_tile(21, (16.30, 48.00, 16.40, 48.10))
    folder = task.publish()
    wait_until(lambda: task_groups(project), message="task group")
    group = task_groups(project)[0]
    ids = [n.layerId() for n in group.findLayers()]
    group.parent().removeChildNode(group)
    project.removeMapLayers(ids)
    task.add_tile(22, (16.40, 48.00, 16.50, 48.10))
    task.publish()
    loader.scan()
    assert task_groups(project) == [] and str(folder) not in loader.tracked
    loader.stop()


@pytest.fixture
def provider(qgis_app, qgis_processing, daemon, fake_backend):
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


def pv_index(provider):
    return next(i for i, s in enumerate(provider.catalog.services) if s["id"] == "eurac_pv_farm_detection")


def test_upscale_algorithm_returns_the_mosaic(provider, daemon, fake_backend):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = processing.run("eodispatch:upscale", {
        "SERVICE": pv_index(provider),
        "ENDPOINT": fake_backend,
        "EXTENT": "600000,625000,5330000,5345000 [EPSG:32633]",
        "GRID": 0,
        "PARAMETERS": '{"temporal_extent": ["2023-05-01", "2023-09-30"]}',
        "TITLE": "upscaled in Processing",
        "FORMAT": 0,
    }, context=context, feedback=feedback)
    task = daemon.api("GET", f"/upscale_tasks/{result['TASK_ID']}")[1]
    assert task["status"] == "finished" and task["title"] == "upscaled in Processing"
    assert len(task["jobs"]) >= 2
    folder = Path(result["OUTPUT_FOLDER"])
    manifest = json.loads((folder / "task.json").read_text())
    assert manifest["final"] and manifest["task"]["id"] == task["id"]
    layers = [QgsProcessingUtils.mapLayerFromString(i, context) if isinstance(i, str) else i
              for i in result["OUTPUT_LAYERS"]]
    assert [l.name() for l in layers] == ["upscaled in Processing"]
    assert layers[0].isValid() and layers[0].source().startswith("vrt://")
    assert progress and progress[-1] == 100 and any(0 < p < 100 for p in progress), progress


def test_upscale_algorithm_cancel_cancels_the_task(provider, daemon, fake_backend):
    import threading

    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()

    def cancel_when_submitted():
        deadline = time.time() + 20
        while time.time() < deadline:
            if daemon.api("GET", "/upscale_tasks")[1]:
                feedback.cancel()
                return
            time.sleep(0.05)

    threading.Thread(target=cancel_when_submitted, daemon=True).start()
    with pytest.raises(QgsProcessingException):
        processing.run("eodispatch:upscale", {
            "SERVICE": pv_index(provider), "ENDPOINT": fake_backend,
            "EXTENT": "16.30,16.60,48.10,48.25 [EPSG:4326]", "GRID": 0,
            "PARAMETERS": '{"temporal_extent": ["2023-05-01", "2023-09-30"]}', "TITLE": "canceled", "FORMAT": 0,
        }, context=context, feedback=feedback)
    [task] = daemon.api("GET", "/upscale_tasks")[1]
    wait_until(lambda: daemon.api("GET", f"/upscale_tasks/{task['id']}")[1]["status"] == "canceled", timeout=20,
               message="task canceled on the daemon")
