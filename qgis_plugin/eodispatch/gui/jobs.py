"""The live job list: title, status (or what the job waits for), progress, download,
age; actions on the selected job (cancel, logs, open folder, zoom, load again; log in
for a job that waits for a login).

An upscale task is one row (its status, aggregate progress, tiles delivered) that
expands into its tiles; on a task row the actions are cancel all, retry failed, open the
task folder, zoom to its tiles, load the mosaic again."""

import datetime as _dt
from typing import Any, Dict, Optional, Tuple

from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QMenu,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import costs as K
from ..core.backends import waiting_view
from ..core.footprints import STATUS_COLORS
from ..core.jobs import JobModel
from ..core.safe import plain_tip
from ..core.tasks import TaskModel, tiles_total

COLUMNS = ["Title", "Status", "Progress", "Download", "Age", "Cost"]
COST = 5  # what the platform charged (a task: the sum of its tiles); "≈" an estimate
WAITING_COLOR = "#b35806"  # dark orange: the job is held up, not failed
ACTIONS = [
    ("cancel", "Cancel"),
    ("logs", "Logs"),
    ("retry", "Retry"),
    ("folder", "Open folder"),
    ("zoom", "Zoom to"),
    ("reload", "Load again"),
]
#: What a task row's actions say (short: the row of buttons fits a dock on a 1366 px
#: screen), and what their tooltips tell.
TASK_TEXTS = {"cancel": "Cancel all", "folder": "Folder"}
TASK_TIPS = {
    "cancel": "Cancel every tile of the task that has not ended",
    "retry": "Send the failed and canceled tiles again",
    "folder": "Open the task folder (the mosaic, task.json and a folder per tile)",
    "zoom": "Zoom to the task's tiles",
    "reload": "Load the task's mosaic again",
}
KIND_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def task_status_text(task: Dict[str, Any]) -> str:
    """The task's status; with how many tiles did not make it, when some did not."""
    status = str(task.get("status") or "")
    counts = task.get("counts") or {}
    bad = [f"{counts[k]} {k}" for k in ("failed", "canceled") if counts.get(k)]
    if bad and status not in ("created", "queued"):
        return f"{status} ({', '.join(bad)} of {tiles_total(task)})"
    return status


def task_download_text(task: Dict[str, Any]) -> str:
    results = task.get("results") or {}
    n = tiles_total(task)
    ready = results.get("ready") or 0
    text = f"{ready}/{n} tiles in"
    if results.get("failed"):
        text += f", {results['failed']} failed"
    return text


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def age(iso: str, now: Optional[_dt.datetime] = None) -> str:
    try:
        t = _dt.datetime.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
    except (ValueError, TypeError):
        return ""
    s = int(((now or _dt.datetime.now(_dt.timezone.utc)) - t).total_seconds())
    if s < 60:
        return f"{max(s, 0)} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def download_text(job: Dict[str, Any], progress: Optional[Dict[str, Any]]) -> str:
    results = job.get("results") or {}
    state = (progress or {}).get("state") or results.get("state") or ""
    done = (progress or {}).get("bytes", results.get("bytes"))
    total = (progress or {}).get("total_bytes", results.get("total_bytes"))
    if state == "downloading":
        if total:
            return f"{100 * (done or 0) / total:.0f} % of {human_bytes(total)}"
        return human_bytes(done)
    if state == "ready":
        return f"ready ({human_bytes(done)})" if done else "ready"
    if state in ("failed", "removed"):
        return state
    return "" if job.get("status") != "finished" else state


