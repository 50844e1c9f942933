"""The backends table in plain words: each backend by its title (else its address
without the scheme), the full URL in the tooltip; logged in / login needed / no login
needed / logging in… / unreachable since HH:MM; a Log in button only where a login is
possible and needed, Log out where logged in. Against the real daemon and the fake
backend; the waiting jobs' side is in test_waiting.py."""

import json
import subprocess
import urllib.request

from conftest import _binaries, pv_job, wait_until


def _fake_without_login():
    """``fake-openeo --anonymous`` whose ``/credentials/oidc`` is missing (404, as the
    openEO API allows): a backend that offers no login and needs none."""
    _, fake_bin = _binaries()
    proc = subprocess.Popen([str(fake_bin), "--port", "0", "--anonymous", "--queued-secs", "0.2",
                             "--running-secs", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    url = line.split("listening on ", 1)[1].split()[0]
    rule = {"method": "GET", "path": "/credentials/oidc", "times": 0, "kind": "status", "status": 404}
    req = urllib.request.Request(url + "/_fake/faults", data=json.dumps(rule).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 201
    return proc, url


def test_backends_by_title_in_plain_words_and_no_login_for_an_anonymous_backend(
        qgis_app, qgis_iface, qgis_new_project, daemon):
    import eodispatch

    proc, url = _fake_without_login()
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        dock = plugin.dock
        status, job = daemon.api("POST", "/unit_jobs", pv_job(url, "anonymous"))
        assert status == 201, job
        daemon.wait_status(job["id"], "finished")
        entry = next(b for b in daemon.api("GET", "/backends")[1] if b["url"].rstrip("/") == url)
        assert entry["login"]["state"] == "not_needed" and entry["login"]["possible"] is False, entry
        # The dock reads /backends again as the job goes on: no login needed, no button.
        wait_until(lambda: dock.backend_row(url) >= 0
                   and dock.backend_table.item(dock.backend_row(url), 1).text() == "no login needed",
                   message="the anonymous backend: no login needed")
        row = dock.backend_row(url)
        assert dock.backend_table.cellWidget(row, 2) is None
        name = dock.backend_table.item(row, 0)
        assert url in name.toolTip()
        assert name.text() == (entry["title"] or url.split("://", 1)[1]), name.text()
        # The CDSE federation (always listed): a login is possible and needed; its row
        # names it without the https:// that cut it off.
        cdse = "https://openeofed.dataspace.copernicus.eu"
        row = dock.backend_row(cdse)
        assert row >= 0
        assert dock.backend_table.item(row, 0).text() == "openeofed.dataspace.copernicus.eu"
        assert cdse in dock.backend_table.item(row, 0).toolTip()
        assert dock.backend_table.item(row, 1).text() == "login needed"
        assert dock.backend_table.cellWidget(row, 2).text() == "Log in"
        # The table is as high as its rows: no empty space under them.
        t = dock.backend_table
        rows = sum(t.rowHeight(r) for r in range(t.rowCount()))
        assert t.height() <= t.horizontalHeader().height() + rows + 2 * t.frameWidth() + 1, (t.height(), rows)
    finally:
        plugin.unload()
        proc.terminate()
        proc.wait(10)


def test_backend_states_in_plain_words():
    """Every state of the contract, as the table words it (no daemon needed: the
    daemon's side of each is in test_waiting.py and above)."""
    import datetime as dt

    from eodispatch.core.backends import LOGIN, LOGOUT, backend_view

    url = "https://openeo.example/openeo/1.2"

    def view(state="ok", login="logged_out", possible=True, **extra):
        return backend_view(dict({"url": url, "title": None, "state": state, "since": None, "message": None,
                                  "login": {"state": login, "possible": possible}}, **extra))

    assert (view().name, view().state, view().button) == ("openeo.example/openeo/1.2", "login needed", LOGIN)
    assert view(title="Example openEO").name == "Example openEO"
    assert url in view(title="Example openEO").tip
    assert (view(login="logged_in").state, view(login="logged_in").button) == ("logged in", LOGOUT)
    assert (view(login="not_needed", possible=False).state, view(login="not_needed", possible=False).button) == (
        "no login needed", None)
    assert (view(login="pending").state, view(login="pending").button) == ("logging in…", None)
    refused = view(state="login_required", login="login_required")
    assert (refused.state, refused.button) == ("login needed", LOGIN)
    # Needed but impossible (no identity provider): said, without a button that cannot work.
    stuck = view(state="login_required", login="login_required", possible=False)
    assert (stuck.state, stuck.button) == ("login needed", None) and "access_token" in stuck.tip
    since = "2026-12-02T13:05:09.123456789Z"
    local = dt.datetime(2026, 12, 2, 13, 5, 9, tzinfo=dt.timezone.utc).astimezone()
    down = backend_view({"url": url, "state": "unreachable", "since": since, "message": "connection refused",
                         "login": {"state": "logged_out", "possible": True}}, now=local)
    assert down.state == f"unreachable since {local.strftime('%H:%M')}", down.state
    assert down.button is None and "connection refused" in down.tip
    assert backend_view({"url": url, "state": "unreachable", "since": None, "login": {}}).state == "unreachable"
