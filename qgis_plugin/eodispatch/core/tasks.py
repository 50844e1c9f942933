"""The upscale tasks as the plugin knows them: ``GET /upscale_tasks`` on every
(re)connection of the event stream, each task's tiles from ``GET /upscale_tasks/{id}``,
then live ``task`` events (the task's summary: status, progress, counts, deliveries).

The tiles are unit jobs: their live ``job`` events (with ``upscale_task_id``) go to the
``JobModel`` like any job's; the tiles read with a task are handed to it too
(``JobModel.merge_summary``), so that the job list and the footprints see every tile.

No Qt widgets here.
"""

from typing import Any, Dict, List, Optional

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .client import ApiResult, DaemonClient
from .jobs import TERMINAL, JobModel
from .sse import EventStream


def task_ended(task: Dict[str, Any]) -> bool:
    """Every tile has ended and every finished tile's delivery has ended."""
    results = task.get("results") or {}
    return task.get("status") in TERMINAL and not results.get("pending")


def tiles_total(task: Dict[str, Any]) -> int:
    counts = task.get("counts") or {}
    return sum(v for v in counts.values() if isinstance(v, int))


class TaskModel(QObject):
    """Task id → latest task JSON (its summary, with ``jobs`` once read)."""

    task_changed = pyqtSignal(dict)
    task_removed = pyqtSignal(int)
    reloaded = pyqtSignal()

    def __init__(self, client: DaemonClient, stream: EventStream, jobs: JobModel, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.client = client
        self.jobs = jobs
        self.tasks: Dict[int, Dict[str, Any]] = {}
        self._details_wanted: set = set()
        # Tasks that events told about while a list was on its way (see JobModel).
        self._touched: Optional[set] = None
        self._reloads = 0
        # A burst of task events (every tile's change) reads a task's tiles once.
        self._details_timer = QTimer(self)
        self._details_timer.setSingleShot(True)
        self._details_timer.setInterval(300)
        self._details_timer.timeout.connect(self._read_details)
        stream.connected.connect(self.reload)
        stream.event_received.connect(self.on_event)

    def reload(self) -> None:
        if self._touched is None:
            self._touched = set()
        self._reloads += 1
        self.client.get("/upscale_tasks", self._listed)

    def _listed(self, result: ApiResult) -> None:
        touched = self._touched or set()
        self._reloads = max(0, self._reloads - 1)
        if self._reloads == 0:
            self._touched = None
        if not result.ok or not isinstance(result.data, list):
            return
        seen = set(touched)
        for task in result.data:
            if isinstance(task, dict) and isinstance(task.get("id"), int):
                seen.add(task["id"])
                if task["id"] not in touched:
                    self._set(task)
                self.read(task["id"])
        for tid in [t for t in self.tasks if t not in seen]:
            self._remove(tid)
        self.reloaded.emit()

    def read(self, tid: int) -> None:
        """Reads a task with its tiles (``GET /upscale_tasks/{id}``)."""
        self.client.get(f"/upscale_tasks/{tid}", self._got_task)

    def _got_task(self, result: ApiResult) -> None:
        if result.ok and isinstance(result.data, dict) and isinstance(result.data.get("id"), int):
            self.on_task(result.data)

    def _read_details(self) -> None:
        wanted, self._details_wanted = self._details_wanted, set()
        for tid in wanted:
            self.read(tid)

    def on_task(self, task: Dict[str, Any]) -> None:
        """A task with its ``jobs`` (``POST /upscale_tasks``, ``GET /upscale_tasks/{id}``,
        cancel and retry answers): its tiles go to the job model."""
        tid = task["id"]
        self._set(task)  # the task's row first, then its tiles under it
        for job in task.get("jobs") or []:
            if isinstance(job, dict) and isinstance(job.get("id"), int):
                self.jobs.merge_summary(job, tid)

    def _set(self, task: Dict[str, Any]) -> None:
        tid = task["id"]
        old = self.tasks.get(tid) or {}
        if old.get("updated", "") > task.get("updated", "") and old.get("status") != task.get("status"):
            return  # an older state arriving late
        merged = dict(old)
        merged.update(task)
        if "jobs" not in task and "jobs" in old:
            merged["jobs"] = old["jobs"]
        self.tasks[tid] = merged
        self.task_changed.emit(merged)

    def _remove(self, tid: int) -> None:
        task = self.tasks.pop(tid, None)
        for job in (task or {}).get("jobs") or []:
            if isinstance(job, dict) and isinstance(job.get("id"), int):
                self.jobs.forget(job["id"])
        self.task_removed.emit(tid)

    def on_event(self, name: str, data: Any) -> None:
        if name == "task" and isinstance(data, dict) and isinstance(data.get("id"), int):
            tid = data["id"]
            if self._touched is not None:
                self._touched.add(tid)
            if data.get("deleted"):
                self._remove(tid)
                return
            known = self.tasks.get(tid)
            self._set(data)
            if known is None or "jobs" not in known or (known.get("counts") != data.get("counts")):
                # A new task, or tiles that changed status (a retry makes new attempts):
                # read its tiles (once for a burst).
                self._details_wanted.add(tid)
                self._details_timer.start()
        elif name == "lagged":
            self.reload()

    def task(self, tid: int) -> Optional[Dict[str, Any]]:
        return self.tasks.get(tid)

    def tile_ids(self, tid: int) -> List[int]:
        task = self.tasks.get(tid) or {}
        ids = [j["id"] for j in task.get("jobs") or [] if isinstance(j, dict) and isinstance(j.get("id"), int)]
        known = set(ids)
        # Tiles seen in job events before the task was read.
        ids += sorted(j for j, job in self.jobs.jobs.items() if job.get("upscale_task_id") == tid and j not in known)
        return ids

    def tiles(self, tid: int) -> List[Dict[str, Any]]:
        """The task's tiles, as the job model knows them (full jobs once an event came)."""
        return [job for job in (self.jobs.job(j) for j in self.tile_ids(tid)) if job is not None]
