"""A real pygeoapi for the plugin tests: ``tests/ogc/server.py`` (README there) run with
the venv ``<repo>/.venv-ogc`` that ``tests/run`` makes (or ``$EODISPATCH_OGC_PYTHON``),
and a forwarder that puts it under a path prefix, so that it is a server with a
namespace (``<forwarder>/<namespace>/processes/...``).
"""

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]


def ogc_python() -> Path:
    python = Path(os.environ.get("EODISPATCH_OGC_PYTHON") or REPO / ".venv-ogc" / "bin" / "python")
    if not python.exists():
        raise AssertionError(f"{python} is missing: tests/run creates the OGC test server's venv .venv-ogc")
    return python


class Pygeoapi:
    """``server.py --port 0 --data DIR [--public-url URL]``, started and waited for."""

    def __init__(self, data_dir: Path, public_url: Optional[str] = None):
        self.data_dir = Path(data_dir)
        args = [str(ogc_python()), str(REPO / "tests" / "ogc" / "server.py"), "--port", "0", "--data", str(data_dir)]
        if public_url:
            args += ["--public-url", public_url]
        self.log = open(self.data_dir.parent / (self.data_dir.name + ".stderr"), "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = ""
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY ") or not line and self.proc.poll() is not None:
                break
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError(f"pygeoapi did not start: {line!r}; see {self.log.name}")
        self.url = line.split()[1]  # the server itself (not the public URL)

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def requests(self):
        """What reached pygeoapi (``GET /_test/stats``), test routes excluded."""
        return self.get("/_test/stats")["requests"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class PrefixForwarder:
    """Forwards ``/<prefix>/...`` to ``target/...`` and answers 404 to anything else."""

    def __init__(self, prefix: str):
        self.prefix = "/" + prefix.strip("/")
        self.target = ""
        self.paths = []
        forwarder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                forwarder.paths.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not (self.path == forwarder.prefix or self.path.startswith(forwarder.prefix + "/")):
                    self._answer(404, {"Content-Type": "text/plain"}, b"not under the namespace")
                    return
                req = urllib.request.Request(forwarder.target + self.path[len(forwarder.prefix):], data=body,
                                             method=self.command)
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "content-length", "connection"):
                        req.add_header(k, v)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        self._answer(r.status, r.headers, r.read())
                except urllib.error.HTTPError as e:
                    self._answer(e.code, e.headers, e.read())

            def _answer(self, status, headers, data):
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
