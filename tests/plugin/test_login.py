"""The log-in dialog's own behaviour on answers a real provider rarely gives on demand
(a refused browser login, slow polling), served by a small stub that speaks the daemon's
/auth/* API. The real flows (daemon + OpenID Connect provider + fake backend) are in
test_login_real.py."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import wait_until

BACKEND = {
    "url": "https://openeofed.dataspace.copernicus.eu", "title": "CDSE openEO federation", "state": "login_required",
    "message": None, "last_contact": None, "max_running_jobs": 2,
    "login": {"state": "logged_out", "method": None, "provider_id": None, "provider_title": None, "issuer": None,
              "expires_at": None},
    "token_store": "keyring", "capabilities": None,
    "providers": [{"id": "CDSE", "title": "Copernicus Data Space Ecosystem", "issuer": "https://identity.example"}],
}


@pytest.fixture
def auth_stub(tmp_path, monkeypatch):
    seen = {"login": None, "polls": 0}

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
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Authorization"] == "Bearer stub-token"
            if self.path == "/auth/logout":
                seen["logout"] = body
                self._send(200, BACKEND)
                return
            if self.path == "/auth/login" and body.get("method") == "browser":
                seen["login"] = body
                self._send(202, {"login_id": "L2", "endpoint": body["endpoint"], "method": "browser",
                                 "state": "pending", "provider_id": "CDSE",
                                 "authorization_url": "https://identity.example/auth?state=s1"})
                return
            if self.path == "/auth/login":
                seen["login"] = body
                self._send(202, {"login_id": "L1", "endpoint": body["endpoint"], "method": "device", "state": "pending",
                                 "provider_id": "CDSE", "user_code": "WXYZ-1234",
                                 "verification_uri": "https://identity.example/device",
                                 "verification_uri_complete": None, "expires_in": 300, "interval": 1})

        def do_GET(self):  # noqa: N802
            if self.path == "/auth/logins/L2":
                self._send(200, {"login_id": "L2", "endpoint": BACKEND["url"], "method": "browser",
                                 "state": "failed", "error": "the identity provider refused: access_denied"})
                return
            if self.path == "/auth/logins/L1":
                seen["polls"] += 1
                state = "logged_in" if seen["polls"] >= 2 else "pending"
                self._send(200, {"login_id": "L1", "endpoint": BACKEND["url"], "method": "device", "state": state,
                                 "error": None})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "api-token").write_text("stub-token\n")
    monkeypatch.setenv("EODISPATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EODISPATCH_LISTEN", f"127.0.0.1:{server.server_address[1]}")
    yield seen
    server.shutdown()


def test_device_login_shows_the_code_and_follows_the_login(qgis_app, auth_stub):
    from eodispatch.core.client import DaemonClient
    from eodispatch.gui.login import LoginDialog

    dlg = LoginDialog(DaemonClient(), BACKEND, open_browser=False)
    dlg.show()
    dlg.start_button.click()
    wait_until(lambda: dlg.code.text() == "WXYZ-1234", message="user code shown")
    assert "https://identity.example/device" in dlg.message.text()
    assert auth_stub["login"] == {"endpoint": BACKEND["url"], "method": "device", "provider_id": "CDSE"}
    wait_until(lambda: dlg.state == "logged_in", timeout=10, message="logged in")
    assert auth_stub["polls"] >= 2
    assert dlg.message.text() == "Logged in."


def test_backends_table_shows_login_state(qgis_app, qgis_iface, qgis_new_project, auth_stub):
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        dock._backend_event(BACKEND)
        assert dock.backend_table.item(0, 1).text() == "login needed"
        assert dock.backend_table.cellWidget(0, 2).text() == "Log in"
        # An `auth` event after the login: the row follows.
        plugin.jobs.on_event("auth", dict(BACKEND, state="ok", login=dict(BACKEND["login"], state="logged_in"),
                                          login_id="L1"))
        assert dock.backend_table.rowCount() == 1
        assert dock.backend_table.item(0, 1).text() == "logged in"
        assert dock.backend_table.cellWidget(0, 2).text() == "Log out"
    finally:
        plugin.unload()


def test_browser_login_opens_the_page_and_reports_a_refusal(qgis_app, auth_stub):
    from eodispatch.core.client import DaemonClient
    from eodispatch.gui.login import LoginDialog

    dlg = LoginDialog(DaemonClient(), BACKEND, open_browser=False)
    dlg.method.setCurrentIndex(dlg.method.findData("browser"))
    dlg.start_button.click()
    wait_until(lambda: "https://identity.example/auth?state=s1" in dlg.message.text(), message="page link")
    assert auth_stub["login"]["method"] == "browser"
    wait_until(lambda: dlg.state == "failed", timeout=10, message="refusal")
    assert "access_denied" in dlg.message.text() and dlg.start_button.isEnabled()


def test_log_out_button(qgis_app, qgis_iface, qgis_new_project, auth_stub):
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        dock._backend_event(dict(BACKEND, login=dict(BACKEND["login"], state="logged_in")))
        dock.backend_table.cellWidget(0, 2).click()
        wait_until(lambda: dock.backend_table.item(0, 1).text() == "login needed", message="logged out")
        assert auth_stub["logout"] == {"endpoint": BACKEND["url"]}
    finally:
        plugin.unload()
