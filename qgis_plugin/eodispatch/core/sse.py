"""Server-Sent Events from the daemon's ``GET /events``: an incremental parser and a
stream that reconnects by itself.

Events (``GET /events``, described in the daemon's ``/openapi.json``): ``hello`` (on connect), ``job`` (the full job JSON after any
change; ``"deleted": true`` when forgotten), ``result`` (download progress), ``auth``
(a backend entry after a login-state change), ``task`` (upscale tasks), ``lagged`` (the
client fell behind: re-read the job list).

After every (re)connection the stream emits ``connected``; listeners re-read
``/unit_jobs`` then, so that nothing that happened while disconnected is missed.

No Qt widgets here.
"""

import json
from dataclasses import dataclass
from typing import Any, List, Optional

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from .client import DaemonClient, log


@dataclass
class SseEvent:
    event: str
    data: str
    id: Optional[str] = None

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class SseParser:
    """Feed bytes as they arrive; get complete events back (text/event-stream rules:
    ``event:``, ``data:`` (joined with newlines), ``id:``, comments ``:``; an empty line
    ends an event; CRLF, CR and LF line ends)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._pending = b""
        self._event = ""
        self._data: List[str] = []
        self._id: Optional[str] = None
        self.last_id: Optional[str] = None

    def feed(self, chunk: bytes) -> List[SseEvent]:
        # Decode only whole UTF-8 sequences.
        raw = self._pending + chunk
        try:
            text = raw.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as e:
            text = raw[: e.start].decode("utf-8")
            self._pending = raw[e.start :]
        self._buffer += text
        out: List[SseEvent] = []
        while True:
            cut = -1
            for i, ch in enumerate(self._buffer):
                if ch in "\r\n":
                    cut = i
                    break
            if cut < 0:
                break
            line = self._buffer[:cut]
            skip = 1
            if self._buffer[cut] == "\r":
                if cut + 1 >= len(self._buffer):
                    break  # maybe a CRLF split across chunks
                if self._buffer[cut + 1] == "\n":
                    skip = 2
            self._buffer = self._buffer[cut + skip :]
            ev = self._line(line)
            if ev is not None:
                out.append(ev)
        return out

    def _line(self, line: str) -> Optional[SseEvent]:
        if line == "":
            if not self._data and not self._event:
                return None
            ev = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            if self._id is not None:
                self.last_id = self._id
            self._event, self._data, self._id = "", [], None
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


class EventStream(QObject):
    """``GET /events`` kept open: reconnects with a growing delay (1 s .. 15 s) after
    any end or error, and re-reads the token on every attempt."""

    event_received = pyqtSignal(str, object)  # event name, parsed JSON (or None)
    connected = pyqtSignal()
    disconnected = pyqtSignal(str)  # reason

    MIN_DELAY_MS = 1000
    MAX_DELAY_MS = 15000

    def __init__(self, client: DaemonClient, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._client = client
        self._reply: Optional[QNetworkReply] = None
        self._parser = SseParser()
        self._delay = self.MIN_DELAY_MS
        self._running = False
        self._is_connected = False
        self.last_error: Optional[str] = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._connect)

    @property
    def is_connected(self) -> bool:
        return self._is_connected

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._connect()

    def stop(self) -> None:
        self._running = False
        self._timer.stop()
        reply, self._reply = self._reply, None
        if reply is not None:
            try:
                reply.readyRead.disconnect()
                reply.finished.disconnect()
            except (TypeError, RuntimeError):
                pass
            reply.abort()
            reply.deleteLater()
        self._is_connected = False

    def reconnect_now(self) -> None:
        """Drops the connection (if any) and connects again at once."""
        self.stop()
        self._delay = self.MIN_DELAY_MS
        self.start()

    def _connect(self) -> None:
        if not self._running:
            return
        self._parser = SseParser()
        reply = self._client.open_stream("/events")
        self._reply = reply
        # Slots of this object, the reply being the sender (no closure per reply: see
        # DaemonClient._finished).
        reply.readyRead.connect(self._ready_read)
        reply.finished.connect(self._reply_finished)

    @pyqtSlot()
    def _ready_read(self) -> None:
        if self._reply is not None and self.sender() is self._reply:
            self._read(self._reply)

    @pyqtSlot()
    def _reply_finished(self) -> None:
        if self._reply is not None and self.sender() is self._reply:
            self._finished(self._reply)

    def _read(self, reply: QNetworkReply) -> None:
        if reply is not self._reply:
            return
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        if status and status != 200:
            return  # read as an error in _finished
        for ev in self._parser.feed(bytes(reply.readAll())):
            if ev.event == "hello":
                self._delay = self.MIN_DELAY_MS
                if not self._is_connected:
                    self._is_connected = True
                    self.last_error = None
                    self.connected.emit()
                continue
            self.event_received.emit(ev.event, ev.json())

    def _finished(self, reply: QNetworkReply) -> None:
        if reply is not self._reply:
            return
        self._reply = None
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        if status and status != 200:
            body = bytes(reply.readAll()).decode("utf-8", "replace")
            try:
                detail = json.loads(body).get("detail") or body
            except (ValueError, AttributeError):
                detail = body
            reason = f"HTTP {status}: {detail[:200]}"
        else:
            reason = reply.errorString() if not status else "the daemon ended the stream"
        self.last_error = reason
        reply.deleteLater()
        was = self._is_connected
        self._is_connected = False
        if was:
            log(f"event stream closed ({reason}); reconnecting")
        self.disconnected.emit(reason)
        if self._running:
            self._timer.start(self._delay)
            self._delay = min(self._delay * 2, self.MAX_DELAY_MS)
