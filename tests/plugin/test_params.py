"""Forms generated from the fixtures' UDPs through the real daemon's POST /params, the
extent transformed from a projected CRS, and the daemon's validation errors shown next to
the field they name."""

import functools
import http.server
import shutil
import threading

import pytest
from osgeo import osr

from conftest import REPO, pv_job, wait_until


@pytest.fixture(scope="module")
def udp_server(tmp_path_factory):
    """Serves the bundled catalogue's UDPs (catalog/apex/**/openeo_udp/*.json) by file name
    over HTTP (the daemon fetches UDPs by URL)."""
    folder = tmp_path_factory.mktemp("udp")
    for udp in (REPO / "catalog" / "apex" / "algorithm_catalog").glob("*/*/openeo_udp/*.json"):
        shutil.copy(udp, folder / udp.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def fetch_params(client, application):
    got = {}
    client.post("/params", {"label": "openeo", "service": {"endpoint": "https://openeofed.dataspace.copernicus.eu",
                                                          "application": application}}, lambda r: got.update(r=r))
    wait_until(lambda: "r" in got, message="/params")
    assert got["r"].ok, got["r"].error and got["r"].error.details()
    return got["r"].data


def test_forms_from_every_fixture_udp(qgis_app, qgis_canvas, daemon, udp_server):
    from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDateEdit, QDoubleSpinBox, QLineEdit

    from eodispatch.core.client import DaemonClient
    from eodispatch.gui.form import DateRangeWidget, ExtentWidget, ParameterForm

    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    client = DaemonClient()
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    qgis_canvas.setExtent(QgsRectangle(16.3, 47.9, 16.5, 48.1))
    expected = {
        "eurac_pv_farm_detection.json": {"spatial_extent": ExtentWidget, "temporal_extent": DateRangeWidget},
        "scmap_composite.json": {"temporal_extent": DateRangeWidget, "bounding_box": ExtentWidget,
                                 "max_cloud_cover": QDoubleSpinBox, "compute_mref": QCheckBox},
        "cropsar1d.json": {"geometry": ExtentWidget, "startdate": QDateEdit, "minimal_input_checks": QCheckBox,
                           "output": QComboBox},
        "RAMONA-herbaceous_rangeland_biomass-country-mosaick.json": {"country": QComboBox, "year": QComboBox,
                                                                     "month": QComboBox},
    }
    for name, widgets in expected.items():
        descriptors = fetch_params(client, f"{udp_server}/{name}")
        form = ParameterForm(qgis_canvas)
        form.build(descriptors)
        assert [s.name for s in form.specs] == [d["name"] for d in descriptors]
        for param, cls in widgets.items():
            assert isinstance(form.editors[param], cls), (name, param, type(form.editors[param]))
        values, errors = form.values()
        assert errors == [], (name, errors)
        if name == "RAMONA-herbaceous_rangeland_biomass-country-mosaick.json":
            assert values["country"] == "benin" and values["month"] == "10"  # defaults
        if name == "scmap_composite.json":
            assert values["max_cloud_cover"] == 80 and values["compute_mref"] is False
        if name == "cropsar1d.json":
            assert form.editors["output"].currentText() == "FAPAR"
            assert values["geometry"]["type"] == "Polygon"
        if name == "eurac_pv_farm_detection.json":
            assert values["temporal_extent"] == ["2023-05-01", "2023-09-30"]
            assert set(values["spatial_extent"]) == {"west", "south", "east", "north"}
    assert isinstance(QLineEdit(), QLineEdit)


def test_extent_from_a_projected_canvas_is_wgs84(qgis_app, qgis_canvas):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    from eodispatch.core.params import extent_to_wgs84
    from eodispatch.gui.form import ExtentWidget

    utm = QgsCoordinateReferenceSystem("EPSG:32633")
    rect = QgsRectangle(600000, 5310000, 610000, 5320000)  # near Vienna, in metres
    qgis_canvas.setDestinationCrs(utm)
    qgis_canvas.setExtent(rect)
    shown = qgis_canvas.extent()
    w = ExtentWidget(qgis_canvas)
    w.from_canvas()
    got = w.value()
    # Reference: GDAL/PROJ on the densified boundary of the same rectangle.
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32633)
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    xs, ys = [], []
    for i in range(21):
        for x, y in ((shown.xMinimum() + i * shown.width() / 20, shown.yMinimum()),
                     (shown.xMinimum() + i * shown.width() / 20, shown.yMaximum()),
                     (shown.xMinimum(), shown.yMinimum() + i * shown.height() / 20),
                     (shown.xMaximum(), shown.yMinimum() + i * shown.height() / 20)):
            lon, lat, _ = ct.TransformPoint(x, y)
            xs.append(lon)
            ys.append(lat)
    ref = {"west": min(xs), "south": min(ys), "east": max(xs), "north": max(ys)}
    for k in ref:
        assert abs(got[k] - ref[k]) < 2e-5, (k, got, ref)
    # The canvas widens the rectangle to its aspect ratio; still around Vienna.
    assert 16.0 < got["west"] < got["east"] < 16.8 and 47.8 < got["south"] < got["north"] < 48.2, got
    # The drawn-rectangle and layer paths go through the same transform.
    assert extent_to_wgs84(rect, utm) == pytest.approx(
        {k: round(v, 6) for k, v in extent_to_wgs84(rect, utm).items()})
    web = QgsCoordinateReferenceSystem("EPSG:3857")
    box = extent_to_wgs84(QgsRectangle(1819000, 6100000, 1827000, 6108000), web)
    assert 16.3 < box["west"] < box["east"] < 16.5


