"""Hostile input on the plugin's side (issue 13, point 3): a style file next to a result
(``openEO.qml``, ``farms.qml``) or stored in a GeoPackage is not applied — only the
manifest's style; the log-in dialog opens and links only http(s) pages and escapes what
it shows; message bar notices and labels show servers' text as text."""

import json
import sqlite3
import threading
import uuid as _uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import wait_until
from jobfolder import write_job_folder

EVIL = '<a href="file:///etc/passwd">click</a>'


def _styled_copy(layer, qml_path):
    """Saves a style that would show (a custom property, an action, 10 % opacity)."""
    from qgis.core import QgsAction

    layer.setCustomProperty("evil", "applied")
    layer.setOpacity(0.1)
    if hasattr(layer, "actions"):
        layer.actions().addAction(QgsAction(QgsAction.ActionType.GenericPython, "pwn", "print('pwned')"))
    msg, ok = layer.saveNamedStyle(str(qml_path))
    assert ok, msg


def test_style_files_next_to_results_are_not_applied(qgis_app, qgis_new_project, tmp_path):
    from qgis.core import QgsRasterLayer, QgsSingleBandGrayRenderer, QgsVectorLayer

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 11, str(_uuid.uuid4()), "Styled by the backend")
    _styled_copy(QgsRasterLayer(str(folder / "openEO.tif"), "x"), folder / "openEO.qml")
    _styled_copy(QgsVectorLayer(str(folder / "farms.geojson"), "x", "ogr"), folder / "farms.qml")
    # Without the fix QGIS would read them: check that they are real, loadable styles.
    probe = QgsVectorLayer(str(folder / "farms.geojson"), "probe", "ogr")
    assert probe.customProperty("evil") == "applied" and probe.actions().actions()

    loader = AutoLoader(results, LoadedRegistry(tmp_path / "loaded.json"))
    loaded = loader.load_folder(folder)
    raster, vector = loaded.layers
    assert raster.customProperty("evil") is None and raster.opacity() == 1.0
    assert isinstance(raster.renderer(), QgsSingleBandGrayRenderer)  # the manifest's style
    assert vector.customProperty("evil") is None and vector.opacity() == 1.0
    assert vector.actions().actions() == []
    assert vector.renderer().symbol().color().name() == "#e31a1c"


def test_a_style_stored_in_a_geopackage_is_not_applied(qgis_app, qgis_new_project, tmp_path):
    from osgeo import gdal
    from qgis.core import QgsVectorLayer

    from eodispatch.core.manifest import create_layers, read_manifest

    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 12, str(_uuid.uuid4()), "GeoPackage", with_vector=True)
    gpkg = folder / "farms.gpkg"
    gdal.VectorTranslate(str(gpkg), str(folder / "farms.geojson"), format="GPKG", layerName="farms")
    layer = QgsVectorLayer(f"{gpkg}|layername=farms", "x", "ogr")
    _styled_copy(layer, tmp_path / "style.qml")
    layer.saveStyleToDatabase("evil", "", True, "")
    probe = QgsVectorLayer(f"{gpkg}|layername=farms", "probe", "ogr")
    assert probe.customProperty("evil") == "applied"  # QGIS applies it by default
    with sqlite3.connect(gpkg) as db:
        assert db.execute("select count(*) from layer_styles where useAsDefault").fetchone()[0] == 1
    data = json.loads((folder / "job.json").read_text())
    data["layers"][1]["path"] = "farms.gpkg"
    (folder / "job.json").write_text(json.dumps(data))
    loaded = create_layers(read_manifest(folder))
    vector = loaded.layers[1]
    assert vector.isValid() and vector.customProperty("evil") is None
    assert vector.actions().actions() == [] and vector.opacity() == 1.0


