"""Logging in from the plugin against the real daemon, a real OpenID Connect provider
(panva's oidc-provider from npm, tests/oidc/server.mjs) and the fake openEO backend, which
checks every bearer token by introspection at that provider. The person's browser is played
by a URL handler: the dialog "opens" the page, the test follows it like a browser would
(cookies, redirects, the device confirmation form)."""

import http.cookiejar
import os
import re
import subprocess
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, _binaries, pv_job, start_daemon, wait_until

OIDC_DIR = REPO / "tests" / "oidc"


@pytest.fixture
def idp():
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OIDC provider is not installed: npm ci --prefix tests/oidc (tests/run does it)")
    proc = subprocess.Popen(
        ["node", str(OIDC_DIR / "server.mjs"), "--port", "0"],
        cwd=OIDC_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    yield line.split()[1]
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def world(idp, tmp_path, monkeypatch):
    """The fake backend (tokens checked at ``idp``) and a daemon that knows it."""
    _, fake_bin = _binaries()
    fake = subprocess.Popen(
        [str(fake_bin), "--port", "0", "--queued-secs", "0.5", "--running-secs", "1",
         "--issuer", idp, "--default-client", "eodispatch-public",
         "--introspect", idp + "/token/introspection",
         "--introspect-client", "fake-openeo:fake-openeo-introspection-secret"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = fake.stdout.readline()
    assert "listening on" in line, line
    url = line.split("listening on ", 1)[1].split()[0]
    monkeypatch.setenv("EODISPATCH_BACKENDS__FAKE__URL", url)
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        # No Secret Service in this session: the opt-in file store (tests/run runs the
        # plugin tests inside a gnome-keyring session, so there the keyring is used).
        monkeypatch.setenv("EODISPATCH_TOKEN_STORE", "file")
    root = tmp_path / "eod"
    root.mkdir()
    d = start_daemon(root)
    for k in ("EODISPATCH_CONFIG_DIR", "EODISPATCH_STATE_DIR", "EODISPATCH_RESULTS_DIR", "EODISPATCH_LISTEN"):
        monkeypatch.setenv(k, d.env[k])
    yield d, url.rstrip("/")
    d.api("POST", "/auth/logout", {"endpoint": url})
    d.proc.terminate()
    d.proc.wait(20)
    fake.terminate()
    fake.wait(10)


class Browser:
    """Catches the pages the plugin opens (QDesktopServices) and visits them."""

    def __init__(self):
        from qgis.PyQt.QtCore import QObject, pyqtSlot
        from qgis.PyQt.QtGui import QDesktopServices

        opened = self.opened = []

        class Handler(QObject):
            @pyqtSlot("QUrl")
            def open(self, url):  # noqa: A003 (the slot QDesktopServices calls)
                opened.append(url.toString())

        self.handler = Handler()
        for scheme in ("http", "https"):
            QDesktopServices.setUrlHandler(scheme, self.handler, "open")
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def close(self):
        from qgis.PyQt.QtGui import QDesktopServices

        for scheme in ("http", "https"):
            QDesktopServices.unsetUrlHandler(scheme)

    def get(self, url):
        with self.opener.open(url, timeout=10) as r:
            return r.status, r.geturl(), r.read().decode()

    def post(self, url, form):
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, r.geturl(), r.read().decode()

    def approve_device(self, page_url):
        _, _, page = self.get(page_url)
        action = page_url.split("?")[0]
        fields = dict(re.findall(r'name="(xsrf|user_code)" value="([^"]*)"', page))
        _, _, confirm = self.post(action, fields)
        fields.update(re.findall(r'name="(xsrf)" value="([^"]*)"', confirm))
        status, _, done = self.post(action, dict(fields, confirm="yes"))
        assert status == 200 and "Sign-in Success" in done, done[:300]


@pytest.fixture
def browser(qgis_app):
    b = Browser()
    yield b
    b.close()


def _backend(d, url):
    status, backends = d.api("GET", "/backends")
    assert status == 200
    return next(b for b in backends if b["url"] == url)


def test_device_login_from_the_dock_lets_jobs_run(qgis_app, qgis_iface, qgis_new_project, world, browser):
    import eodispatch

    d, url = world
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    plugin.start()
    try:
        dock = plugin.dock
        assert _backend(d, url)["login"]["state"] == "logged_out"

        def row():
            return dock.backend_row(url)

        wait_until(lambda: row() >= 0, message="the backend listed in the dock")
        assert url in dock.backend_table.item(row(), 0).toolTip()
        assert dock.backend_table.item(row(), 1).text() == "login needed"
        # The dock's own "Log in" button opens the dialog.
        dock.backend_table.cellWidget(row(), 2).click()
        dlg = dock.login_dialog
        dlg.start_button.click()
        wait_until(lambda: dlg.code.text() != "" and browser.opened, message="device code and page")
        page = browser.opened[-1]
        assert "user_code=" in page and dlg.code.text() in urllib.parse.unquote(page)
        browser.approve_device(page)
        wait_until(lambda: dlg.state == "logged_in", timeout=20, message="logged in")
        # The dock follows the daemon's `auth` event.
        wait_until(lambda: dock.backend_table.item(row(), 1).text() == "logged in", timeout=10,
                   message="backends table says logged in")
        assert dock.backend_table.cellWidget(row(), 2).text() == "Log out"
        assert _backend(d, url)["login"]["method"] == "device"
        # The fake backend accepts the daemon's token (introspection at the provider).
        status, job = d.api("POST", "/unit_jobs", pv_job(url, "after the plugin's login"))
        assert status == 201, job
        d.wait_status(job["id"], "finished", timeout=30)
    finally:
        plugin.unload()


def test_browser_login_comes_back_to_the_daemon(qgis_app, world, browser):
    from eodispatch.core.client import DaemonClient
    from eodispatch.gui.login import LoginDialog

    d, url = world
    dlg = LoginDialog(DaemonClient(), _backend(d, url), open_browser=True)
    dlg.method.setCurrentIndex(dlg.method.findData("browser"))
    dlg.show()
    dlg.start_button.click()
    wait_until(lambda: browser.opened, message="the login page opened")
    status, landed, page = browser.get(browser.opened[-1])
    assert status == 200 and urllib.parse.urlparse(landed).path == "/auth/callback", landed
    assert "You can close this tab" in page
    wait_until(lambda: dlg.state == "logged_in", timeout=20, message="logged in")
    assert _backend(d, url)["login"]["method"] == "browser"
