"""The plugin finds the daemon through its discovery file (``state/daemon.json``): a
daemon on port 0, whose address neither config.toml nor the environment can tell, is
reached with its token and results folder; once it stops, the plugin derives the
address from the configuration again and says so; a stale or broken file is reported,
and ``[::]`` is reached at ``[::1]`` as the daemon and the CLI do."""

import json
import os
import subprocess
import time
from pathlib import Path

from conftest import _binaries, wait_until


def _env_for(root: Path, listen: str) -> dict:
    return {
        "EODISPATCH_CONFIG_DIR": str(root / "config"),
        "EODISPATCH_STATE_DIR": str(root / "state"),
        "EODISPATCH_RESULTS_DIR": str(root / "results"),
        "EODISPATCH_LISTEN": listen,
    }


def _start_on_port_0(root: Path):
    daemon_bin, _ = _binaries()
    env = dict(os.environ)
    env.update(_env_for(root, "127.0.0.1:0"))
    env.update({"HOME": str(root), "EODISPATCH_LOG": "info", "EODISPATCH_CATALOGUES": "bundled"})
    log = open(root / "daemon.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen([str(daemon_bin), "serve"], env=env, stdout=log, stderr=log)
    log.close()
    discovery = root / "state" / "daemon.json"
    deadline = time.time() + 30
    while not discovery.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError("no discovery file: " + (root / "daemon.log").read_text())
        time.sleep(0.05)
    return proc, json.loads(discovery.read_text())


def test_the_plugin_connects_through_the_discovery_file(qgis_app, qgis_iface, qgis_new_project, monkeypatch,
                                                        tmp_path):
    import eodispatch
    from eodispatch.core.client import DaemonClient
    from eodispatch.core.daemon import FROM_CONFIG, FROM_DISCOVERY, DaemonInfo

    root = tmp_path / "eod"
    root.mkdir()
    for k, v in _env_for(root, "127.0.0.1:0").items():
        monkeypatch.setenv(k, v)
    proc, facts = _start_on_port_0(root)
    plugin = None
    try:
        info = DaemonInfo.resolve()
        assert info.origin == FROM_DISCOVERY, info
        assert info.base_url == facts["api_url"] and not info.base_url.endswith(":0")
        assert info.pid == proc.pid == facts["pid"]
        assert info.token_path == Path(facts["token_file"]) and info.read_token()
        assert info.results_dir == root / "results"
        assert DaemonClient(info).blocking("GET", "/unit_jobs") == []

        plugin = eodispatch.classFactory(qgis_iface)
        plugin.initGui()
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="events connected")
        plugin.dock.check_health()
        wait_until(lambda: f" at {facts['api_url']} — API token read" in plugin.dock.daemon_label.text(),
                   message="status names the address of the discovery file")
        assert plugin.autoloader.results_dir == root / "results"
    finally:
        if plugin is not None:
            plugin.unload()
        proc.terminate()
        proc.wait(20)
    # Stopped cleanly: the file is gone, and the address comes from the configuration.
    assert not (root / "state" / "daemon.json").exists()
    info = DaemonInfo.resolve()
    assert info.origin == FROM_CONFIG and info.base_url == "http://127.0.0.1:0"
    assert "address from the configuration" in info.origin_text


def test_without_a_running_daemon_the_configuration_is_used_and_a_stale_file_reported(tmp_path):
    from eodispatch.core.daemon import FROM_CONFIG, FROM_CONFIG_STALE, DaemonInfo

    env = dict(_env_for(tmp_path, "[::]:8421"), HOME=str(tmp_path))
    info = DaemonInfo.resolve(env)
    assert info.origin == FROM_CONFIG and info.note == ""
    # A daemon on every address is reached over loopback of the same family, as the
    # daemon writes it into its discovery file and the CLI and ./install read it.
    assert info.base_url == "http://[::1]:8421"
    assert DaemonInfo.resolve(dict(env, EODISPATCH_LISTEN="0.0.0.0:9")).base_url == "http://127.0.0.1:9"

    state = tmp_path / "state"
    state.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    facts = {"api_url": "http://127.0.0.1:1", "token_file": str(state / "api-token"),
             "results_dir": str(tmp_path / "elsewhere"), "state_dir": str(state),
             "config_file": str(tmp_path / "config" / "config.toml"), "pid": gone.pid, "version": "0",
             "started": "2026-01-01T00:00:00Z"}
    (state / "daemon.json").write_text(json.dumps(facts))
    info = DaemonInfo.resolve(env)
    assert info.origin == FROM_CONFIG_STALE and f"process {gone.pid}, which is gone" in info.note
    assert info.base_url == "http://[::1]:8421" and info.results_dir == tmp_path / "results"
    assert info.note in info.origin_text
    (state / "daemon.json").write_text("{")
    info = DaemonInfo.resolve(env)
    assert info.origin == FROM_CONFIG_STALE and "is not a discovery file" in info.note
