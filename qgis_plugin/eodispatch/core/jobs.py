"""The jobs as the plugin knows them: a full read of ``GET /unit_jobs`` on every
(re)connection of the event stream, then live ``job`` and ``result`` events.

No Qt widgets here.
"""

from typing import Any, Dict, Optional, Set

from qgis.PyQt.QtCore import QObject, pyqtSignal

from .client import ApiResult, DaemonClient
from .sse import EventStream

TERMINAL = ("finished", "canceled", "failed")


class JobModel(QObject):
    """Job id → latest job JSON; ``downloads``: job id → ``{state, bytes, total_bytes}``."""

    job_changed = pyqtSignal(dict)  # the job JSON
    job_removed = pyqtSignal(int)
    download_progress = pyqtSignal(int, dict)  # job id, {state, bytes, total_bytes}
    backend_changed = pyqtSignal(dict)  # an `auth` event: the backend entry
    reloaded = pyqtSignal()

    LIST_LIMIT = 200

    def __init__(self, client: DaemonClient, stream: EventStream, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.client = client
        self.jobs: Dict[int, Dict[str, Any]] = {}
        self.downloads: Dict[int, Dict[str, Any]] = {}
        # Jobs that events changed while a reload was on its way: the list answers what
        # was true when it was asked, so it must neither remove them nor overwrite them
        # (a job created, or a waiting reason told, after the request went out).
        self._touched: Optional[Set[int]] = None
        self._reloads = 0
        stream.connected.connect(self.reload)
        stream.event_received.connect(self.on_event)

    def reload(self) -> None:
        if self._touched is None:
            self._touched = set()
        self._reloads += 1
        self.client.get(f"/unit_jobs?limit={self.LIST_LIMIT}", self._listed)

    def _listed(self, result: ApiResult) -> None:
        touched = self._touched or set()
        self._reloads = max(0, self._reloads - 1)
        if self._reloads == 0:
            self._touched = None
        if not result.ok or not isinstance(result.data, list):
            return
        seen = set(touched)
        for job in result.data:
            if isinstance(job, dict) and isinstance(job.get("id"), int):
                seen.add(job["id"])
                if job["id"] not in touched:
                    self._set(job)
        for jid in [j for j in self.jobs if j not in seen]:
            self.jobs.pop(jid, None)
            self.job_removed.emit(jid)
        self.reloaded.emit()

    def _set(self, job: Dict[str, Any]) -> None:
        jid = job["id"]
        old = self.jobs.get(jid)
        if old is not None and old.get("updated", "") > job.get("updated", "") and old.get("status") != job.get("status"):
            return  # an older state arriving late
        self.jobs[jid] = job
        self.job_changed.emit(job)

    def on_event(self, name: str, data: Any) -> None:
        if name == "job" and isinstance(data, dict) and isinstance(data.get("id"), int):
            if self._touched is not None:
                self._touched.add(data["id"])
            if data.get("deleted"):
                self.jobs.pop(data["id"], None)
                self.downloads.pop(data["id"], None)
                self.job_removed.emit(data["id"])
            else:
                self._set(data)
        elif name == "result" and isinstance(data, dict) and isinstance(data.get("id"), int):
            self.downloads[data["id"]] = data
            self.download_progress.emit(data["id"], data)
        elif name == "auth" and isinstance(data, dict):
            self.backend_changed.emit(data)
        elif name == "lagged":
            self.reload()

    def job(self, jid: int) -> Optional[Dict[str, Any]]:
        return self.jobs.get(jid)
