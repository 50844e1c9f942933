"""Budget settings: one row per backend the daemon knows (``GET /budgets``) with its
daily and monthly limits (empty: no limit) and what was spent; Save sends one
``PUT /budgets`` per changed row (the daemon writes them to its config.toml), then reads
the budgets again."""

from typing import Any, Dict, List, Optional

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core import costs as K
from ..core.catalogue import number_text
from ..core.client import ApiResult, DaemonClient
from ..core.safe import plain_label, plain_tip
from .form import ERROR_STYLE

COLUMNS = ["Backend", "Per day", "Per month", "Spent today", "Spent this month", "Unit"]


def _limit(x: Any) -> str:
    return number_text(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else ""


class BudgetDialog(QDialog):
    saved = pyqtSignal(list)  # the entries the daemon answered to the PUTs

    def __init__(self, client: DaemonClient, parent=None):
        super().__init__(parent)
        self.setObjectName("eodispatch_budgets")
        self.setWindowTitle("EO Dispatch: budgets")
        self.client = client
        self.entries: List[Dict[str, Any]] = []
        self.loaded = False
        self._saving = 0
        self._saved: List[Dict[str, Any]] = []
        self._errors: List[str] = []
        layout = QVBoxLayout(self)
        intro = QLabel("Limits per backend, in the backend's unit; empty: no limit. The daemon refuses or holds "
                       "back jobs that would go over them.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("budget_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        self.status = plain_label(QLabel(self))
        self.status.setObjectName("budget_status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QDialogButtonBox(self)
        self.save_button = QPushButton("Save", self)
        self.save_button.setObjectName("budget_save")
        self.save_button.setEnabled(False)
        buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.ApplyRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.save_button.clicked.connect(self.save)
        layout.addWidget(buttons)
        self.resize(720, 300)
        self.reload()

    def reload(self) -> None:
        self.status.setStyleSheet("")
        self.status.setText("Reading the budgets…")
        self.client.get("/budgets", self._got)

    def _got(self, result: ApiResult) -> None:
        if not result.ok:
            self.status.setStyleSheet(ERROR_STYLE)
            self.status.setText(f"Cannot read the budgets: {result.error.message}")
            return
        self.entries = K.budget_entries(result.data)
        self._fill()
        self.loaded = True
        self.save_button.setEnabled(bool(self.entries))
        if not self._errors:
            self.status.setStyleSheet("")
            self.status.setText("" if self.entries else "No backend known yet: it appears with the first job.")

    def _fill(self) -> None:
        t = self.table
        t.setRowCount(len(self.entries))
        for row, b in enumerate(self.entries):
            name = QTableWidgetItem(str(b.get("backend")))
            name.setFlags(Qt.ItemFlag.ItemIsEnabled)
            name.setToolTip(plain_tip(str(b.get("backend"))))
            t.setItem(row, 0, name)
            for col, key in ((1, "per_day"), (2, "per_month")):
                edit = QLineEdit()
                edit.setObjectName(f"budget_{key}_{row}")
                edit.setPlaceholderText("no limit")
                edit.setText(_limit(b.get(key)))
                t.setCellWidget(row, col, edit)
            for col, key in ((3, "spent_today"), (4, "spent_this_month"), (5, "unit")):
                v = b.get(key)
                item = QTableWidgetItem(_limit(v) if key != "unit" else str(v or ""))
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)
                t.setItem(row, col, item)

    def row_of(self, backend: str) -> int:
        want = backend.rstrip("/")
        for row, b in enumerate(self.entries):
            if str(b.get("backend")).rstrip("/") == want:
                return row
        return -1

    def editor(self, row: int, key: str) -> QLineEdit:
        return self.table.cellWidget(row, 1 if key == "per_day" else 2)

    def set_limits(self, backend: str, per_day: Optional[float], per_month: Optional[float]) -> bool:
        """Fills a row's fields (as a user types them)."""
        row = self.row_of(backend)
        if row < 0:
            return False
        self.editor(row, "per_day").setText("" if per_day is None else number_text(per_day))
        self.editor(row, "per_month").setText("" if per_month is None else number_text(per_month))
        return True

    def changes(self) -> List[Dict[str, Any]]:
        """The ``PUT /budgets`` bodies of the rows whose limits changed; raises
        ``ValueError`` naming a bad field."""
        out = []
        for row, b in enumerate(self.entries):
            values = {}
            for key in ("per_day", "per_month"):
                v, err = K.parse_limit(self.editor(row, key).text())
                if err:
                    raise ValueError(f"{b.get('backend')}: {key.replace('_', ' ')} {err}")
                values[key] = v
            old = {k: (float(b[k]) if isinstance(b.get(k), (int, float)) else None) for k in ("per_day", "per_month")}
            if values != old:
                out.append({"backend": b.get("backend"), **values})
        return out

    @property
    def busy(self) -> bool:
        return self._saving > 0

    def save(self) -> None:
        try:
            bodies = self.changes()
        except ValueError as e:
            self.status.setStyleSheet(ERROR_STYLE)
            self.status.setText(str(e))
            return
        if not bodies:
            self.status.setStyleSheet("")
            self.status.setText("Nothing changed.")
            return
        self.save_button.setEnabled(False)
        self._saving = len(bodies)
        self._saved, self._errors = [], []
        self.status.setStyleSheet("")
        self.status.setText("Saving…")
        for body in bodies:
            self.client.request("PUT", "/budgets", body, lambda r, b=body: self._put_done(b, r))

    def _put_done(self, body: Dict[str, Any], result: ApiResult) -> None:
        self._saving -= 1
        if result.ok and isinstance(result.data, dict):
            self._saved.append(result.data)
        else:
            reason = result.error.message if result.error is not None else "no answer"
            self._errors.append(f"{body.get('backend')}: {reason}")
        if self._saving > 0:
            return
        if self._errors:
            self.status.setStyleSheet(ERROR_STYLE)
            self.status.setText("Not saved: " + "; ".join(self._errors))
        else:
            self.status.setStyleSheet("")
            self.status.setText(f"Saved ({len(self._saved)} backend{'s' if len(self._saved) != 1 else ''}).")
        self.saved.emit(list(self._saved))
        self.loaded = False
        self.client.get("/budgets", self._reloaded)

    def _reloaded(self, result: ApiResult) -> None:
        status, style = self.status.text(), self.status.styleSheet()
        self._got(result)
        if result.ok:
            self.status.setStyleSheet(style)
            self.status.setText(status)
