"""The daemon client against the real daemon: problem+json errors with their fields and
request id (message for the bar, details in the QGIS log), an unreachable daemon, the
blocking variant and its cancellation, and following a daemon that moved."""

import threading
import time

import pytest

from conftest import free_port, pv_job, start_daemon, wait_until


def test_problem_answers_become_api_errors_logged_with_details(qgis_app, daemon):
    from qgis.core import QgsApplication

    from eodispatch.core.client import LOG_TAG, DaemonClient

    logged = []
    QgsApplication.messageLog().messageReceived.connect(
        lambda message, tag, level: logged.append(message) if tag == LOG_TAG else None)
    got = {}
    DaemonClient().post("/unit_jobs", {"title": "", "label": "nope"}, lambda r: got.update(r=r))
    wait_until(lambda: "r" in got, message="answer")
    err = got["r"].error
    assert err is not None and err.status == 422 and err.code == "InvalidParameter"
    names = {e["name"] for e in err.errors}
    assert {"title", "label"} <= names, err.errors
    assert err.request_id
    wait_until(lambda: any(err.request_id in m for m in logged), message="details in the QGIS log")
    assert any("label:" in m for m in logged)


def test_unreachable_daemon_and_blocking_calls(qgis_app, daemon, monkeypatch, tmp_path):
    from qgis.core import QgsFeedback

    from eodispatch.core.client import ApiError, DaemonClient

    client = DaemonClient()
    assert client.blocking("GET", "/unit_jobs") == []
    with pytest.raises(ApiError) as e:
        client.blocking("GET", "/unit_jobs/999")
    assert e.value.status == 404 and e.value.code == "JobNotFound"
    # Cancelling the feedback ends a request that would never finish (/events).
    feedback = QgsFeedback()
    threading.Timer(0.3, feedback.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(ApiError) as e:
        client.blocking("GET", "/events", feedback=feedback)
    assert e.value.code == "Canceled" and time.monotonic() - t0 < 3
    # Nothing listens: a clear error, not a hang. (Another state folder: in the daemon's,
    # its discovery file would lead to it.)
    monkeypatch.setenv("EODISPATCH_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("EODISPATCH_STATE_DIR", str(tmp_path / "state"))
    from eodispatch.core.daemon import DaemonInfo

    gone = DaemonClient(DaemonInfo.resolve())
    got = {}
    gone.get("/health", lambda r: got.update(r=r))
    wait_until(lambda: "r" in got, message="answer")
    assert got["r"].error.code == "DaemonUnreachable" and "cannot be reached" in got["r"].error.message


def test_plugin_follows_a_daemon_that_moved(qgis_app, qgis_iface, qgis_new_project, daemon, monkeypatch, tmp_path):
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    other = None
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="connected")
        other = start_daemon(tmp_path)
        for k in ("EODISPATCH_CONFIG_DIR", "EODISPATCH_STATE_DIR", "EODISPATCH_RESULTS_DIR", "EODISPATCH_LISTEN"):
            monkeypatch.setenv(k, other.env[k])
        plugin.refresh_info()
        assert plugin.client.info.base_url == other.base
        assert plugin.autoloader.results_dir == other.results_dir
        status, job = other.api("POST", "/unit_jobs", pv_job("http://127.0.0.1:9", "on the other daemon"))
        assert status == 201, job
        wait_until(lambda: plugin.stream.is_connected and any(
            j.get("title") == "on the other daemon" for j in plugin.jobs.jobs.values()), message="other daemon's jobs")
    finally:
        plugin.unload()
        if other is not None:
            other.proc.terminate()
            other.proc.wait(20)


def test_a_wrong_token_is_shown_not_hidden(qgis_app, qgis_iface, qgis_new_project, daemon, monkeypatch, tmp_path):
    """A token file that does not match the daemon's (e.g. another daemon's): the dock says
    the events are refused, with the daemon's reason, and keeps retrying."""
    import eodispatch

    state = tmp_path / "state"
    state.mkdir()
    (state / "api-token").write_text("0" * 64)
    monkeypatch.setenv("EODISPATCH_STATE_DIR", str(state))
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.last_error is not None, message="stream refused")
        assert plugin.stream.last_error.startswith("HTTP 401"), plugin.stream.last_error
        plugin.dock.check_health()
        wait_until(lambda: "no live events (HTTP 401" in plugin.dock.daemon_label.text(), message="label")
    finally:
        plugin.unload()


def test_the_plugin_survives_being_unloaded_and_loaded_again_and_again(qgis_app, qgis_iface, qgis_new_project,
                                                                       daemon):
    """Reloading the plugin (Plugin Reloader, or disabling and enabling it) a few times
    in one QGIS session: with a Python closure connected to every reply, a new reply
    reached the freed closure of a deleted one and QGIS crashed (segmentation fault at
    the 4th load here)."""
    from qgis.core import QgsSettings

    import eodispatch
    from eodispatch.core.services import SETTINGS_KEY

    for i in range(8):
        QgsSettings().remove(SETTINGS_KEY)  # every load fetches the services and their parameters
        plugin = eodispatch.classFactory(qgis_iface)
        plugin.initGui()
        try:
            plugin.start()
            wait_until(lambda: plugin.dock.service_combo.count() > 1 and plugin.stream.is_connected,
                       message=f"services and events at load {i + 1}")
        finally:
            plugin.unload()