class JobList(QWidget):
    action_requested = pyqtSignal(str, int)  # action, job id
    task_action_requested = pyqtSignal(str, int)  # action, task id

    def __init__(self, model: JobModel, tasks: Optional[TaskModel] = None, parent=None):
        super().__init__(parent)
        self.model = model
        self.tasks = tasks
        self.items: Dict[int, QTreeWidgetItem] = {}  # job id -> row (a task's tile: a child row)
        self.task_items: Dict[int, QTreeWidgetItem] = {}  # task id -> row
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("job_list")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.setSortingEnabled(False)
        self.tree.setColumnWidth(0, 200)
        layout.addWidget(self.tree)
        row = QHBoxLayout()
        self.buttons: Dict[str, QToolButton] = {}
        for key, text in ACTIONS:
            # Tool buttons, as wide as their text: all five fit a dock on a 1366 px screen.
            b = QToolButton(self)
            b.setText(text)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setObjectName(f"job_{key}")
            b.setEnabled(False)
            b.clicked.connect(lambda _c=False, k=key: self._trigger(k))
            self.buttons[key] = b
            row.addWidget(b)
        row.addStretch(1)
        layout.addLayout(row)
        model.job_changed.connect(self.update_job)
        model.job_removed.connect(self.remove_job)
        model.download_progress.connect(self._download)
        if tasks is not None:
            tasks.task_changed.connect(self.update_task)
            tasks.task_removed.connect(self.remove_task)
        self._ages = QTimer(self)
        self._ages.setInterval(15000)
        self._ages.timeout.connect(self.refresh_ages)
        self._ages.start()
        if tasks is not None:
            for task in tasks.tasks.values():
                self.update_task(task)
        for job in model.jobs.values():
            self.update_job(job)
        self._show_buttons_for("job")

    def selected(self) -> Optional[Tuple[str, int]]:
        """``("job", id)`` or ``("task", id)`` of the selected row."""
        items = self.tree.selectedItems()
        if not items:
            return None
        return str(items[0].data(0, KIND_ROLE) or "job"), items[0].data(0, Qt.ItemDataRole.UserRole)

    def selected_id(self) -> Optional[int]:
        """The selected job (or tile); ``None`` when a task row is selected."""
        sel = self.selected()
        return sel[1] if sel is not None and sel[0] == "job" else None

    def _insert_top(self, item: QTreeWidgetItem, key: Tuple[str, int]) -> None:
        """Newest first: by creation time, then id."""
        item.setData(0, SORT_ROLE, list(key))
        index = 0
        for i in range(self.tree.topLevelItemCount()):
            other = self.tree.topLevelItem(i).data(0, SORT_ROLE)
            if other is not None and tuple(other) > key:
                index = i + 1
        self.tree.insertTopLevelItem(index, item)

    def _task_item(self, tid: int, created: str = "") -> QTreeWidgetItem:
        item = self.task_items.get(tid)
        if item is None:
            item = QTreeWidgetItem()
            item.setData(0, Qt.ItemDataRole.UserRole, tid)
            item.setData(0, KIND_ROLE, "task")
            item.setText(0, f"upscale task #{tid}")
            self._insert_top(item, (created, tid))
            self.task_items[tid] = item
            # Tasks expand into their tiles.
            self.tree.setRootIsDecorated(True)
        return item

    def update_task(self, task: Dict[str, Any]) -> None:
        tid = task["id"]
        created = str(task.get("created") or "")
        item = self._task_item(tid, created)
        if created and item.data(0, SORT_ROLE) != [created, tid]:
            # A row made for a tile before its task was known: to its place now.
            expanded = item.isExpanded()
            selected = item.isSelected()
            self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
            self._insert_top(item, (created, tid))
            item.setExpanded(expanded)
            item.setSelected(selected)
        status = str(task.get("status") or "")
        progress = task.get("progress")
        n = tiles_total(task)
        item.setText(0, f"{task.get('title') or ''} (task #{tid}, {n} tiles)")
        item.setText(1, task_status_text(task))
        item.setForeground(1, QBrush(QColor(STATUS_COLORS.get(status, "#000000")).darker(130)))
        item.setText(2, f"{progress:.0f} %" if isinstance(progress, (int, float)) else "")
        item.setText(3, task_download_text(task))
        item.setText(4, age(str(task.get("created") or "")))
        counts = task.get("counts") or {}
        item.setToolTip(1, plain_tip(", ".join(f"{v} {k}" for k, v in counts.items() if v) or status))
        self._task_cost(tid)
        sel = self.selected()
        if sel == ("task", tid):
            self._selection_changed()

    def remove_task(self, tid: int) -> None:
        item = self.task_items.pop(tid, None)
        if item is None:
            return
        for jid in [j for j, it in self.items.items() if it.parent() is item]:
            self.items.pop(jid, None)
        self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))

    def update_job(self, job: Dict[str, Any]) -> None:
        jid = job["id"]
        tid = job.get("upscale_task_id")
        item = self.items.get(jid)
        if item is None:
            item = QTreeWidgetItem()
            item.setData(0, Qt.ItemDataRole.UserRole, jid)
            item.setData(0, KIND_ROLE, "job")
            if isinstance(tid, int):
                # A tile: under its task, in dimension order (ids grow with it).
                parent = self._task_item(tid, str(job.get("created") or ""))
                index = parent.childCount()
                for i in range(parent.childCount()):
                    if parent.child(i).data(0, Qt.ItemDataRole.UserRole) > jid:
                        index = i
                        break
                parent.insertChild(index, item)
            else:
                self._insert_top(item, (str(job.get("created") or ""), jid))
            self.items[jid] = item
        status = str(job.get("status") or "")
        progress = job.get("progress")
        item.setText(0, f"{job.get('title') or ''} (#{jid})")
        waiting = waiting_view(job)
        if waiting is not None:
            item.setText(1, waiting.text)
            item.setForeground(1, QBrush(QColor(WAITING_COLOR)))
        else:
            item.setText(1, status)
            item.setForeground(1, QBrush(QColor(STATUS_COLORS.get(status, "#000000")).darker(130)))
        item.setText(2, f"{progress:.0f} %" if isinstance(progress, (int, float)) else "")
        item.setText(3, download_text(job, self.model.downloads.get(jid)))
        item.setText(4, age(str(job.get("created") or "")))
        err = job.get("error") or {}
        item.setToolTip(0, plain_tip(err.get("message") or job.get("service", {}).get("application", "")))
        if waiting is not None:
            item.setToolTip(1, plain_tip(f"{status}: {waiting.tip}"))
        else:
            item.setToolTip(1, plain_tip(err.get("message") or status))
        item.setText(COST, K.job_cost_text(job))
        item.setToolTip(COST, plain_tip(K.job_cost_tip(job)))
        if isinstance(tid, int):
            self._task_cost(tid)
        if jid == self.selected_id():
            self._selection_changed()

    def _task_cost(self, tid: int) -> None:
        """The task row's cost: the daemon's sum, else the sum of the tiles known."""
        item = self.task_items.get(tid)
        if item is None or self.tasks is None:
            return
        task = self.tasks.task(tid) or {}
        tiles = self.tasks.tiles(tid)
        item.setText(COST, K.task_cost_text(task, tiles))
        max_cost = task.get("max_cost")
        item.setToolTip(COST, plain_tip(f"Maximum cost: {max_cost}" if max_cost is not None else ""))

    def _download(self, jid: int, progress: Dict[str, Any]) -> None:
        job = self.model.job(jid)
        if job is not None and jid in self.items:
            self.items[jid].setText(3, download_text(job, progress))

    def remove_job(self, jid: int) -> None:
        item = self.items.pop(jid, None)
        if item is None:
            return
        parent = item.parent()
        if parent is not None:
            parent.removeChild(item)
        else:
            self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))

    def refresh_ages(self) -> None:
        for jid, item in self.items.items():
            job = self.model.job(jid)
            if job:
                item.setText(4, age(str(job.get("created") or "")))
        if self.tasks is not None:
            for tid, item in self.task_items.items():
                task = self.tasks.task(tid)
                if task:
                    item.setText(4, age(str(task.get("created") or "")))

    def _enabled(self, job: Optional[Dict[str, Any]]) -> Dict[str, bool]:
        if job is None:
            return {k: False for k, _ in ACTIONS}
        status = job.get("status")
        results = job.get("results") or {}
        return {
            "cancel": status in ("created", "queued", "running"),
            "logs": bool(job.get("backend_job_id")),
            "retry": False,
            "folder": status == "finished",
            "zoom": True,
            "reload": status == "finished" or results.get("state") == "ready",
        }

    @staticmethod
    def task_enabled(task: Optional[Dict[str, Any]]) -> Dict[str, bool]:
        if task is None:
            return {k: False for k, _ in ACTIONS}
        counts = task.get("counts") or {}
        results = task.get("results") or {}
        return {
            "cancel": any(counts.get(k) for k in ("created", "queued", "running")),
            "logs": False,
            "retry": any(counts.get(k) for k in ("failed", "canceled")),
            "folder": bool(results.get("ready")),
            "zoom": True,
            "reload": bool(results.get("ready")),
        }

    def _show_buttons_for(self, kind: str) -> None:
        """A task row: "Retry" (failed tiles) in place of "Logs", "Cancel all" for "Cancel"."""
        for key, text in ACTIONS:
            b = self.buttons[key]
            b.setText(TASK_TEXTS.get(key, text) if kind == "task" else text)
            b.setToolTip(TASK_TIPS.get(key, "") if kind == "task" else "")
            if key == "logs":
                b.setVisible(kind != "task")
            elif key == "retry":
                b.setVisible(kind == "task")

    def _selection_changed(self) -> None:
        sel = self.selected()
        if sel is not None and sel[0] == "task":
            enabled = self.task_enabled(self.tasks.task(sel[1]) if self.tasks is not None else None)
            self._show_buttons_for("task")
        else:
            jid = sel[1] if sel is not None else None
            enabled = self._enabled(self.model.job(jid) if jid is not None else None)
            self._show_buttons_for("job")
        for key, b in self.buttons.items():
            b.setEnabled(enabled[key])

    def _trigger(self, key: str) -> None:
        sel = self.selected()
        if sel is None:
            return
        if sel[0] == "task":
            self.task_action_requested.emit(key, sel[1])
        else:
            self.action_requested.emit(key, sel[1])

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        if item.data(0, KIND_ROLE) == "task":
            tid = item.data(0, Qt.ItemDataRole.UserRole)
            enabled = self.task_enabled(self.tasks.task(tid) if self.tasks is not None else None)
            menu = QMenu(self)
            for key, text in ACTIONS:
                if key == "logs":
                    continue
                action = menu.addAction({"retry": "Retry failed tiles", "folder": "Open task folder",
                                         "reload": "Load mosaic again"}.get(
                    key, TASK_TEXTS.get(key, text)))
                action.setEnabled(enabled[key])
                action.triggered.connect(lambda _c=False, k=key, t=tid: self.task_action_requested.emit(k, t))
            menu.exec(self.tree.viewport().mapToGlobal(pos))
            return
        jid = item.data(0, Qt.ItemDataRole.UserRole)
        enabled = self._enabled(self.model.job(jid))
        menu = QMenu(self)
        job = self.model.job(jid) or {}
        waiting = waiting_view(job)
        if waiting is not None and waiting.reason == "login_required":
            action = menu.addAction("Log in to the backend…")
            action.triggered.connect(lambda _c=False, j=jid: self.action_requested.emit("login", j))
            menu.addSeparator()
        for key, text in ACTIONS:
            if key == "retry":
                continue
            action = menu.addAction(text)
            action.setEnabled(enabled[key])
            action.triggered.connect(lambda _c=False, k=key, j=jid: self.action_requested.emit(k, j))
        menu.exec(self.tree.viewport().mapToGlobal(pos))
