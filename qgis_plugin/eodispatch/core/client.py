"""HTTP client of the daemon's local API on ``QgsNetworkAccessManager``.

- ``DaemonClient.request`` is asynchronous: it returns at once and calls the callback
  with an ``ApiResult`` from the Qt event loop (GUI thread).
- ``DaemonClient.blocking`` waits for the answer in a local event loop of the calling
  thread; for Processing algorithms and ``QgsTask.run`` (worker threads) only. It
  honours a ``QgsFeedback``'s cancellation.

The daemon is on loopback: requests go through a network access manager of the plugin
with no proxy at all, so a proxy configured in QGIS (which would refuse or leak
``127.0.0.1``) is bypassed. Every request carries ``Authorization: Bearer <token>``,
read from the daemon's token file. Errors are the daemon's ``application/problem+json``
(``ApiError``); network failures become an ``ApiError`` with code ``DaemonUnreachable``.

No Qt widgets here.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from qgis.core import Qgis, QgsFeedback, QgsMessageLog, QgsNetworkAccessManager
from qgis.PyQt.QtCore import QByteArray, QEventLoop, QObject, QTimer, QUrl, pyqtSlot
from qgis.PyQt.QtNetwork import QNetworkProxy, QNetworkReply, QNetworkRequest

from .daemon import DaemonInfo

LOG_TAG = "EO Dispatch"
USER_AGENT = b"eodispatch-qgis-plugin/0.1"


def log(message: str, level=Qgis.MessageLevel.Info) -> None:
    """Writes to the QGIS log panel under the plugin's tab."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class ApiError(Exception):
    """An error answer of the daemon (problem+json) or a network failure."""

    def __init__(
        self,
        message: str,
        status: int = 0,
        code: str = "",
        errors: Optional[List[Dict[str, str]]] = None,
        request_id: str = "",
        body: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors = errors or []
        self.request_id = request_id
        self.body = body

    @classmethod
    def from_problem(cls, status: int, body: Any, fallback: str) -> "ApiError":
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("title") or fallback
            errors = body.get("errors") if isinstance(body.get("errors"), list) else []
            return cls(
                str(detail),
                status=status,
                code=str(body.get("code") or ""),
                errors=[e for e in errors if isinstance(e, dict)],
                request_id=str(body.get("request_id") or ""),
                body=body,
            )
        return cls(fallback, status=status, body=body)

    def details(self) -> str:
        """Everything known, for the QGIS log."""
        parts = [f"{self.code or 'Error'} (HTTP {self.status}): {self.message}"]
        for e in self.errors:
            parts.append(f"  {e.get('name')}: {e.get('reason')}")
        if self.request_id:
            parts.append(f"  request id {self.request_id}")
        return "\n".join(parts)


@dataclass
class ApiResult:
    """Outcome of one request: ``data`` (parsed JSON) when ``ok``, else ``error``."""

    status: int = 0
    data: Any = None
    error: Optional[ApiError] = None
    headers: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def _no_proxy_manager(parent: Optional[QObject] = None) -> QgsNetworkAccessManager:
    nam = QgsNetworkAccessManager(parent)
    nam.setProxy(QNetworkProxy(QNetworkProxy.ProxyType.NoProxy))
    return nam


def _result_of(reply: QNetworkReply) -> ApiResult:
    status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute) or 0
    raw = bytes(reply.readAll())
    headers = {
        bytes(k).decode("latin-1").lower(): bytes(reply.rawHeader(k)).decode("latin-1")
        for k in reply.rawHeaderList()
    }
    body: Any = None
    if raw:
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = raw.decode("utf-8", "replace")
    if status == 0:
        return ApiResult(
            0,
            None,
            ApiError(
                f"the eodispatch daemon cannot be reached ({reply.errorString()})",
                code="DaemonUnreachable",
            ),
        )
    if status >= 400:
        return ApiResult(
            status, body, ApiError.from_problem(status, body, f"HTTP {status}"), headers
        )
    return ApiResult(status, body, None, headers)


# Clients with requests in flight (see DaemonClient.request).
_BUSY: Set["DaemonClient"] = set()


