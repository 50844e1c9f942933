"""Fixtures of the plugin tests: the real daemon (``target/debug/eodispatch serve``) and
the fake openEO backend (``target/debug/fake-openeo --anonymous``) as child processes,
each test's daemon in its own temporary folders, and helpers to write job folders the
way the daemon publishes them (docs/results-folder.md; results_schema.py checks them
against docs/job.schema.json and docs/task.schema.json).

Run with ``QT_QPA_PLATFORM=offscreen`` and ``PYTHONPATH=qgis_plugin`` (tests/run does).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "qgis_plugin"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# pytest-qgis's QGIS profile (QgsSettings, the plugin's caches and loaded-jobs registry):
# fresh at every run, so that no test passes on what an earlier run left behind.
shutil.rmtree(Path(__file__).resolve().parent / ".qgis-settings", ignore_errors=True)

# Keep QGIS settings (QgsSettings, the loaded-jobs registry) out of the real profile.
_HOME = Path(__import__("tempfile").mkdtemp(prefix="eodispatch-plugin-tests-"))
for _var, _sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"), ("XDG_STATE_HOME", ".local/state")):
    os.environ[_var] = str(_HOME / _sub)
os.environ["HOME"] = str(_HOME)

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
PV_UDP = (
    "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/"
    "algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
)


def _binaries():
    daemon, fake = TARGET / "eodispatch", TARGET / "fake-openeo"
    packages = ["eodispatch", "fake-openeo"]
    wanted = [daemon, fake]
    if (REPO / "crates" / "geo").is_dir():
        # The daemon's GDAL helper (results branch), found next to the daemon binary.
        packages.append("eodispatch-gdal")
        wanted.append(TARGET / "eodispatch-gdal")
    if not all(p.exists() for p in wanted):
        args = ["cargo", "build"]
        for p in packages:
            args += ["-p", p]
        subprocess.run(args, cwd=REPO, check=True)
    return daemon, fake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fake_backend():
    """``fake-openeo --anonymous``: jobs queued 1 s, running 2 s, then finished."""
    _, fake = _binaries()
    proc = subprocess.Popen(
        [str(fake), "--port", "0", "--anonymous", "--queued-secs", "1", "--running-secs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, line
    url = line.split("listening on ", 1)[1].split()[0]
    yield url
    proc.terminate()
    proc.wait(10)


class Daemon:
    """A running ``eodispatch serve`` with all its folders under ``root``."""

    def __init__(self, root: Path, proc, env):
        self.root = root
        self.proc = proc
        self.env = env
        self.base = "http://" + env["EODISPATCH_LISTEN"]
        self.results_dir = Path(env["EODISPATCH_RESULTS_DIR"])

    @property
    def token(self) -> str:
        return (self.root / "state" / "api-token").read_text().strip()

    def api(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_status(self, job_id, status, timeout=30):
        deadline = time.time() + timeout
        job = None
        while time.time() < deadline:
            _, job = self.api("GET", f"/unit_jobs/{job_id}")
            if job and job.get("status") == status:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never became {status}: {job}")


def start_daemon(root: Path, listen: str = "", extra_env=None) -> Daemon:
    daemon_bin, _ = _binaries()
    env = dict(os.environ)
    env.update(
        {
            "HOME": str(root),
            "EODISPATCH_CONFIG_DIR": str(root / "config"),
            "EODISPATCH_STATE_DIR": str(root / "state"),
            "EODISPATCH_RESULTS_DIR": str(root / "results"),
            "EODISPATCH_LISTEN": listen or f"127.0.0.1:{free_port()}",
            "EODISPATCH_LOG": "info",
            "EODISPATCH_POLL_INTERVAL_MIN_S": "0.5",
            "EODISPATCH_POLL_INTERVAL_MAX_S": "1",
        }
    )
    env.update(extra_env or {})
    log = open(root / "daemon.log", "ab")
    proc = subprocess.Popen([str(daemon_bin), "serve"], env=env, stdout=log, stderr=log)
    d = Daemon(root, proc, env)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(d.base + "/health", timeout=1) as r:
                if r.status == 200:
                    return d
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("daemon did not become healthy: " + (root / "daemon.log").read_text())


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    """A fresh daemon per test; the plugin finds it through the same EODISPATCH_* env."""
    root = tmp_path / "eod"
    root.mkdir()
    d = start_daemon(root)
    for k in ("EODISPATCH_CONFIG_DIR", "EODISPATCH_STATE_DIR", "EODISPATCH_RESULTS_DIR", "EODISPATCH_LISTEN"):
        monkeypatch.setenv(k, d.env[k])
    yield d
    d.proc.terminate()
    try:
        d.proc.wait(20)
    except subprocess.TimeoutExpired:
        d.proc.kill()


def pv_job(endpoint: str, title: str = "PV farms") -> dict:
    return {
        "title": title,
        "label": "openeo",
        "format": "gtiff",
        "service": {"endpoint": endpoint, "application": PV_UDP},
        "parameters": {
            "spatial_extent": {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008},
            "temporal_extent": ["2023-05-01", "2023-09-30"],
        },
    }


def daemon_catalog(client, extra=()):
    """The daemon's ``GET /services`` (plus ``extra`` entries) and the ``POST /params``
    answer of each service whose description the daemon can fetch, keyed as the plugin's
    catalogue keys them. The bundled OGC API Processes records point at internet servers
    that the tests cannot reach: like the plugin's catalogue, this leaves their
    parameters out (their algorithms still exist). A loopback service must answer."""
    from eodispatch.core.client import ApiError
    from eodispatch.core.params import params_body
    from eodispatch.core.services import key_of

    services = list(client.blocking("GET", "/services")) + list(extra)
    params = {}
    for s in services:
        body = params_body(s["label"], s["endpoint"], s["application"], s.get("namespace"))
        try:
            params[key_of(s)] = client.blocking("POST", "/params", body)
        except ApiError:
            if s["endpoint"].startswith("http://127.0.0.1"):
                raise
    return services, params


def wait_until(predicate, timeout=20.0, app=None, message="condition"):
    """Runs the Qt event loop until ``predicate()`` is true."""
    from qgis.core import QgsApplication

    app = app or QgsApplication.instance()
    deadline = time.time() + timeout
    while time.time() < deadline:
        app.processEvents()
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture(scope="session")
def gdal_available():
    assert shutil.which("gdal_translate") or __import__("osgeo.gdal")
    return True


def publish_when_finished(daemon: "Daemon", job_id: int, timeout: float = 60.0, style=None):
    """The job's folder as the daemon publishes it, in a thread; ``.folder`` is set when
    the job has finished and its results are ``ready`` (downloaded, checked, inspected by
    GDAL and renamed into results_dir). ``style`` is ignored: the daemon's manifest says."""
    import threading

    def run():
        daemon.wait_status(job_id, "finished", timeout)
        end = time.time() + timeout
        job = daemon.api("GET", f"/unit_jobs/{job_id}")[1]
        while time.time() < end and (job.get("results") or {}).get("state") != "ready":
            time.sleep(0.1)
            job = daemon.api("GET", f"/unit_jobs/{job_id}")[1]
        assert (job.get("results") or {}).get("state") == "ready", f"the daemon did not publish job {job_id}: {job}"
        t.published_by_daemon = True
        t.folder = Path(job["results"]["dir"])

    t = threading.Thread(target=run, daemon=True)
    t.folder = None
    t.published_by_daemon = False
    t.start()
    return t


def manifest_layer_names(folder) -> list:
    """The layer names a job folder's job.json promises (readable map layers); the
    job.json is checked against docs/job.schema.json first."""
    from results_schema import check_job_json

    data = json.loads((Path(folder) / "job.json").read_text())
    check_job_json(data)
    return [x["name"] for x in data["layers"] if x.get("kind") in ("raster", "vector") and x.get("readable", True)]


@pytest.fixture
def fresh_settings():
    """No cached catalogue, no remembered service, background not offered yet."""
    from qgis.core import QgsSettings

    from eodispatch.core.services import SETTINGS_KEY
    from eodispatch.gui.dock import SERVICE_CHOICE_KEY
    from eodispatch.plugin import OSM_OFFERED_KEY

    keys = (SETTINGS_KEY, SERVICE_CHOICE_KEY, OSM_OFFERED_KEY)
    for k in keys:
        QgsSettings().remove(k)
    yield QgsSettings()
    for k in keys:
        QgsSettings().remove(k)
