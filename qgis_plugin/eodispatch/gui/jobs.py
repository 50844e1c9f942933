"""The live job list: title, status (or what the job waits for), progress, download,
age; actions on the selected job (cancel, logs, open folder, zoom, load again; log in
for a job that waits for a login)."""

import datetime as _dt
from typing import Any, Dict, Optional

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

from ..core.backends import waiting_view
from ..core.footprints import STATUS_COLORS
from ..core.jobs import JobModel
from ..core.safe import plain_tip

COLUMNS = ["Title", "Status", "Progress", "Download", "Age"]
WAITING_COLOR = "#b35806"  # dark orange: the job is held up, not failed
ACTIONS = [
    ("cancel", "Cancel"),
    ("logs", "Logs"),
    ("folder", "Open folder"),
    ("zoom", "Zoom to"),
    ("reload", "Load again"),
]


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

    def __init__(self, model: JobModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.items: Dict[int, QTreeWidgetItem] = {}
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
        self._ages = QTimer(self)
        self._ages.setInterval(15000)
        self._ages.timeout.connect(self.refresh_ages)
        self._ages.start()
        for job in model.jobs.values():
            self.update_job(job)

    def selected_id(self) -> Optional[int]:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def update_job(self, job: Dict[str, Any]) -> None:
        jid = job["id"]
        item = self.items.get(jid)
        if item is None:
            item = QTreeWidgetItem()
            item.setData(0, Qt.ItemDataRole.UserRole, jid)
            # Newest first: ids grow.
            index = 0
            for i in range(self.tree.topLevelItemCount()):
                if self.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) > jid:
                    index = i + 1
            self.tree.insertTopLevelItem(index, item)
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
        if jid == self.selected_id():
            self._selection_changed()

    def _download(self, jid: int, progress: Dict[str, Any]) -> None:
        job = self.model.job(jid)
        if job is not None and jid in self.items:
            self.items[jid].setText(3, download_text(job, progress))

    def remove_job(self, jid: int) -> None:
        item = self.items.pop(jid, None)
        if item is not None:
            self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))

    def refresh_ages(self) -> None:
        for jid, item in self.items.items():
            job = self.model.job(jid)
            if job:
                item.setText(4, age(str(job.get("created") or "")))

    def _enabled(self, job: Optional[Dict[str, Any]]) -> Dict[str, bool]:
        if job is None:
            return {k: False for k, _ in ACTIONS}
        status = job.get("status")
        results = job.get("results") or {}
        return {
            "cancel": status in ("created", "queued", "running"),
            "logs": bool(job.get("backend_job_id")),
            "folder": status == "finished",
            "zoom": True,
            "reload": status == "finished" or results.get("state") == "ready",
        }

    def _selection_changed(self) -> None:
        jid = self.selected_id()
        enabled = self._enabled(self.model.job(jid) if jid is not None else None)
        for key, b in self.buttons.items():
            b.setEnabled(enabled[key])

    def _trigger(self, key: str) -> None:
        jid = self.selected_id()
        if jid is not None:
            self.action_requested.emit(key, jid)

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
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
            action = menu.addAction(text)
            action.setEnabled(enabled[key])
            action.triggered.connect(lambda _c=False, k=key, j=jid: self.action_requested.emit(k, j))
        menu.exec(self.tree.viewport().mapToGlobal(pos))
