"""The service browser's data: the daemon's catalogue (``GET /services``, one
``GET /services/{id}`` per selected service, ``GET /catalogue``), filtered locally so
that typing in the search field stays instant with hundreds of records.

Records (``GET /services``): ``{id, title, description, label, kind, endpoint,
application, namespace, keywords[], platform: {id, title, url}|null, formats[], license,
cost_estimate, cost_unit, thumbnail, source}``; the detail adds ``links``, ``contacts``
and ``defaults``. Older daemons send fewer keys: every reader here copes with a missing
key.

No Qt widgets here.
"""

import json
from typing import Any, Dict, Iterable, List, Optional

from qgis.core import QgsNetworkAccessManager
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal, pyqtSlot
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from .client import ApiResult, DaemonClient

ALL = ""  # the "any" entry of the kind and platform filters


def kind_of(record: Dict[str, Any]) -> str:
    return str(record.get("kind") or record.get("label") or "")


def platform_of(record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    p = record.get("platform")
    return p if isinstance(p, dict) else None


def platform_id(record: Dict[str, Any]) -> str:
    p = platform_of(record)
    return str(p.get("id") or p.get("title") or "") if p else ""


def platform_title(record: Dict[str, Any]) -> str:
    p = platform_of(record)
    if not p:
        return ""
    return str(p.get("title") or p.get("id") or "")


def platforms(records: Iterable[Dict[str, Any]]) -> List[tuple]:
    """``(id, title)`` of the platforms the records run on, by title."""
    seen: Dict[str, str] = {}
    for r in records:
        pid = platform_id(r)
        if pid and pid not in seen:
            seen[pid] = platform_title(r)
    return sorted(seen.items(), key=lambda x: x[1].lower())


def kinds(records: Iterable[Dict[str, Any]]) -> List[str]:
    return sorted({kind_of(r) for r in records if kind_of(r)})


def _haystack(record: Dict[str, Any]) -> str:
    parts = [record.get("id"), record.get("title"), record.get("description"), platform_title(record)]
    parts += [k for k in record.get("keywords") or [] if isinstance(k, str)]
    return " ".join(str(p) for p in parts if p).lower()


def matches(record: Dict[str, Any], q: str = "", kind: str = ALL, platform: str = ALL) -> bool:
    """Every word of ``q`` in the id, title, description, keywords or platform (any
    case); the kind and platform, when given, equal."""
    if kind and kind_of(record) != kind:
        return False
    if platform and platform_id(record) != platform:
        return False
    words = q.lower().split()
    if not words:
        return True
    hay = _haystack(record)
    return all(w in hay for w in words)


def filter_records(records: Iterable[Dict[str, Any]], q: str = "", kind: str = ALL,
                   platform: str = ALL) -> List[Dict[str, Any]]:
    return [r for r in records if matches(r, q, kind, platform)]


def number_text(x: Any) -> str:
    """A figure as people read it: no float noise, at most 4 significant decimals."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return ""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}" if abs(x) < 1 else f"{x:,.2f}".rstrip("0").rstrip(".")


def cost_text(record: Dict[str, Any]) -> str:
    """The catalogue's cost: "0.125 platform credits per km²", or "cost unknown"."""
    amount = record.get("cost_estimate")
    unit = str(record.get("cost_unit") or "").strip()
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        return f"{number_text(amount)} {unit}".strip()
    return f"cost unknown ({unit})" if unit else "cost unknown"


def links_of(detail: Dict[str, Any]) -> List[Dict[str, str]]:
    """The detail's links that a browser can open (http/https), with a text to show."""
    out = []
    for link in detail.get("links") or []:
        if not isinstance(link, dict):
            continue
        href = str(link.get("href") or "")
        if not href.lower().startswith(("http://", "https://")):
            continue
        rel = str(link.get("rel") or "")
        title = str(link.get("title") or "").strip()
        out.append({"rel": rel, "href": href, "title": title,
                    "text": f"{rel}: {title}" if title else f"{rel}: {href}"})
    return out


def contacts_text(detail: Dict[str, Any]) -> str:
    names = []
    for c in detail.get("contacts") or []:
        if isinstance(c, dict):
            name = str(c.get("name") or c.get("organization") or "").strip()
            org = str(c.get("organization") or "").strip()
            if name:
                names.append(f"{name} ({org})" if org and org != name else name)
    return ", ".join(dict.fromkeys(names))


SOURCE_STATES = {"ok": "up to date", "cached": "cached copy (the source did not answer)",
                 "offline": "offline", "bundled": "bundled snapshot"}


def source_text(source: Dict[str, Any]) -> str:
    """A ``GET /catalogue`` source in words: "bundled: bundled snapshot, 70 services"."""
    state = str(source.get("state") or "")
    text = f"{source.get('source') or '?'}: {SOURCE_STATES.get(state, state)}"
    if isinstance(source.get("records"), int):
        text += f", {source['records']} services"
    if source.get("skipped"):
        text += f" ({source['skipped']} skipped)"
    if source.get("refreshed_at"):
        text += f", read {str(source['refreshed_at'])[:16].replace('T', ' ')}"
    return text


def services_path(q: str = "", kind: str = ALL, platform: str = ALL) -> str:
    """``GET /services`` with its filters (the daemon filters too; the browser filters
    the full list locally)."""
    from urllib.parse import urlencode

    query = {k: v for k, v in (("q", q), ("kind", kind), ("platform", platform)) if v}
    return "/services" + ("?" + urlencode(query) if query else "")


class CatalogueModel(QObject):
    """The records of ``GET /services`` and the details read so far."""

    listed = pyqtSignal()  # records changed
    list_failed = pyqtSignal(object)  # ApiError
    detail_ready = pyqtSignal(str, dict)  # service id, detail
    detail_failed = pyqtSignal(str, object)  # service id, ApiError

    def __init__(self, client: DaemonClient, records: Optional[List[Dict[str, Any]]] = None,
                 parent: Optional[QObject] = None):
        super().__init__(parent)
        self.client = client
        self.records: List[Dict[str, Any]] = [r for r in records or [] if isinstance(r, dict)]
        self.details: Dict[str, Dict[str, Any]] = {}

    def refresh(self) -> None:
        self.client.get("/services", self._listed)

    def _listed(self, result: ApiResult) -> None:
        if not result.ok or not isinstance(result.data, list):
            self.list_failed.emit(result.error)
            return
        self.records = [r for r in result.data if isinstance(r, dict) and r.get("id")]
        self.listed.emit()

    def record(self, sid: str) -> Optional[Dict[str, Any]]:
        return next((r for r in self.records if str(r.get("id")) == sid), None)

    def fetch_detail(self, sid: str) -> None:
        if sid in self.details:
            self.detail_ready.emit(sid, self.details[sid])
            return
        from urllib.parse import quote

        def done(result: ApiResult, sid=sid) -> None:
            if result.ok and isinstance(result.data, dict):
                self.details[sid] = result.data
                self.detail_ready.emit(sid, result.data)
            else:
                self.detail_failed.emit(sid, result.error)

        self.client.get("/services/" + quote(sid, safe=""), done)


class ImageFetcher(QObject):
    """Fetches thumbnails from the internet (through QGIS's own network manager and its
    proxy settings), asynchronously; ``ready(url, bytes)`` or ``failed(url)``. Answers
    are cached by URL, failures too (no internet: asked once)."""

    ready = pyqtSignal(str, bytes)
    failed = pyqtSignal(str)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.cache: Dict[str, Optional[bytes]] = {}
        self._pending: Dict[int, tuple] = {}

    def fetch(self, url: str) -> None:
        if url in self.cache:
            data = self.cache[url]
            if data is None:
                self.failed.emit(url)
            else:
                self.ready.emit(url, data)
            return
        if not url.lower().startswith(("http://", "https://")):
            self.cache[url] = None
            self.failed.emit(url)
            return
        req = QNetworkRequest(QUrl(url))
        req.setAttribute(QNetworkRequest.Attribute.RedirectPolicyAttribute,
                         QNetworkRequest.RedirectPolicy.NoLessSafeRedirectPolicy)
        if hasattr(req, "setTransferTimeout"):
            req.setTransferTimeout(15000)
        reply = QgsNetworkAccessManager.instance().get(req)
        self._pending[id(reply)] = (reply, url)
        reply.finished.connect(self._finished)

    @pyqtSlot()
    def _finished(self) -> None:
        reply = self.sender()
        entry = self._pending.pop(id(reply), None)
        if entry is None:
            return
        reply, url = entry
        ok = reply.error() == QNetworkReply.NetworkError.NoError
        data = bytes(reply.readAll()) if ok else b""
        reply.deleteLater()
        if ok and data:
            self.cache[url] = data
            self.ready.emit(url, data)
        else:
            self.cache[url] = None
            self.failed.emit(url)

    def abort_all(self) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for reply, _url in pending:
            try:
                reply.abort()
            except RuntimeError:
                pass


def defaults_of(detail: Dict[str, Any]) -> Dict[str, Any]:
    d = detail.get("defaults")
    return dict(d) if isinstance(d, dict) else {}


def pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