@pytest.fixture
def hostile_auth(tmp_path, monkeypatch):
    """A stand-in for the daemon's /auth API relaying a hostile identity provider."""
    answers = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, body):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(202, answers["login"])

        def do_GET(self):  # noqa: N802
            self._send(200, answers["poll"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "api-token").write_text("stub-token\n")
    monkeypatch.setenv("EODISPATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EODISPATCH_LISTEN", f"127.0.0.1:{server.server_address[1]}")
    opened = []
    from qgis.PyQt.QtGui import QDesktopServices

    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    yield answers, opened
    server.shutdown()


BACKEND = {"url": "https://backend.example", "title": "Backend", "providers": [{"id": "p", "title": "P"}]}


def _login(answers, login, poll):
    from eodispatch.core.client import DaemonClient
    from eodispatch.gui.login import LoginDialog

    answers["login"], answers["poll"] = login, poll
    dlg = LoginDialog(DaemonClient(), BACKEND, open_browser=True)
    dlg.start_button.click()
    return dlg


def test_login_opens_only_web_pages_and_escapes_what_it_shows(qgis_app, hostile_auth):
    from qgis.PyQt.QtCore import Qt

    answers, opened = hostile_auth
    pending = {"login_id": "L", "state": "pending", "error": None}
    # Device flow: the page is a local file, the code carries markup.
    dlg = _login(answers, {"login_id": "L", "method": "device", "state": "pending", "user_code": "<b>CODE</b>",
                           "verification_uri": "file:///etc/passwd",
                           "verification_uri_complete": "smb://evil.example/share", "interval": 1}, pending)
    wait_until(lambda: dlg.code.text() == "<b>CODE</b>", message="code shown")
    assert dlg.code.textFormat() == Qt.TextFormat.PlainText
    assert opened == []
    assert "<a " not in dlg.message.text() and "file:///etc/passwd" in dlg.message.text()
    assert "not a web address and was not opened" in dlg.message.text()
    # The login fails with a message that carries a link.
    answers["poll"] = {"login_id": "L", "state": "failed", "error": EVIL}
    wait_until(lambda: dlg.state == "failed", timeout=10, message="failure shown")
    assert "<a " not in dlg.message.text() and "&lt;a href=" in dlg.message.text()
    dlg.done(0)

    # Browser flow with a javascript: page.
    dlg = _login(answers, {"login_id": "L", "method": "browser", "state": "pending",
                           "authorization_url": "javascript:alert(1)"}, pending)
    wait_until(lambda: "not opened" in dlg.message.text(), message="refusal shown")
    assert opened == [] and "<a " not in dlg.message.text()
    dlg.done(0)

    # A real web page is opened and linked.
    dlg = _login(answers, {"login_id": "L", "method": "device", "state": "pending", "user_code": "ABCD",
                           "verification_uri": "https://id.example/device?a=1&b=2",
                           "verification_uri_complete": None, "interval": 1}, pending)
    wait_until(lambda: opened, message="page opened")
    assert opened == ["https://id.example/device?a=1&b=2"]
    assert '<a href="https://id.example/device?a=1&amp;b=2">' in dlg.message.text()
    dlg.done(0)


def test_notices_and_labels_show_servers_text_as_text(qgis_app, qgis_iface, qgis_new_project, tmp_path):
    from qgis.core import Qgis
    from qgis.PyQt.QtCore import Qt

    import eodispatch
    from eodispatch.core.manifest import create_layers, read_manifest

    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 13, str(_uuid.uuid4()), f"Job {EVIL}")
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin._job_loaded(create_layers(read_manifest(folder)))
        notices = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Success)
        assert notices and all("<a " not in m for m in notices), notices
        assert any("&lt;a href=" in m for m in notices), notices
        dock = plugin.dock
        dock._set_description(EVIL)
        assert dock.description.textFormat() == Qt.TextFormat.PlainText
        assert dock.description.text() == EVIL
        dock._set_description("x " * 300 + EVIL)
        assert "<a " not in dock.description.toolTip()
        dock._show_errors([{"name": "title", "reason": EVIL}], "refused")
        assert dock.title_error.textFormat() == Qt.TextFormat.PlainText
    finally:
        plugin.unload()
