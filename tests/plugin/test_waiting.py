"""Jobs that wait say why in the plugin's job list, live from the daemon's SSE ``job``
events: a login that is missing (the fake backend wants a bearer, the daemon has none), a
backend that does not answer (nothing listens on its port), the backend's limit of running
jobs (``max_running_jobs = 1`` in config.toml, a long first job). The status cell says
what the job waits for, its tooltip the daemon's sentence; the backends table says the
same of the backend. Real daemon, real fake backend."""

import datetime as dt
import re
import subprocess

import pytest

from conftest import _binaries, free_port, pv_job, start_daemon, wait_until


def _fake(*args):
    _, fake_bin = _binaries()
    proc = subprocess.Popen([str(fake_bin), "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    return proc, line.split("listening on ", 1)[1].split()[0]


@pytest.fixture
def started_plugin(qgis_iface, qgis_new_project):
    import eodispatch

    plugins = []

    def start():
        plugin = eodispatch.classFactory(qgis_iface)
        plugin.initGui()
        plugins.append(plugin)
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        return plugin

    yield start
    for p in plugins:
        p.unload()


def _cell(plugin, jid):
    items = plugin.dock.job_list.items
    return items[jid] if jid in items else None


def _wait_cell(plugin, jid, text, timeout=30):
    wait_until(lambda: _cell(plugin, jid) is not None and _cell(plugin, jid).text(1) == text, timeout=timeout,
               message=f"job {jid} listed as {text!r} (now {_cell(plugin, jid) and _cell(plugin, jid).text(1)!r})")
    return _cell(plugin, jid)


def test_a_job_waiting_for_a_login_says_so_and_offers_the_login(qgis_app, daemon, started_plugin):
    proc, url = _fake("--queued-secs", "0.2", "--running-secs", "0.5")  # wants a bearer token
    try:
        plugin = started_plugin()
        status, job = daemon.api("POST", "/unit_jobs", pv_job(url, "needs a login"))
        assert status == 201, job
        item = _wait_cell(plugin, job["id"], "waiting: login needed")
        tip = item.toolTip(1)
        assert tip.startswith("created: Waiting for a login to "), tip
        assert f"eodispatch login {url}" in tip and "Log in" in tip, tip
        # Over SSE: the model has the daemon's waiting object as it is.
        waiting = plugin.jobs.job(job["id"])["waiting"]
        assert waiting["reason"] == "login_required" and waiting["backend"].rstrip("/") == url
        # The backends table says the same, with the button the message names.
        dock = plugin.dock
        wait_until(lambda: dock.backend_row(url) >= 0, message="the backend listed")
        row = dock.backend_row(url)
        assert dock.backend_table.item(row, 1).text() == "login needed"
        assert dock.backend_table.cellWidget(row, 2).text() == "Log in"
        # From the job list: the log-in dialog for that backend.
        dock.job_action("login", job["id"])
        assert dock.login_dialog is not None
        assert dock.login_dialog.backend["url"].rstrip("/") == url
        dock.login_dialog.close()
        assert daemon.api("GET", f"/unit_jobs/{job['id']}")[1]["status"] == "created"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_job_for_an_unreachable_backend_says_since_when(qgis_app, daemon, started_plugin):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    plugin = started_plugin()
    status, job = daemon.api("POST", "/unit_jobs", pv_job(url, "backend down"))
    assert status == 201, job
    item = _wait_cell(plugin, job["id"], "waiting: backend unreachable")
    waiting = plugin.jobs.job(job["id"])["waiting"]
    assert waiting["reason"] == "backend_unreachable" and waiting["since"], waiting
    tip = item.toolTip(1)
    assert f"Backend {url} unreachable since " in tip, tip
    # The next try is noted when the cycle that found the backend unreachable ends: it
    # comes in a later event of the job (the first one may have none yet).
    wait_until(lambda: "next try at " in item.toolTip(1), timeout=10, message="the next try in the tooltip")
    # The backends table: unreachable since the local time the daemon gave, no button.
    since = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", waiting["since"]).replace("Z", "+00:00"))
    dock = plugin.dock
    wait_until(lambda: dock.backend_row(url) >= 0, message="the backend listed")
    row = dock.backend_row(url)
    wait_until(lambda: dock.backend_table.item(row, 1).text().startswith("unreachable"), message="unreachable")
    assert dock.backend_table.item(row, 1).text() == f"unreachable since {since.astimezone().strftime('%H:%M')}"
    assert dock.backend_table.cellWidget(row, 2) is None


def test_a_job_behind_the_backends_limit_says_so_until_it_goes_on(qgis_app, tmp_path, monkeypatch, started_plugin):
    proc, url = _fake("--anonymous", "--queued-secs", "0.2", "--running-secs", "60")
    root = tmp_path / "eod"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.toml").write_text(f'[backends.fake]\nurl = "{url}"\nmax_running_jobs = 1\n')
    d = start_daemon(root)
    for k in ("EODISPATCH_CONFIG_DIR", "EODISPATCH_STATE_DIR", "EODISPATCH_RESULTS_DIR", "EODISPATCH_LISTEN"):
        monkeypatch.setenv(k, d.env[k])
    try:
        plugin = started_plugin()
        status, first = d.api("POST", "/unit_jobs", pv_job(url, "first"))
        assert status == 201, first
        d.wait_status(first["id"], "running")
        status, second = d.api("POST", "/unit_jobs", pv_job(url, "second"))
        assert status == 201, second
        item = _wait_cell(plugin, second["id"], "waiting: backend limit")
        tip = item.toolTip(1)
        assert "limit of 1 running job on" in tip and "max_running_jobs" in tip, tip
        # The job that runs waits for nothing: its status as it is.
        assert _cell(plugin, first["id"]).text(1) == "running"
        # A slot is freed: the second job goes on and its cell says so, live.
        plugin.dock.job_action("cancel", first["id"])
        wait_until(lambda: _cell(plugin, second["id"]).text(1) in ("queued", "running"), timeout=30,
                   message="the second job going on")
        assert plugin.jobs.job(second["id"])["waiting"] is None
        assert not _cell(plugin, second["id"]).text(1).startswith("waiting")
    finally:
        d.proc.terminate()
        d.proc.wait(20)
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("reason, text", [
    ("login_required", "waiting: login needed"),
    ("backend_unreachable", "waiting: backend unreachable"),
    ("backend_limit", "waiting: backend limit"),
    ("service_unavailable", "waiting: service unavailable"),
])
def test_every_waiting_reason_has_its_words(qgis_app, reason, text):
    """Each reason of the contract in the job list, fed as the daemon's ``job`` event
    gives it. (``service_unavailable`` has no test against the daemon here: the daemon
    accepts a job only when it could read the service definition, and keeps what it read
    for a while, so a definition that goes away later cannot be staged from a test.)"""
    from eodispatch.core.client import DaemonClient
    from eodispatch.core.jobs import JobModel
    from eodispatch.core.sse import EventStream
    from eodispatch.gui.jobs import WAITING_COLOR, JobList

    client = DaemonClient()
    model = JobModel(client, EventStream(client))
    jobs = JobList(model)
    message = f"The daemon's sentence about {reason}."
    job = {"id": 7, "title": "PV", "status": "created", "created": "2026-12-02T13:00:00Z",
           "updated": "2026-12-02T13:00:01Z",
           "waiting": {"reason": reason, "message": message, "backend": "https://openeo.example",
                       "since": "2026-12-02T13:00:01Z", "next_try": None}}
    model.on_event("job", job)
    item = jobs.items[7]
    assert item.text(1) == text
    assert item.toolTip(1).startswith(f"created: {message}")
    assert item.foreground(1).color().name() == WAITING_COLOR
    # Nothing to wait for any more: the status again.
    model.on_event("job", dict(job, status="queued", updated="2026-12-02T13:00:05Z", waiting=None))
    assert item.text(1) == "queued" and message not in item.toolTip(1)
