"""OGC API Processes services in the plugin, against the real daemon and a real pygeoapi
(tests/ogc/server.py, started here): the dock's form generated from the process
description, the extent sent in the OGC form, the job followed live and its result
(inline GeoJSON, GeoTIFF by reference) loaded by itself; validation errors under their
field; the Processing algorithms; a server with a namespace; the footprints."""

import pytest

from conftest import daemon_catalog, wait_until
from ogcserver import PrefixForwarder, Pygeoapi

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
OGC = "ogc_api_process"
NAMESPACE = "apex"


@pytest.fixture(scope="module")
def pygeoapi(tmp_path_factory):
    server = Pygeoapi(tmp_path_factory.mktemp("pygeoapi") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def namespaced(tmp_path_factory):
    """pygeoapi behind a forwarder at ``<forwarder>/apex``: a server whose processes are
    at ``/apex/processes`` (namespace ``apex``); anything else is 404."""
    forwarder = PrefixForwarder(NAMESPACE)
    server = Pygeoapi(tmp_path_factory.mktemp("pygeoapi-ns") / "data", public_url=f"{forwarder.url}/{NAMESPACE}")
    forwarder.target = server.url
    yield forwarder
    forwarder.stop()
    server.stop()


@pytest.fixture
def plugin(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon):
    import eodispatch

    p = eodispatch.classFactory(qgis_iface)
    p.initGui()
    p.start()
    wait_until(lambda: p.stream.is_connected, message="event stream")
    # The requests of the start (services, their parameters, backends) answered: the
    # catalogue will not change under the test any more.
    wait_until(lambda: not p.client._pending, message="start-up requests answered")
    yield p
    p.unload()


def enter_ogc_service(dock, endpoint, application, namespace=""):
    """As a user does it: "Other", kind OGC API Processes, then the server, the
    namespace and the process, each confirmed (editingFinished)."""
    dock.service_combo.setCurrentIndex(dock.service_combo.count() - 1)
    dock.kind_combo.setCurrentIndex(dock.kind_combo.findData(OGC))
    for edit, text in ((dock.endpoint_edit, endpoint), (dock.namespace_edit, namespace),
                       (dock.application_edit, application)):
        edit.setText(text)
        edit.editingFinished.emit()


def submit(dock):
    """Submit; the job the daemon created (fails with the errors the dock shows)."""
    dock.last_job = None
    dock.submit()
    shown = lambda: [lbl.text() for lbl in [dock.general_error, *dock.form.error_labels.values()]  # noqa: E731
                     if not lbl.isHidden()]
    wait_until(lambda: dock.last_job is not None or shown(), message="submitted")
    assert dock.last_job is not None, shown()
    return dock.last_job


def job_groups(uuid):
    from qgis.core import QgsProject

    from eodispatch.core.manifest import _all_groups

    return [g for g in _all_groups(QgsProject.instance().layerTreeRoot())
            if g.customProperty("eodispatch/job_uuid") == uuid]


def loaded_layers(plugin, job, timeout=30):
    """The layers the plugin loaded by itself for a job (its group in the layer tree)."""
    jid = job["id"]
    wait_until(lambda: (plugin.jobs.job(jid) or {}).get("status") in ("finished", "failed"), timeout=timeout,
               message=f"job {jid} finished over SSE")
    assert plugin.jobs.job(jid)["status"] == "finished", plugin.jobs.job(jid)
    wait_until(lambda: job_groups(job["uuid"]), timeout=timeout, message=f"results of job {jid} loaded")
    (group,) = job_groups(job["uuid"])
    assert group.name() == f"{job['title']} (#{jid})"
    return [n.layer() for n in group.findLayers()]


def footprint_box(plugin, jid):
    layer = plugin.footprints.layer(create=False)
    assert layer is not None
    (f,) = [f for f in layer.getFeatures() if f["job_id"] == jid]
    return f.geometry().boundingBox(), f["status"]


def assert_rect(rect, box, tol=1e-9):
    got = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
    assert all(abs(a - b) < tol for a, b in zip(got, box)), (got, box)


def test_ogc_process_from_the_form_to_a_loaded_layer(plugin, qgis_canvas, daemon, pygeoapi):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsVectorLayer
    from qgis.PyQt.QtCore import QDate
    from qgis.PyQt.QtWidgets import QComboBox, QDateEdit, QLineEdit, QSpinBox

    from eodispatch.core.params import extent_to_wgs84
    from eodispatch.gui.form import ExtentWidget

    utm = QgsCoordinateReferenceSystem("EPSG:32633")
    qgis_canvas.setDestinationCrs(utm)
    qgis_canvas.setExtent(QgsRectangle(600000, 5310000, 606000, 5316000))
    dock = plugin.dock
    enter_ogc_service(dock, pygeoapi.url, "eodispatch-features")
    assert (dock.endpoint_label.text(), dock.application_label.text()) == ("Server", "Process")
    assert not dock.namespace_box.isHidden() and not dock.format_combo.isEnabled()
    wait_until(lambda: "bbox" in dock.form.editors, message="form from /params")

    # The form from the process description.
    form = dock.form
    assert [s.name for s in form.specs] == ["bbox", "date", "count", "shape", "tags"]
    bbox_w, date_w, count_w, shape_w, tags_w = (form.editors[n] for n in ["bbox", "date", "count", "shape", "tags"])
    assert isinstance(bbox_w, ExtentWidget) and form.specs[0].ogc_bbox
    assert isinstance(date_w, QDateEdit)
    assert isinstance(count_w, QSpinBox) and (count_w.value(), count_w.minimum(), count_w.maximum()) == (4, 1, 50)
    assert isinstance(shape_w, QComboBox)
    assert [shape_w.itemText(i) for i in range(shape_w.count())] == ["square", "point"]
    assert shape_w.currentText() == "square"
    assert isinstance(tags_w, QLineEdit) and tags_w.text() == ""
    # Fields are labelled with the inputs' own titles (the name where there is none).
    titles = {s.name: s.label for s in form.specs}
    assert titles["bbox"] == "Bounding box" and titles["count"] == "Number of features", titles
    # The title and description of a process entered by hand come from the daemon.
    assert dock.title_edit.text() == "Features in a bounding box"
    assert "FeatureCollection" in dock.description.text()

    # The extent: the UTM canvas, in WGS84.
    bbox_w.from_canvas()
    box = bbox_w.value()
    assert box == extent_to_wgs84(qgis_canvas.extent(), utm)
    # (the canvas widens the rectangle to its aspect ratio; still around Vienna)
    assert 16.0 < box["west"] < box["east"] < 16.8 and 47.8 < box["south"] < box["north"] < 48.2, box
    date_w.setDate(QDate(2024, 5, 1))
    count_w.setValue(6)
    dock.title_edit.setText("OGC features")
    w, s, e, n = box["west"], box["south"], box["east"], box["north"]
    # What the dock sends (the daemon would also accept and convert {west, ...}).
    body = dock.job_body()
    assert body["label"] == OGC and body["service"] == {"endpoint": pygeoapi.url, "application": "eodispatch-features"}
    assert body["parameters"] == {"bbox": {"bbox": [w, s, e, n], "crs": CRS84}, "date": "2024-05-01", "count": 6,
                                  "shape": "square"}
    jid = submit(dock)["id"]

    # What the daemon received: the OGC form of the box; the optional tags left out.
    sent = daemon.api("GET", f"/unit_jobs/{jid}")[1]
    assert sent["label"] == OGC
    assert sent["service"] == {"endpoint": pygeoapi.url, "namespace": None, "application": "eodispatch-features"}
    assert sent["parameters"] == {"bbox": {"bbox": [w, s, e, n], "crs": CRS84}, "date": "2024-05-01", "count": 6,
                                  "shape": "square"}

    # Finished, and the GeoJSON loaded by itself, inside the extent.
    (layer,) = loaded_layers(plugin, sent)
    assert isinstance(layer, QgsVectorLayer) and layer.isValid(), layer
    assert layer.crs().authid() == "EPSG:4326"
    features = list(layer.getFeatures())
    assert len(features) == 6
    area = QgsRectangle(w, s, e, n)
    for f in features:
        assert f.geometry().asWkt().startswith("Polygon"), f.geometry().asWkt()
        assert area.contains(f.geometry().boundingBox()), (f.geometry().asWkt(), box)
        assert f["date"] in ("2024-05-01", QDate(2024, 5, 1)), f["date"]  # OGR may read it as a date
    assert sorted(f["index"] for f in features) == list(range(6))

    # Its footprint: the submitted extent, green.
    rect, status = footprint_box(plugin, jid)
    assert status == "finished" and plugin.footprints.color_of(jid) == "#33a02c"
    assert_rect(rect, (w, s, e, n))


def test_ogc_raster_by_reference_loads_as_a_raster_layer(plugin, qgis_canvas, daemon, pygeoapi):
    """eodispatch-raster, given by its process URL, on a rectangle drawn on a Web
    Mercator map: the GeoTIFF the process links to is loaded as a raster layer."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle
    from qgis.PyQt.QtWidgets import QSpinBox

    from eodispatch.core.params import extent_to_wgs84

    web = QgsCoordinateReferenceSystem("EPSG:3857")
    qgis_canvas.setDestinationCrs(web)
    qgis_canvas.setExtent(QgsRectangle(1810000, 6090000, 1840000, 6120000))
    dock = plugin.dock
    enter_ogc_service(dock, pygeoapi.url, f"{pygeoapi.url}/processes/eodispatch-raster")
    wait_until(lambda: "size" in dock.form.editors, message="form from /params")
    assert [s.name for s in dock.form.specs] == ["bbox", "size"]
    assert dock.form.specs[0].ogc_bbox  # allOf [format: ogc-bbox, $ref bbox.yaml]
    size = dock.form.editors["size"]
    assert isinstance(size, QSpinBox) and (size.value(), size.minimum(), size.maximum()) == (64, 8, 1024)
    size.setValue(32)
    extent = dock.form.editors["bbox"]
    extent.draw_button.click()
    drawn = QgsRectangle(1819000, 6100000, 1827000, 6108000)
    extent._tool.extentChanged.emit(drawn)
    box = extent.value()
    assert box == extent_to_wgs84(drawn, web)
    dock.title_edit.setText("OGC raster")
    jid = submit(dock)["id"]
    sent = daemon.api("GET", f"/unit_jobs/{jid}")[1]
    w, s, e, n = box["west"], box["south"], box["east"], box["north"]
    assert sent["parameters"] == {"bbox": {"bbox": [w, s, e, n], "crs": CRS84}, "size": 32}

    (layer,) = loaded_layers(plugin, sent)
    assert isinstance(layer, QgsRasterLayer) and layer.isValid(), layer
    assert (layer.width(), layer.height()) == (32, 32)
    assert layer.crs().authid() == "EPSG:4326"
    assert_rect(layer.extent(), (w, s, e, n), 1e-6)
    rect, status = footprint_box(plugin, jid)
    assert status == "finished"
    assert_rect(rect, (w, s, e, n))


def test_validation_errors_land_under_their_field(plugin, qgis_canvas, daemon, pygeoapi):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    qgis_canvas.setExtent(QgsRectangle(16.3, 47.9, 16.4, 48.0))
    dock = plugin.dock
    enter_ogc_service(dock, pygeoapi.url, "eodispatch-features")
    wait_until(lambda: "count" in dock.form.editors, message="form from /params")
    count = dock.form.editors["count"]
    # The schema's range is the spin box's: 99 cannot be typed.
    count.setValue(99)
    assert count.value() == 50
    # A form built from an older description of the process would let it through: the
    # daemon checks the range itself, and its error lands under the field.
    count.setMaximum(1000)
    count.setValue(99)
    dock.title_edit.setText("too many")
    dock.submit()
    label = dock.form.error_labels["count"]
    wait_until(lambda: not label.isHidden(), message="error under count")
    assert "at most 50" in label.text(), label.text()
    assert dock.form.error_labels["bbox"].isHidden() and dock.general_error.isHidden()
    assert daemon.api("GET", "/unit_jobs")[1] == []

    # A nested name (parameters.bbox.bbox) lands under the extent: the body the dock
    # builds, with a broken box, answered by the daemon.
    body = dock.job_body()
    assert body["parameters"]["bbox"]["crs"] == CRS84
    body["parameters"]["count"] = 5
    body["parameters"]["bbox"]["bbox"] = body["parameters"]["bbox"]["bbox"][:3]
    dock.client.post("/unit_jobs", body, dock._submitted)
    box_label = dock.form.error_labels["bbox"]
    wait_until(lambda: not box_label.isHidden(), message="error under bbox")
    assert box_label.text().startswith("bbox: must be 4 numbers"), box_label.text()
    assert label.isHidden()
    assert daemon.api("GET", "/unit_jobs")[1] == []


def test_services_with_a_namespace_from_the_picker_and_by_hand(plugin, daemon, namespaced):
    """The catalogue's OGC services are in the picker with their kind and namespace; a
    catalogue entry on a server with a namespace runs end to end (its requests all go
    under /apex); a namespace typed by hand reaches /params too, and without it the
    process is not found."""
    from qgis.PyQt.QtCore import Qt

    dock = plugin.dock
    assert any(s.get("label") == OGC for s in plugin.catalog.services), plugin.catalog.services
    titles = [dock.service_combo.itemText(i) for i in range(dock.service_combo.count())]
    assert "Photovoltaic farms mapping" in titles and "Sen4CAP S1 Pre-Processor" in titles, titles
    # A bundled OGC record (its server is on the internet: only the fields are checked).
    dock.service_combo.setCurrentIndex(titles.index("Sen4CAP S1 Pre-Processor"))
    assert dock.kind_combo.currentData() == OGC and not dock.kind_combo.isEnabled()
    assert (dock.endpoint_edit.text(), dock.namespace_edit.text(), dock.application_edit.text()) == (
        "https://sen4x.tao.c-s.ro", "process", "206")
    assert dock.service_namespace() == "process"
    tip = dock.service_combo.itemData(dock.service_combo.currentIndex(), Qt.ItemDataRole.ToolTipRole)
    assert tip == "OGC API Processes: https://sen4x.tao.c-s.ro\nCost: 1 € per input product (Amplitude or Coherence)", tip

    # A catalogue entry on the namespaced server.
    entry = {"id": "apex_features", "title": "Features behind a namespace", "description": "test entry",
             "label": OGC, "endpoint": namespaced.url, "namespace": NAMESPACE, "application": "eodispatch-features"}
    plugin.catalog.set_data(plugin.catalog.services + [entry], plugin.catalog.params)
    titles = [dock.service_combo.itemText(i) for i in range(dock.service_combo.count())]
    dock.service_combo.setCurrentIndex(titles.index("Features behind a namespace"))
    wait_until(lambda: "bbox" in dock.form.editors, message="form of the namespaced process")
    dock.form.editors["bbox"].set_value({"west": 5.0, "south": 51.0, "east": 5.2, "north": 51.1})
    sent = daemon.api("GET", f"/unit_jobs/{submit(dock)['id']}")[1]
    assert sent["service"] == {"endpoint": namespaced.url, "namespace": NAMESPACE, "application": "eodispatch-features"}
    assert sent["title"] == "Features behind a namespace"
    assert sent["parameters"]["bbox"] == {"bbox": [5.0, 51.0, 5.2, 51.1], "crs": CRS84}
    (layer,) = loaded_layers(plugin, sent)
    assert layer.featureCount() == 4  # the default count
    # The job's requests; the daemon may also look at the server's landing page (GET /,
    # when the dock reads /backends as the job goes on).
    job_paths = [(m, p) for m, p in namespaced.paths if (m, p) != ("GET", "/")]
    assert job_paths and all(p.startswith(f"/{NAMESPACE}/") for _, p in job_paths), namespaced.paths

    # By hand: with the namespace the form appears; without it the daemon says why.
    enter_ogc_service(dock, namespaced.url, "eodispatch-raster", namespace=NAMESPACE)
    wait_until(lambda: "size" in dock.form.editors, message="form with a typed namespace")
    enter_ogc_service(dock, namespaced.url, "eodispatch-slow", namespace="")
    wait_until(lambda: not dock.application_error.isHidden(), message="error without the namespace")
    assert 'has no process "eodispatch-slow"' in dock.application_error.text(), dock.application_error.text()
    assert dock.form.specs == []
    assert any(p == "/processes/eodispatch-slow" for _, p in namespaced.paths), namespaced.paths


@pytest.fixture
def ogc_provider(qgis_app, qgis_processing, daemon, pygeoapi, namespaced):
    """The provider on the daemon's catalogue plus two entries of the local servers (the
    bundled OGC records' servers cannot be reached from the tests)."""
    from qgis.core import QgsApplication

    from eodispatch.core.client import DaemonClient
    from eodispatch.core.services import ServiceCatalog
    from eodispatch.processing.provider import EoDispatchProvider

    extra = [
        {"id": "local_features", "title": "Features (local pygeoapi)", "description": "", "label": OGC,
         "endpoint": pygeoapi.url, "namespace": None, "application": "eodispatch-features"},
        {"id": "apex_raster", "title": "Raster (namespace apex)", "description": "", "label": OGC,
         "endpoint": namespaced.url, "namespace": NAMESPACE, "application": "eodispatch-raster"},
    ]
    services, params = daemon_catalog(DaemonClient(), extra)
    catalog = ServiceCatalog(None, persist=False)
    catalog.set_data(services, params)
    provider = EoDispatchProvider(catalog)
    assert QgsApplication.processingRegistry().addProvider(provider)
    yield services
    QgsApplication.processingRegistry().removeProvider(provider)


@pytest.fixture
def submitted(monkeypatch):
    """The ``POST /unit_jobs`` bodies the algorithms send (then sent for real)."""
    from eodispatch.processing import algorithms

    bodies = []
    real = algorithms.submit_and_wait

    def recording(info, body, *args, **kwargs):
        bodies.append(body)
        return real(info, body, *args, **kwargs)

    monkeypatch.setattr(algorithms, "submit_and_wait", recording)
    return bodies


def run_alg(alg_id, params):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingUtils, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.run(alg_id, params, context=context, feedback=QgsProcessingFeedback())
    layers = [QgsProcessingUtils.mapLayerFromString(i, context) if isinstance(i, str) else i
              for i in result["OUTPUT_LAYERS"]]
    return result, layers


def test_processing_runs_ogc_services(ogc_provider, submitted, daemon, pygeoapi, namespaced):
    from qgis.core import (QgsApplication, QgsProcessingParameterDefinition, QgsRasterLayer, QgsRectangle,
                           QgsVectorLayer)

    from eodispatch.processing.algorithms import algorithm_id

    registry = QgsApplication.processingRegistry()
    # One algorithm per catalogue service, OGC ones included.
    ogc_services = [s for s in ogc_provider if s["label"] == OGC]
    assert len(ogc_services) >= 14
    for s in ogc_services:
        assert registry.algorithmById("eodispatch:" + algorithm_id(s)) is not None, s["id"]
    sen4cap = registry.algorithmById("eodispatch:sen4cap_s1_pre_processing")
    assert "Namespace: process" in sen4cap.shortHelpString()
    assert sen4cap.parameterDefinition("ENDPOINT").description() == "Server URL"

    alg = registry.algorithmById("eodispatch:local_features")
    defs = {p.name(): p for p in alg.parameterDefinitions()}
    assert defs["bbox"].type() == "extent" and defs["date"].type() == "datetime"
    count = defs["count"]
    assert (count.type(), count.minimum(), count.maximum(), count.defaultValue()) == ("number", 1, 50, 4)
    assert defs["shape"].options() == ["square", "point"] and defs["shape"].defaultValue() == 0
    assert defs["tags"].flags() & QgsProcessingParameterDefinition.FlagOptional

    # shape (optional) not given: left out, the process uses its default.
    result, layers = run_alg("eodispatch:local_features", {
        "bbox": "600000,606000,5310000,5316000 [EPSG:32633]", "date": "2024-06-30", "count": 5,
        "tags": "red, blue", "TITLE": "OGC from Processing"})
    job = daemon.api("GET", f"/unit_jobs/{result['JOB_ID']}")[1]
    assert job["status"] == "finished" and job["label"] == OGC
    assert submitted[-1]["parameters"] == job["parameters"]  # sent in the OGC form by the algorithm
    sent = job["parameters"]
    assert sent["bbox"]["crs"] == CRS84
    w, s, e, n = sent["bbox"]["bbox"]
    assert 16.3 < w < e < 16.5 and 47.9 < s < n < 48.1, sent
    assert {k: v for k, v in sent.items() if k != "bbox"} == {
        "date": "2024-06-30", "count": 5, "tags": ["red", "blue"]}
    (layer,) = layers
    assert isinstance(layer, QgsVectorLayer) and layer.featureCount() == 5
    area = QgsRectangle(w, s, e, n)
    assert all(area.contains(f.geometry().boundingBox()) for f in layer.getFeatures())

    # A catalogue entry with a namespace.
    result, layers = run_alg("eodispatch:apex_raster", {
        "bbox": "16.30,16.32,47.90,47.92 [EPSG:4326]", "size": 16, "TITLE": "namespaced raster"})
    job = daemon.api("GET", f"/unit_jobs/{result['JOB_ID']}")[1]
    assert job["service"]["namespace"] == NAMESPACE
    assert job["parameters"] == {"bbox": {"bbox": [16.3, 47.9, 16.32, 47.92], "crs": CRS84}, "size": 16}
    assert submitted[-1]["service"]["namespace"] == NAMESPACE
    assert submitted[-1]["parameters"] == job["parameters"]
    (layer,) = layers
    assert isinstance(layer, QgsRasterLayer) and (layer.width(), layer.height()) == (16, 16)

    # The generic algorithm: kind OGC, the process by URL, the extent to its bbox.
    result, layers = run_alg("eodispatch:run_service", {
        "KIND": 1, "ENDPOINT": pygeoapi.url, "APPLICATION": f"{pygeoapi.url}/processes/eodispatch-raster",
        "EXTENT": "16.40,16.44,48.10,48.12 [EPSG:4326]", "PARAMETERS": '{"size": 8}', "TITLE": "generic OGC",
        "FORMAT": 0})
    job = daemon.api("GET", f"/unit_jobs/{result['JOB_ID']}")[1]
    assert job["label"] == OGC and job["status"] == "finished"
    assert job["parameters"] == {"bbox": {"bbox": [16.4, 48.1, 16.44, 48.12], "crs": CRS84}, "size": 8}
    assert submitted[-1]["label"] == OGC and submitted[-1]["parameters"] == job["parameters"]
    (layer,) = layers
    assert isinstance(layer, QgsRasterLayer) and (layer.width(), layer.height()) == (8, 8)
    # ... and with a namespace.
    result, layers = run_alg("eodispatch:run_service", {
        "KIND": 1, "ENDPOINT": namespaced.url, "NAMESPACE": NAMESPACE, "APPLICATION": "eodispatch-features",
        "EXTENT": "5.0,5.1,51.0,51.1 [EPSG:4326]", "PARAMETERS": '{"date": "2024-01-31", "count": 2}',
        "TITLE": "generic OGC with a namespace", "FORMAT": 0})
    job = daemon.api("GET", f"/unit_jobs/{result['JOB_ID']}")[1]
    assert job["service"] == {"endpoint": namespaced.url, "namespace": NAMESPACE, "application": "eodispatch-features"}
    assert job["parameters"]["bbox"] == {"bbox": [5.0, 51.0, 5.1, 51.1], "crs": CRS84}
    assert submitted[-1]["parameters"]["bbox"] == job["parameters"]["bbox"]
    assert submitted[-1]["service"] == job["service"]
    assert [layer.featureCount() for layer in layers] == [2]


def test_footprints_of_ogc_bounding_boxes(qgis_app, qgis_new_project):
    from eodispatch.core.footprints import Footprints
    from eodispatch.core.params import bbox_of_value, job_bbox

    box = {"west": 16.3, "south": 47.9, "east": 16.4, "north": 48.0}
    assert bbox_of_value({"bbox": [16.3, 47.9, 16.4, 48.0], "crs": CRS84}) == box
    assert bbox_of_value({"bbox": [16.3, 47.9, 16.4, 48.0]}) == box  # crs defaults to CRS84
    assert bbox_of_value({"bbox": [16.3, 47.9, -5, 16.4, 48.0, 120], "crs": CRS84 + "h"}) == box  # with heights
    # Only CRS84 is known to be lon/lat: a projected box (or an EPSG:4326 URI, lat/lon in
    # OGC APIs) draws nothing rather than something wrong.
    assert bbox_of_value({"bbox": [600000, 5310000, 606000, 5316000],
                          "crs": "http://www.opengis.net/def/crs/EPSG/0/32633"}) is None
    assert bbox_of_value({"bbox": [47.9, 16.3, 48.0, 16.4], "crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}) is None
    assert bbox_of_value({"bbox": [16.3, 47.9, 16.4]}) is None
    # Across the antimeridian: east of 180.
    assert bbox_of_value({"bbox": [179.5, -17.0, -179.5, -16.0]}) == {
        "west": 179.5, "south": -17.0, "east": 180.5, "north": -16.0}
    # The job's parameter named bbox (and any other name) is found.
    assert job_bbox({"parameters": {"date": "2024-05-01", "bbox": {"bbox": [16.3, 47.9, 16.4, 48.0]}}}) == box
    assert job_bbox({"parameters": {"area": {"bbox": [16.3, 47.9, 16.4, 48.0], "crs": CRS84}}}) == box

    fp = Footprints()
    fp.update_job({"id": 7, "title": "ogc", "status": "running", "label": OGC,
                   "parameters": {"bbox": {"bbox": [16.3, 47.9, 16.4, 48.0], "crs": CRS84}, "size": 8}})
    assert fp.status_of(7) == "running" and fp.color_of(7) == "#ffd92f"
    layer = fp.layer(create=False)
    (f,) = list(layer.getFeatures())
    assert_rect(f.geometry().boundingBox(), (16.3, 47.9, 16.4, 48.0))
    fp.remove_layer()


def test_ogc_descriptors_make_the_right_widgets(qgis_app):
    """Descriptors as the daemon builds them from OGC process descriptions: optional
    inputs without a default are left out unless given; ranges bound the spin boxes."""
    from qgis.gui import QgsDateEdit
    from qgis.PyQt.QtCore import QDate
    from qgis.PyQt.QtWidgets import QComboBox, QDateEdit, QDoubleSpinBox, QLineEdit

    from eodispatch.gui.form import ParameterForm

    form = ParameterForm()
    form.build([
        {"name": "aoi", "type": "bounding-box", "optional": False, "default": None, "options": [],
         "schema": {"allOf": [{"format": "ogc-bbox"}, {"$ref": "https://x/openapi/schemas/processes-core/bbox.yaml"}]}},
        {"name": "start", "type": "datetime", "optional": False, "default": "2024-02-29", "options": [],
         "schema": {"type": "string", "format": "date"}},
        {"name": "when", "type": "datetime", "optional": True, "default": None, "options": [],
         "schema": {"type": "string", "format": "date-time"}},
        {"name": "mode", "type": "string", "optional": True, "default": None, "options": ["fast", "exact"],
         "schema": {"type": "string", "enum": ["fast", "exact"]}},
        {"name": "ratio", "type": "double", "optional": False, "default": 0.5, "options": [],
         "schema": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}},
        {"name": "bands", "type": "array-integer", "optional": True, "default": None, "options": [],
         "schema": {"type": "array", "items": {"type": "integer"}}},
    ])
    ed = form.editors
    assert isinstance(ed["start"], QDateEdit) and ed["start"].date() == QDate(2024, 2, 29)
    assert isinstance(ed["when"], QgsDateEdit) and ed["when"].isNull()
    assert isinstance(ed["mode"], QComboBox) and ed["mode"].currentText() == "(not given)"
    assert isinstance(ed["ratio"], QDoubleSpinBox) and (ed["ratio"].minimum(), ed["ratio"].maximum()) == (0, 1)
    assert isinstance(ed["bands"], QLineEdit)
    ed["aoi"].set_value({"west": 1.0, "south": 2.0, "east": 3.0, "north": 4.0})
    values, errors = form.values()
    assert errors == []
    assert values == {"aoi": {"bbox": [1.0, 2.0, 3.0, 4.0], "crs": CRS84}, "start": "2024-02-29", "ratio": 0.5}
    ed["when"].setDate(QDate(2024, 3, 1))
    ed["mode"].setCurrentIndex(ed["mode"].findText("exact"))
    ed["bands"].setText("2, 3")
    values, _ = form.values()
    assert values["when"] == "2024-03-01T00:00:00Z" and values["mode"] == "exact" and values["bands"] == [2, 3]