class DaemonClient(QObject):
    """Asynchronous client of the local API (one per plugin, GUI thread)."""

    def __init__(self, info: Optional[DaemonInfo] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.info = info or DaemonInfo.resolve()
        self._nam = _no_proxy_manager(self)
        # id(reply) -> (reply, method, path, callback)
        self._pending: Dict[int, Tuple[QNetworkReply, str, str, Optional[Callable[[ApiResult], None]]]] = {}

    # --- requests ---------------------------------------------------------------------

    def base_url(self) -> str:
        return self.info.base_url

    def build_request(self, path: str, body: bool = False, stream: bool = False) -> QNetworkRequest:
        return build_request(self.info, path, body, stream)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        callback: Optional[Callable[[ApiResult], None]] = None,
    ) -> QNetworkReply:
        """Sends a request; ``callback(ApiResult)`` runs on the GUI thread when done."""
        reply = send(self._nam, self.info, method, path, body)
        self._pending[id(reply)] = (reply, method, path, callback)
        reply.finished.connect(self._finished)
        # A client used once and dropped (``DaemonClient().get(...)``) lives until its
        # answers are in.
        _BUSY.add(self)
        return reply

    @pyqtSlot()
    def _finished(self) -> None:
        """A reply's ``finished``: one Qt slot of the client for all its replies (the
        reply is the signal's sender), rather than a Python closure connected to each
        reply. PyQt keeps a proxy object per closure connection; after the plugin was
        unloaded and loaded again a few times, a new reply could reach the freed
        closure of a deleted one and crash QGIS (seen in the plugin tests)."""
        sender = self.sender()
        entry = self._pending.pop(id(sender), None)
        if not self._pending:
            _BUSY.discard(self)
        if entry is None or entry[0] is not sender:
            return  # aborted by abort_all
        reply = entry[0]
        _, method, path, callback = entry
        _, method, path, callback = entry
        result = _result_of(reply)
        reply.deleteLater()
        if result.error is not None:
            log(f"{method} {path}: {result.error.details()}", Qgis.MessageLevel.Info)
        if callback is not None:
            try:
                callback(result)
            except Exception as e:  # a bug in a handler must not break the client
                import traceback

                log(
                    f"handler of {method} {path} failed: {e}\n{traceback.format_exc()}",
                    Qgis.MessageLevel.Critical,
                )

    def get(self, path: str, callback=None) -> QNetworkReply:
        return self.request("GET", path, None, callback)

    def post(self, path: str, body: Any = None, callback=None) -> QNetworkReply:
        return self.request("POST", path, {} if body is None else body, callback)

    def open_stream(self, path: str = "/events") -> QNetworkReply:
        """A long-lived GET (Server-Sent Events); the caller reads it."""
        return send(self._nam, self.info, "GET", path, None, stream=True)

    def abort_all(self) -> None:
        """Aborts every request; their callbacks are not called."""
        pending = [entry[0] for entry in self._pending.values()]
        self._pending.clear()
        _BUSY.discard(self)
        for reply in pending:
            try:
                reply.abort()
            except RuntimeError:
                pass

    # --- blocking (worker threads: Processing, QgsTask) -----------------------------

    def blocking(self, method: str, path: str, body: Any = None, feedback: Optional[QgsFeedback] = None, timeout_s: float = 60.0) -> Any:
        """See ``blocking_request``."""
        return blocking_request(self.info, method, path, body, feedback, timeout_s)


def build_request(info: DaemonInfo, path: str, body: bool = False, stream: bool = False) -> QNetworkRequest:
    req = QNetworkRequest(QUrl(info.base_url + path))
    token = info.read_token()
    if token:
        req.setRawHeader(b"Authorization", b"Bearer " + token.encode("ascii", "replace"))
    req.setRawHeader(b"Accept", b"text/event-stream" if stream else b"application/json")
    req.setRawHeader(b"User-Agent", USER_AGENT)
    if body:
        req.setRawHeader(b"Content-Type", b"application/json")
    req.setAttribute(
        QNetworkRequest.Attribute.CacheLoadControlAttribute,
        QNetworkRequest.CacheLoadControl.AlwaysNetwork,
    )
    return req


def send(nam, info: DaemonInfo, method: str, path: str, body: Any, stream: bool = False) -> QNetworkReply:
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = build_request(info, path, body=data is not None, stream=stream)
    method = method.upper()
    if method == "GET":
        return nam.get(req)
    if method == "DELETE" and data is None:
        return nam.deleteResource(req)
    return nam.sendCustomRequest(req, method.encode("ascii"), QByteArray(data or b""))


def blocking_request(
    info: DaemonInfo,
    method: str,
    path: str,
    body: Any = None,
    feedback: Optional[QgsFeedback] = None,
    timeout_s: float = 60.0,
) -> Any:
    """Sends a request and waits for it in a local event loop of the calling thread (a
    worker thread: Processing, ``QgsTask.run``). Returns the parsed JSON; raises
    ``ApiError``. Cancelling ``feedback`` aborts the request."""
    nam = _no_proxy_manager()
    try:
        if method.upper() == "POST" and body is None:
            body = {}
        reply = send(nam, info, method, path, body)
        loop = QEventLoop()
        reply.finished.connect(loop.quit)
        timer = QTimer()
        timer.setInterval(100)
        state = {"left": timeout_s, "timed_out": False}

        def tick():
            state["left"] -= 0.1
            if reply.isFinished():
                loop.quit()
                return
            if feedback is not None and feedback.isCanceled():
                timer.stop()
                reply.abort()
            elif state["left"] <= 0:
                state["timed_out"] = True
                timer.stop()
                reply.abort()

        timer.timeout.connect(tick)
        timer.start()
        if not reply.isFinished():
            loop.exec()
        timer.stop()
        if feedback is not None and feedback.isCanceled():
            raise ApiError("canceled", code="Canceled")
        if state["timed_out"]:
            raise ApiError(
                f"the daemon did not answer {method} {path} within {timeout_s:.0f} s",
                code="Timeout",
            )
        result = _result_of(reply)
        if result.error is not None:
            raise result.error
        return result.data
    finally:
        # The manager has no parent: dropping it deletes it and its replies, also in
        # a worker thread whose event loop would never run a deleteLater().
        del nam