def test_validation_errors_appear_next_to_their_field(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon,
                                                      fake_backend):
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        dock = plugin.dock
        job = pv_job(fake_backend)
        dock.select_service(job["service"]["endpoint"], job["service"]["application"])
        wait_until(lambda: "spatial_extent" in dock.form.editors, message="form")
        extent = dock.form.editors["spatial_extent"]
        # West east of east: the daemon refuses it and names the field.
        extent.set_value({"west": 16.5, "south": 47.9, "east": 16.4, "north": 48.0})
        dock.title_edit.setText("bad extent")
        dock.submit()
        label = dock.form.error_labels["spatial_extent"]
        wait_until(lambda: not label.isHidden(), message="error under the extent")
        assert "west" in label.text(), label.text()
        assert dock.form.error_labels["temporal_extent"].isHidden()
        assert daemon.api("GET", "/unit_jobs")[1] == []
        # The daemon's message is in the message bar too.
        from qgis.core import Qgis

        warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
        assert any(m.startswith("EO Dispatch:Not submitted:") or "Not submitted:" in m for m in warnings), warnings
        # A bad backend URL is shown under the backend field.
        dock.endpoint_edit.setText("ftp://nowhere")
        extent.set_value({"west": 16.3, "south": 47.9, "east": 16.4, "north": 48.0})
        dock.submit()
        wait_until(lambda: not dock.endpoint_error.isHidden(), message="error under the backend")
        assert label.isHidden()
    finally:
        plugin.unload()


def test_extent_from_a_layer_and_from_a_drawn_rectangle(qgis_app, qgis_canvas, qgis_new_project, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle
    from qgis.gui import QgsMapToolPan

    from eodispatch.core.params import extent_to_wgs84
    from eodispatch.gui.form import ExtentWidget
    from jobfolder import write_geotiff

    write_geotiff(tmp_path / "utm.tif", (16.342, 47.962, 16.414, 48.008))
    layer = QgsRasterLayer(str(tmp_path / "utm.tif"), "utm")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    QgsProject.instance().addMapLayer(layer)
    w = ExtentWidget(qgis_canvas)
    w.layer_combo.setLayer(layer)
    w.layer_button.click()
    got = w.value()
    assert got == extent_to_wgs84(layer.extent(), layer.crs())
    assert abs(got["west"] - 16.342) < 0.01 and abs(got["north"] - 48.008) < 0.01, got
    # Draw: the map tool replaces the current one, gives the rectangle in the canvas CRS,
    # and the previous tool comes back.
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    pan = QgsMapToolPan(qgis_canvas)
    qgis_canvas.setMapTool(pan)
    w.draw_button.click()
    assert qgis_canvas.mapTool() is w._tool
    drawn = QgsRectangle(1819000, 6100000, 1827000, 6108000)
    w._tool.extentChanged.emit(drawn)
    assert w.value() == extent_to_wgs84(drawn, QgsCoordinateReferenceSystem("EPSG:3857"))
    assert qgis_canvas.mapTool() is pan and not w.draw_button.isChecked()


def test_optional_fields_without_default_are_left_out_unless_given(qgis_app):
    from eodispatch.gui.form import ParameterForm

    form = ParameterForm()
    form.build([
        {"name": "threshold", "type": "double", "optional": True, "default": None, "options": [], "schema": {"type": "number"}},
        {"name": "flag", "type": "boolean", "optional": True, "default": None, "options": [], "schema": {"type": "boolean"}},
        {"name": "when", "type": "datetime", "optional": False, "default": None, "options": [],
         "schema": {"type": "string", "subtype": "date-time", "format": "date-time"}},
        {"name": "day", "type": "datetime", "optional": False, "default": None, "options": [],
         "schema": {"type": "string", "subtype": "date", "format": "date"}},
    ])
    values, errors = form.values()
    assert errors == []
    assert "threshold" not in values and "flag" not in values
    assert values["when"].endswith("T00:00:00Z") and len(values["day"]) == 10
    form.editors["threshold"].setText("0.5")
    form.editors["flag"].setChecked(True)
    values, _ = form.values()
    assert values["threshold"] == 0.5 and values["flag"] is True
    form.editors["threshold"].setText("half")
    _, errors = form.values()
    assert [e["name"] for e in errors] == ["threshold"]
    # The form's own errors go under the field too.
    assert form.show_errors([{"name": "parameters.threshold", "reason": "not a number"}]) == []
    assert form.error_labels["threshold"].text() == "not a number"
