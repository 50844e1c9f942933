"""The EO Dispatch dock: daemon state, backends and log-in, service picker, generated
parameter form, Submit; and the live job list.

"Upscale over a grid" (a check box above the form) turns the service's extent parameter
into an area and a grid: the cells are shown on the map with their count, and Submit
sends one upscale task (one job per cell) instead of one job.

"Browse…" next to the service list opens the service browser (search, filters, details,
links); the service chosen there fills the form, with the catalogue's defaults. Above
Submit, the live cost estimate of what Submit would send (``POST /estimate``, asked once
the form has been still for 400 ms; only the latest answer shows) with the backend's
budget; "Budgets…" edits the daily and monthly limits per backend."""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from qgis.core import Qgis, QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsCollapsibleGroupBoxBasic, QgsDockWidget
from qgis.PyQt.QtCore import Qt, QTimer, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import params as P
from ..core.backends import LOGOUT, backend_view, waiting_view
from ..core.client import ApiResult, DaemonClient, log
from ..core.daemon import FROM_DISCOVERY, start_daemon
from ..core.jobs import JobModel
from ..core.loaded import AutoLoader
from ..core.runner import find_published_folder
from ..core.safe import plain_label, plain_tip
from ..core import costs as K
from ..core.catalogue import cost_text
from ..core import upscale as U
from ..core.services import ServiceCatalog
from ..core.sse import EventStream
from ..core.tasks import TaskModel
from .browser import ServiceBrowser
from .budgets import BudgetDialog
from .form import ERROR_STYLE, ParameterForm
from .jobs import JobList
from .login import LoginDialog
from .upscale import UpscalePanel

CUSTOM = "__custom__"
# The service the user last picked in the list (a catalogue id, or CUSTOM for "Other").
SERVICE_CHOICE_KEY = "eodispatch/service_choice"


class EoDispatchDock(QgsDockWidget):
    def __init__(
        self,
        client: DaemonClient,
        stream: EventStream,
        jobs: JobModel,
        catalog: ServiceCatalog,
        autoloader: Optional[AutoLoader] = None,
        canvas=None,
        notify: Optional[Callable[[str, Any, int], None]] = None,
        parent=None,
        tasks: Optional[TaskModel] = None,
    ):
        super().__init__("EO Dispatch", parent)
        self.setObjectName("EoDispatchDock")
        self.client = client
        self.stream = stream
        self.jobs = jobs
        self.tasks = tasks
        self.last_task: Optional[Dict[str, Any]] = None
        self.catalog = catalog
        self.autoloader = autoloader
        self.canvas = canvas
        self.notify = notify or (lambda text, level, duration: log(text, level))
        self.backends: List[Dict[str, Any]] = []
        self.login_dialog: Optional[LoginDialog] = None
        self.last_job: Optional[Dict[str, Any]] = None
        self.started_pid: Optional[int] = None
        self.logs_dialog: Optional[QDialog] = None
        self._params_request = None
        self._form_key = None
        self._form_descriptors: Optional[List[Dict[str, Any]]] = None
        self.service_view: Optional[Dict[str, Any]] = None
        self._session_choice: Optional[str] = None
        self._job_seen: Dict[Any, Any] = {}  # job id -> (status, waiting reason)
        self.browser: Optional[ServiceBrowser] = None
        self.budget_dialog: Optional[BudgetDialog] = None
        # Defaults of the service chosen in the browser, for its form: (form key, values).
        self._pending_defaults: Optional[tuple] = None
        self.applied_defaults: List[str] = []
        self.estimator = K.Estimator(self.client, self.estimate_body, parent=self)
        self._build()
        stream.connected.connect(self.refresh)
        stream.disconnected.connect(lambda _r: self.check_health())
        jobs.backend_changed.connect(self._backend_event)
        jobs.job_changed.connect(self._job_waits)
        # A job waiting on a backend the table does not list yet: read /backends (once
        # for a burst of such events).
        self._backends_timer = QTimer(self)
        self._backends_timer.setSingleShot(True)
        self._backends_timer.setInterval(300)
        self._backends_timer.timeout.connect(lambda: self.client.get("/backends", self._got_backends))
        catalog.changed.connect(self._fill_services)
        self._health_timer = QTimer(self)
        self._health_timer.setInterval(5000)
        self._health_timer.timeout.connect(self.check_health)
        self._health_timer.start()
        self._fill_services()

    # --- layout ---------------------------------------------------------------------

    def _build(self) -> None:
        """The Submit tab fits a 1366 × 768 screen: the daemon and backends in one
        collapsible section whose table is as high as its rows, the address of a
        catalogue service folded away, the description cut short, and Submit below the
        scrolling part, always in sight."""
        self.tabs = QTabWidget(self)
        submit_tab = QWidget()
        outer = QVBoxLayout(submit_tab)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        submit_page = QWidget()
        page = QVBoxLayout(submit_page)
        page.setContentsMargins(4, 4, 4, 4)
        page.setSpacing(4)

        daemon_box = QgsCollapsibleGroupBox("Daemon and backends", submit_page)
        daemon_box.setObjectName("eodispatch_daemon_box")
        self.daemon_box = daemon_box
        dl = QVBoxLayout(daemon_box)
        dl.setContentsMargins(4, 2, 4, 2)
        dl.setSpacing(2)
        row = QHBoxLayout()
        self.daemon_label = plain_label(QLabel("…", daemon_box))
        self.daemon_label.setObjectName("daemon_state")
        self.daemon_label.setWordWrap(True)
        self.start_button = QPushButton("Start daemon", daemon_box)
        self.start_button.setObjectName("start_daemon")
        self.start_button.clicked.connect(self.start_daemon)
        self.start_button.hide()
        row.addWidget(self.daemon_label, 1)
        row.addWidget(self.start_button)
        self.budgets_button = QToolButton(daemon_box)
        self.budgets_button.setObjectName("open_budgets")
        self.budgets_button.setText("Budgets…")
        self.budgets_button.setToolTip("Daily and monthly spending limits per backend")
        self.budgets_button.clicked.connect(self.open_budgets)
        row.addWidget(self.budgets_button)
        dl.addLayout(row)
        self.backend_table = QTableWidget(0, 3, daemon_box)
        self.backend_table.setObjectName("backends")
        self.backend_table.setHorizontalHeaderLabels(["Backend", "State", ""])
        header = self.backend_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.backend_table.verticalHeader().hide()
        self.backend_table.setWordWrap(False)
        self.backend_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.backend_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.backend_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.backend_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.backend_table.hide()
        self.no_backends = QLabel("No backend in use yet: it appears with the first job (or log-in).", daemon_box)
        self.no_backends.setWordWrap(True)
        dl.addWidget(self.no_backends)
        dl.addWidget(self.backend_table)
        page.addWidget(daemon_box)

        service_box = QGroupBox("Service", submit_page)
        sl = QVBoxLayout(service_box)
        sl.setContentsMargins(4, 2, 4, 2)
        sl.setSpacing(2)
        self.service_combo = QComboBox(service_box)
        self.service_combo.setObjectName("service")
        self.service_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.service_combo.setMinimumContentsLength(12)
        self.service_combo.currentIndexChanged.connect(self._service_index_changed)
        self.service_combo.activated.connect(self._service_chosen)
        self.browse_button = QToolButton(service_box)
        self.browse_button.setObjectName("browse_services")
        self.browse_button.setText("Browse…")
        self.browse_button.setToolTip("Search the catalogue: descriptions, platforms, costs, links")
        self.browse_button.clicked.connect(self.open_browser)
        combo_row = QHBoxLayout()
        combo_row.addWidget(self.service_combo, 1)
        combo_row.addWidget(self.browse_button)
        sl.addLayout(combo_row)
        # Service descriptions come from catalogues and remote UDPs: plain text.
        self.description = plain_label(QLabel(service_box))
        self.description.setObjectName("service_description")
        self.description.setWordWrap(True)
        sl.addWidget(self.description)
        # Where the service runs: fixed by a catalogue entry (folded away), typed for "Other".
        self.address_box = QgsCollapsibleGroupBoxBasic("Address", service_box)
        self.address_box.setObjectName("service_address")
        sf = QFormLayout(self.address_box)
        sf.setContentsMargins(4, 2, 4, 2)
        sf.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.kind_combo = QComboBox(self.address_box)
        self.kind_combo.setObjectName("kind")
        for code, text in P.KINDS:
            self.kind_combo.addItem(text, code)
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        sf.addRow("Kind", self.kind_combo)
        self.endpoint_edit = QLineEdit(self.address_box)
        self.endpoint_edit.setObjectName("endpoint")
        self.application_edit = QLineEdit(self.address_box)
        self.application_edit.setObjectName("application")
        self.namespace_edit = QLineEdit(self.address_box)
        self.namespace_edit.setObjectName("namespace")
        self.namespace_edit.setPlaceholderText("optional: the path before /processes")
        for edit in (self.endpoint_edit, self.application_edit, self.namespace_edit):
            edit.editingFinished.connect(self.load_params)
        self.endpoint_error = self._error_label(self.address_box)
        self.application_error = self._error_label(self.address_box)
        self.namespace_error = self._error_label(self.address_box)
        self.endpoint_label = QLabel("Backend", self.address_box)
        self.application_label = QLabel("Application", self.address_box)
        self.namespace_label = QLabel("Namespace", self.address_box)
        self.namespace_box = self._with_error(self.namespace_edit, self.namespace_error)
        sf.addRow(self.endpoint_label, self._with_error(self.endpoint_edit, self.endpoint_error))
        sf.addRow(self.application_label, self._with_error(self.application_edit, self.application_error))
        sf.addRow(self.namespace_label, self.namespace_box)
        sl.addWidget(self.address_box)
        page.addWidget(service_box)

        params_box = QGroupBox("Parameters", submit_page)
        pl = QVBoxLayout(params_box)
        pl.setContentsMargins(4, 2, 4, 2)
        pl.setSpacing(2)
        self.upscale_check = QCheckBox("Upscale over a grid", params_box)
        self.upscale_check.setObjectName("upscale_mode")
        self.upscale_check.setToolTip(
            "Split an area into 20 km or 250 km cells and run the service on each cell: "
            "one upscale task, one mosaic")
        self.upscale_check.toggled.connect(self.set_upscale)
        self.upscale_check.setEnabled(False)  # until a service with an extent parameter
        pl.addWidget(self.upscale_check)
        self.upscale = UpscalePanel(self.client, self.canvas, params_box)
        self.upscale.setObjectName("upscale_panel")
        self.upscale.cells_changed.connect(self._update_submit_text)
        self.upscale.hide()
        pl.addWidget(self.upscale)
        self.form = ParameterForm(self.canvas, params_box)
        pl.addWidget(self.form)
        jf = QFormLayout()
        jf.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.title_edit = QLineEdit(params_box)
        self.title_edit.setObjectName("title")
        # A title the user typed is kept when the service changes (filled ones are "auto").
        self.title_edit.textEdited.connect(lambda _t: self.title_edit.setProperty("auto", False))
        self.title_error = self._error_label(params_box)
        jf.addRow("Job title", self._with_error(self.title_edit, self.title_error))
        self.format_combo = QComboBox(params_box)
        self.format_combo.setObjectName("format")
        for code, label in P.FORMATS:
            self.format_combo.addItem(label, code)
        self.format_error = self._error_label(params_box)
        jf.addRow("Output format", self._with_error(self.format_combo, self.format_error))
        self.max_cost_edit = QLineEdit(params_box)
        self.max_cost_edit.setObjectName("max_cost")
        self.max_cost_edit.setPlaceholderText("optional: no limit")
        self.max_cost_edit.setToolTip("The most this job (each tile of an upscale task) may cost on the platform")
        self.max_cost_error = self._error_label(params_box)
        jf.addRow("Maximum cost", self._with_error(self.max_cost_edit, self.max_cost_error))
        pl.addLayout(jf)
        self._kind_changed(reload=False)
        page.addWidget(params_box)
        page.addStretch(1)

        self.scroll = QScrollArea()
        self.scroll.setObjectName("submit_scroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(submit_page)
        outer.addWidget(self.scroll, 1)
        # Below the scrolling part: always in sight, whatever the form's length.
        self.estimate_label = plain_label(QLabel(submit_tab))
        self.estimate_label.setObjectName("estimate")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setContentsMargins(4, 0, 4, 0)
        self.estimate_label.hide()
        outer.addWidget(self.estimate_label)
        self.estimate_warning = self._error_label(submit_tab)
        self.estimate_warning.setObjectName("estimate_warning")
        self.estimate_warning.setContentsMargins(4, 0, 4, 0)
        outer.addWidget(self.estimate_warning)
        self.general_error = self._error_label(submit_tab)
        self.general_error.setMaximumHeight(120)
        outer.addWidget(self.general_error)
        self.submit_button = QPushButton("Submit", submit_tab)
        self.submit_button.setObjectName("submit")
        self.submit_button.setDefault(True)
        self.submit_button.clicked.connect(self.submit)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(4, 0, 4, 4)
        bottom.addWidget(self.submit_button)
        outer.addLayout(bottom)
        self.tabs.addTab(submit_tab, "Submit")
        self.submit_tab = submit_tab
        self.job_list = JobList(self.jobs, self.tasks)
        self.job_list.action_requested.connect(self.job_action)
        self.job_list.task_action_requested.connect(self.task_action)
        self.tabs.addTab(self.job_list, "Jobs")
        self.setWidget(self.tabs)
        # The live estimate follows everything Submit would send.
        self.form.changed.connect(self.estimator.changed)
        self.format_combo.currentIndexChanged.connect(self.estimator.changed)
        self.max_cost_edit.textChanged.connect(self.estimator.changed)
        self.upscale.cells_changed.connect(self.estimator.changed)
        self.upscale_check.toggled.connect(self.estimator.changed)
        self.estimator.estimated.connect(self._show_estimate)
        self.estimator.failed.connect(self._estimate_failed)
        self.estimator.cleared.connect(self._estimate_cleared)

    @staticmethod
    def _error_label(parent) -> QLabel:
        label = plain_label(QLabel(parent))
        label.setStyleSheet(ERROR_STYLE)
        label.setWordWrap(True)
        label.hide()
        return label

    @staticmethod
    def _with_error(editor: QWidget, error: QLabel) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(editor)
        col.addWidget(error)
        return box

    # --- daemon ----------------------------------------------------------------------

    def refresh(self) -> None:
        self.check_health()
        self.client.get("/backends", self._got_backends)
        self.catalog.refresh()

    def check_health(self) -> None:
        self.client.get("/health", self._health)

    def _health(self, result: ApiResult) -> None:
        info = self.client.info
        if result.status == 0:
            stale = f"; {info.note}" if info.note else ""
            self.daemon_label.setText(f"Not running (nothing answers at {info.base_url}{stale})")
            self.start_button.show()
            return
        self.start_button.hide()
        version = (result.data or {}).get("version", "?") if isinstance(result.data, dict) else "?"
        token = "API token read" if info.read_token() else f"no API token file at {info.token_path}"
        if self.stream.is_connected:
            live = "live"
        elif self.stream.last_error:
            live = f"no live events ({self.stream.last_error}); retrying"
        else:
            live = "connecting to events…"
        # Found without the daemon's discovery file (an older daemon, or not read yet): say so.
        where = "" if info.origin == FROM_DISCOVERY else f" ({info.origin_text})"
        self.daemon_label.setText(f"eodispatch {version} at {info.base_url}{where} — {token}; {live}")

    def start_daemon(self) -> None:
        try:
            how, self.started_pid = start_daemon(self.client.info)
        except (RuntimeError, OSError) as e:
            self.notify(f"Cannot start the daemon: {e}", Qgis.MessageLevel.Critical, 10)
            return
        self.daemon_label.setText(f"Starting ({how})…")
        for delay in (500, 1500, 3000):
            QTimer.singleShot(delay, self.check_health)
        QTimer.singleShot(1600, self.stream.reconnect_now)

    # --- backends --------------------------------------------------------------------

    def _got_backends(self, result: ApiResult) -> None:
        if result.ok and isinstance(result.data, list):
            self.backends = [b for b in result.data if isinstance(b, dict)]
            self._fill_backends()

    def _job_waits(self, job: Dict[str, Any]) -> None:
        """Reads /backends again (once for a burst) when a job's status or what it waits
        for changed, or its backend is not listed yet: what the daemon learnt about the
        backend (reachable, whether it offers a login) shows in the table."""
        waiting = waiting_view(job)
        seen = (job.get("status"), waiting.reason if waiting else None)
        jid = job.get("id")
        backend = (waiting.backend if waiting else "") or str((job.get("service") or {}).get("endpoint") or "")
        if self._job_seen.get(jid) != seen or (backend and self.backend_row(backend) < 0):
            self._job_seen[jid] = seen
            self._backends_timer.start()

    def _backend_event(self, entry: Dict[str, Any]) -> None:
        for i, b in enumerate(self.backends):
            if b.get("url") == entry.get("url"):
                self.backends[i] = entry
                break
        else:
            self.backends.append(entry)
        self._fill_backends()
        if self.login_dialog is not None:
            self.login_dialog.on_auth_event(entry)

    def _fill_backends(self) -> None:
        """One row per backend: its title (full URL in the tooltip), its state in plain
        words, and Log in only where a login is possible and needed (Log out when
        logged in). As high as its rows: no empty space under them."""
        t = self.backend_table
        t.setVisible(bool(self.backends))
        self.no_backends.setVisible(not self.backends)
        t.setRowCount(len(self.backends))
        for row, b in enumerate(self.backends):
            view = backend_view(b)
            name = QTableWidgetItem(view.name)
            name.setToolTip(plain_tip(view.tip))
            name.setData(Qt.ItemDataRole.UserRole, b.get("url"))
            t.setItem(row, 0, name)
            item = QTableWidgetItem(view.state)
            item.setToolTip(plain_tip(view.tip))
            t.setItem(row, 1, item)
            if view.button is None:
                t.removeCellWidget(row, 2)
                t.setItem(row, 2, QTableWidgetItem(""))
            else:
                # A tool button: as wide as its text, leaving the backend's name the room.
                button = QToolButton()
                button.setText("Log out" if view.button == LOGOUT else "Log in")
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                button.setObjectName("backend_logout" if view.button == LOGOUT else "backend_login")
                button.clicked.connect(lambda _c=False, entry=b, a=view.button: self._login_clicked(entry, a))
                t.setCellWidget(row, 2, button)
        t.resizeRowsToContents()
        height = t.horizontalHeader().height() + 2 * t.frameWidth()
        for row in range(min(t.rowCount(), 4)):
            height += t.rowHeight(row)
        t.setFixedHeight(height)

    def backend_row(self, url: str) -> int:
        """The table row of the backend at ``url`` (-1 when not listed)."""
        want = str(url or "").rstrip("/")
        for row in range(self.backend_table.rowCount()):
            item = self.backend_table.item(row, 0)
            if item is not None and str(item.data(Qt.ItemDataRole.UserRole) or "").rstrip("/") == want:
                return row
        return -1

    def _login_clicked(self, backend: Dict[str, Any], action: str) -> None:
        if action == LOGOUT:
            self.client.post("/auth/logout", {"endpoint": backend.get("url")}, self._logged_out)
            return
        self.open_login(backend)

    def open_login(self, backend: Dict[str, Any]) -> None:
        """The log-in dialog for ``backend`` (a ``GET /backends`` entry, or just its url)."""
        if self.login_dialog is not None:
            self.login_dialog.close()
        self.login_dialog = LoginDialog(self.client, backend, self)
        self.login_dialog.finished.connect(lambda _r: self.client.get("/backends", self._got_backends))
        self.login_dialog.show()

    def _logged_out(self, result: ApiResult) -> None:
        if not result.ok:
            self.notify(f"Log-out failed: {result.error.message}", Qgis.MessageLevel.Warning, 8)
        elif isinstance(result.data, dict):
            self._backend_event(result.data)

    # --- service and parameters ------------------------------------------------------

    @staticmethod
    def _service_key(data: Any) -> Optional[str]:
        """A service list entry's key: its catalogue id, or CUSTOM."""
        if isinstance(data, dict):
            return str(data.get("id") or data.get("application") or "")
        return CUSTOM if data == CUSTOM else None

    def _fill_services(self) -> None:
        """The catalogue's services, then "Other". Selected: the service picked in this
        session, else the one the user last picked (QgsSettings), else the first
        catalogue service; a list that arrives after the dock was built does the same
        (the "Other" shown while there was no catalogue was nobody's choice)."""
        shown = self._service_key(self.service_combo.currentData())
        self.service_combo.blockSignals(True)
        self.service_combo.clear()
        kinds = dict(P.KINDS)
        for s in self.catalog.services:
            self.service_combo.addItem(str(s.get("title") or s.get("id")), s)
            i = self.service_combo.count() - 1
            label = str(s.get("label") or P.OPENEO)
            cost = f"\nCost: {cost_text(s)}" if "cost_estimate" in s else ""
            self.service_combo.setItemData(i, plain_tip(f"{kinds.get(label, label)}: {s.get('endpoint')}{cost}"),
                                           Qt.ItemDataRole.ToolTipRole)
        self.service_combo.addItem("Other: enter by hand", CUSTOM)
        self.service_combo.setItemData(self.service_combo.count() - 1, "An openEO or OGC API Processes service by address",
                                       Qt.ItemDataRole.ToolTipRole)
        index = 0
        for want in (self._session_choice, self._saved_choice()):
            found = self._index_of(want)
            if found >= 0:
                index = found
                break
        self.service_combo.setCurrentIndex(index)
        self.service_combo.blockSignals(False)
        if self._service_key(self.service_combo.currentData()) != shown or not self.form.specs:
            self._service_picked(index)

    def _index_of(self, key: Optional[str]) -> int:
        if not key:
            return -1
        for i in range(self.service_combo.count()):
            if self._service_key(self.service_combo.itemData(i)) == key:
                return i
        return -1

    @staticmethod
    def _saved_choice() -> Optional[str]:
        return QgsSettings().value(SERVICE_CHOICE_KEY, "", type=str) or None

    def _service_index_changed(self, index: int) -> None:
        """Any change of the selected service (the user, or code such as
        ``select_service``): kept for this session when the list is refilled."""
        self._session_choice = self._service_key(self.service_combo.itemData(index))
        self._service_picked(index)

    def _service_chosen(self, index: int) -> None:
        """The user picked a service in the list: remembered across QGIS restarts."""
        key = self._service_key(self.service_combo.itemData(index))
        if key:
            self._session_choice = key
            QgsSettings().setValue(SERVICE_CHOICE_KEY, key)

    def _set_description(self, text: str, limit: int = 200) -> None:
        """The service's description, cut after ``limit`` characters (whole text in the
        tooltip): long catalogue descriptions would push the form out of sight."""
        short = text
        if len(text) > limit:
            short = text[:limit].rsplit(" ", 1)[0].rstrip() + " …"
        self.description.setText(short)
        self.description.setToolTip(plain_tip(text) if short != text else "")

    def _set_kind(self, label: str) -> None:
        i = self.kind_combo.findData(label)
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(i if i >= 0 else 0)
        self.kind_combo.blockSignals(False)
        self._kind_changed(reload=False)

    def _kind_changed(self, _index: int = 0, reload: bool = True) -> None:
        """Field names and hints follow the kind: openEO backend + UDP URL, or OGC API
        Processes server + process id (or URL) + optional namespace."""
        ogc = self.service_label() == P.OGC
        self.endpoint_label.setText("Server" if ogc else "Backend")
        self.application_label.setText("Process" if ogc else "Application")
        self.endpoint_edit.setPlaceholderText("https://server.example/ogc-api" if ogc else "https://openeofed.dataspace.copernicus.eu")
        self.application_edit.setPlaceholderText(
            "process id, or the process URL …/processes/<id>" if ogc else "URL of the openEO UDP (JSON)")
        for w in (self.namespace_label, self.namespace_box):
            w.setVisible(ogc)
        # OGC processes decide their outputs themselves; the API still wants a format.
        self.format_combo.setEnabled(not ogc)
        self.format_combo.setToolTip("The process decides its outputs" if ogc else "")
        if not isinstance(self.service_combo.currentData(), dict):
            self._set_description(
                "Any OGC API Processes process: the server's URL and the process id (or the process URL); "
                "the namespace is the path before /processes, if any." if ogc else
                "Any openEO user-defined process: give the backend URL and the UDP's URL.")
        if reload:
            self.load_params()

    def _service_picked(self, _index: int) -> None:
        s = self.service_combo.currentData()
        custom = not isinstance(s, dict)
        self.kind_combo.setEnabled(custom)
        # A catalogue service's address is fixed: folded away (open to look or change).
        self.address_box.setCollapsed(not custom)
        if not custom:
            self._set_kind(str(s.get("label") or P.OPENEO))
            self.endpoint_edit.setText(str(s.get("endpoint") or ""))
            self.application_edit.setText(str(s.get("application") or ""))
            self.namespace_edit.setText(str(s.get("namespace") or ""))
            self._set_description(str(s.get("description") or ""))
            if not self.title_edit.text() or self.title_edit.property("auto"):
                self.title_edit.setText(str(s.get("title") or ""))
                self.title_edit.setProperty("auto", True)
        else:
            self._kind_changed(reload=False)
        self.load_params()

    def select_service(self, endpoint: str, application: str, label: str = P.OPENEO,
                       namespace: Optional[str] = None) -> None:
        """Fills the service fields as "Other" (tests, and "submit again"). Kept when the
        catalogue arrives later: "Other" may already be the only entry, so that setting
        the index changes nothing the list could remember."""
        self._session_choice = CUSTOM
        self.service_combo.setCurrentIndex(self.service_combo.count() - 1)
        self._set_kind(label)
        self.endpoint_edit.setText(endpoint)
        self.application_edit.setText(application)
        self.namespace_edit.setText(namespace or "")
        self.load_params()

    # --- service browser -------------------------------------------------------------

    def open_browser(self) -> ServiceBrowser:
        """The service browser (one at a time), on the catalogue known so far; it reads
        the daemon's list again."""
        if self.browser is not None:
            self.browser.close()
            self.browser.deleteLater()
        self.browser = ServiceBrowser(self.client, self.catalog.services, self)
        current = self.service_combo.currentData()
        if isinstance(current, dict) and current.get("id"):
            self.browser.select(str(current["id"]))
        self.browser.chosen.connect(self.choose_service)
        self.browser.show()
        return self.browser

    @staticmethod
    def _form_key_of(record: Dict[str, Any]) -> tuple:
        label = str(record.get("label") or record.get("kind") or P.OPENEO)
        namespace = (str(record.get("namespace") or "").strip().strip("/") or None) if label == P.OGC else None
        return (label, str(record.get("endpoint") or "").strip(), str(record.get("application") or "").strip(),
                namespace)

    def choose_service(self, record: Dict[str, Any], detail: Optional[Dict[str, Any]] = None) -> None:
        """The service chosen in the browser: selected in the list (remembered like a pick
        in the list), its form built, and its catalogue defaults (``GET /services/{id}``)
        put into the form's fields of the same name."""
        sid = str(record.get("id") or "")
        key = self._form_key_of(record)
        self._pending_defaults = (key, {})
        self.applied_defaults = []
        index = self._index_of(sid)
        if index >= 0:
            self._session_choice = sid
            QgsSettings().setValue(SERVICE_CHOICE_KEY, sid)
            if self.service_combo.currentIndex() == index:
                self._service_picked(index)
            else:
                self.service_combo.setCurrentIndex(index)
        else:  # not in the list (yet): by address
            self.select_service(key[1], key[2], key[0], key[3])
            self._set_description(str(record.get("description") or ""))
            if not self.title_edit.text() or self.title_edit.property("auto"):
                self.title_edit.setText(str(record.get("title") or ""))
                self.title_edit.setProperty("auto", True)
        if isinstance(detail, dict) and isinstance(detail.get("defaults"), dict):
            self._set_defaults(key, detail["defaults"])
        elif sid:
            from urllib.parse import quote

            self.client.get("/services/" + quote(sid, safe=""),
                            lambda r, k=key: self._set_defaults(k, r.data.get("defaults") or {})
                            if r.ok and isinstance(r.data, dict) else None)

    def _set_defaults(self, key: tuple, defaults: Dict[str, Any]) -> None:
        if self._pending_defaults is None or self._pending_defaults[0] != key:
            return  # another service was picked since
        self._pending_defaults = (key, dict(defaults))
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        """The pending defaults into the form, when the form is the chosen service's."""
        if self._pending_defaults is None or not self.form.specs:
            return
        key, values = self._pending_defaults
        if self._form_key != key or not values:
            return
        self.applied_defaults = self.form.set_values(values)

    # --- budgets ---------------------------------------------------------------------

    def open_budgets(self) -> BudgetDialog:
        if self.budget_dialog is not None:
            self.budget_dialog.close()
            self.budget_dialog.deleteLater()
        self.budget_dialog = BudgetDialog(self.client, self)
        # The budget line of the estimate follows the new limits.
        self.budget_dialog.saved.connect(lambda _entries: self.estimator.ask_now(force=True))
        self.budget_dialog.show()
        return self.budget_dialog

    def service_label(self) -> str:
        """``openeo`` or ``ogc_api_process``: the catalogue entry's, or the chosen kind."""
        s = self.service_combo.currentData()
        if isinstance(s, dict):
            return str(s.get("label") or P.OPENEO)
        return str(self.kind_combo.currentData() or P.OPENEO)

    def service_namespace(self) -> Optional[str]:
        """The OGC namespace (``None`` for openEO or when empty)."""
        if self.service_label() != P.OGC:
            return None
        return self.namespace_edit.text().strip().strip("/") or None

    def load_params(self) -> None:
        endpoint = self.endpoint_edit.text().strip()
        application = self.application_edit.text().strip()
        if not endpoint or not application:
            self.form.clear()
            self._form_key = None
            self._upscale_available()
            self.estimator.changed()
            return
        namespace = self.service_namespace()
        key = (self.service_label(), endpoint, application, namespace)
        if self._params_request == key and self.form.specs:
            return
        self._params_request = key
        cached = self.catalog.params_of(endpoint, application, namespace)
        if cached:
            self._params_for(key, cached)
        body = P.params_body(self.service_label(), endpoint, application, namespace)
        # The service view: parameters, and the title/description of a service entered by hand.
        self.client.post("/params?view=service", body, lambda r, k=key: self._got_params(k, r))

    def _got_params(self, key, result: ApiResult) -> None:
        if key != self._params_request:
            return  # an older request
        self.endpoint_error.hide()
        self.application_error.hide()
        self.namespace_error.hide()
        if not result.ok:
            self.form.clear()
            self._form_key = None
            self._upscale_available()
            self._show_errors(result.error.errors, result.error.message)
            return
        data = result.data
        if isinstance(data, dict):  # ?view=service
            self.service_view = data
            if not isinstance(self.service_combo.currentData(), dict):
                text = "\n\n".join(str(x) for x in (data.get("title"), data.get("description")) if x)
                if text:
                    self._set_description(text)
                if data.get("title") and (not self.title_edit.text() or self.title_edit.property("auto")):
                    self.title_edit.setText(str(data["title"]))
                    self.title_edit.setProperty("auto", True)
            data = data.get("parameters")
        self._params_for(key, data if isinstance(data, list) else [])

    def _params_for(self, key, descriptors: List[Dict[str, Any]]) -> None:
        # Same service, same description (the cached one, then the daemon's): keep what
        # the user typed. A changed description (or another service) rebuilds the form.
        if self._form_key == key and self._form_descriptors == descriptors:
            return
        self.form.build(descriptors)
        self._form_key = key
        self._form_descriptors = descriptors
        self.general_error.hide()
        self._upscale_available()
        self._apply_defaults()

    # --- upscale mode ----------------------------------------------------------------

    def upscale_field(self) -> Optional[P.FieldSpec]:
        """The parameter the cells go to: the service's extent parameter."""
        return P.extent_field(self.form.specs)

    def _upscale_available(self) -> None:
        field = self.upscale_field()
        self.upscale_check.setEnabled(field is not None)
        self.upscale_check.setToolTip(
            "Split an area into 20 km or 250 km cells and run the service on each cell: one upscale task, "
            "one mosaic" if field is not None else "This service takes no extent: it cannot be upscaled")
        if field is None and self.upscale_check.isChecked():
            self.upscale_check.setChecked(False)
        elif field is not None:
            self.form.set_field_visible(field.name, not self.upscale_check.isChecked())
        self._update_submit_text()

    def set_upscale(self, on: bool) -> None:
        """Upscale mode: the area and grid replace the extent parameter."""
        if on and self.upscale_field() is None:
            self.upscale_check.setChecked(False)
            return
        if self.upscale_check.isChecked() != on:
            self.upscale_check.setChecked(on)  # comes back here
            return
        self.upscale.setVisible(on)
        field = self.upscale_field()
        if field is not None:
            self.form.set_field_visible(field.name, not on)
        if on and self.upscale.area is None:
            # Start from the form's extent (the map canvas, when there is one).
            extent = self.form.extent_widget()
            bbox = extent.value() if extent is not None else None
            if bbox:
                self.upscale.area_from_bbox(bbox, "the extent of the form")
        elif not on:
            self.upscale.stop_drawing()
            self.upscale.preview.clear()
            self.upscale.area = None
            self.upscale.cells = []
        self._update_submit_text()

    @property
    def upscaling(self) -> bool:
        return self.upscale_check.isChecked() and self.upscale_field() is not None

    def _update_submit_text(self) -> None:
        if self.upscaling:
            n = len(self.upscale.cells)
            self.submit_button.setText(f"Submit upscale task ({n} tile{'s' if n != 1 else ''})" if n else
                                       "Submit upscale task")
        else:
            self.submit_button.setText("Submit")

    # --- submit ----------------------------------------------------------------------

    def max_cost(self) -> tuple:
        """The "Maximum cost" field: ``(value or None, error or None)``."""
        return K.parse_limit(self.max_cost_edit.text())

    def _with_max_cost(self, body: Dict[str, Any], quiet: bool) -> Optional[Dict[str, Any]]:
        value, error = self.max_cost()
        if error:
            if not quiet:
                self.max_cost_error.setText(error)
                self.max_cost_error.show()
            return None
        if value is not None:
            body["max_cost"] = value
        return body

    def job_body(self, quiet: bool = False) -> Optional[Dict[str, Any]]:
        """The ``POST /unit_jobs`` body; ``None`` (the errors shown unless ``quiet``) when
        the form is not complete."""
        values, errors = self.form.values()
        if errors:
            if not quiet:
                self._show_errors([{"name": "parameters." + e["name"], "reason": e["reason"]} for e in errors],
                                  "Check the highlighted fields.")
            return None
        body = P.job_body(
            self.title_edit.text().strip() or "EO Dispatch job",
            self.service_label(),
            self.endpoint_edit.text().strip(),
            self.application_edit.text().strip(),
            values,
            self.format_combo.currentData(),
            self.service_namespace(),
        )
        return self._with_max_cost(body, quiet)

    def task_body(self, quiet: bool = False) -> Optional[Dict[str, Any]]:
        """The ``POST /upscale_tasks`` body: the form's parameters, the extent parameter
        as the dimension, one value per cell."""
        field = self.upscale_field()
        if field is None:
            return None
        if not self.upscale.cells:
            if not quiet:
                self.general_error.setText(self.upscale.error or "Pick an area first: it has no cells yet.")
                self.general_error.show()
            return None
        values, errors = self.form.values()
        errors = [e for e in errors if e["name"] != field.name]
        if errors:
            if not quiet:
                self._show_errors([{"name": "parameters." + e["name"], "reason": e["reason"]} for e in errors],
                                  "Check the highlighted fields.")
            return None
        body = U.task_body(
            self.title_edit.text().strip() or "EO Dispatch upscale task",
            self.service_label(),
            self.endpoint_edit.text().strip(),
            self.application_edit.text().strip(),
            values,
            self.format_combo.currentData(),
            field.name,
            U.dimension_values(field, self.upscale.cells),
            self.service_namespace(),
        )
        return self._with_max_cost(body, quiet)

    # --- live cost estimate ----------------------------------------------------------

    def estimate_body(self) -> Optional[Dict[str, Any]]:
        """What Submit would send now (``None``: nothing complete to estimate)."""
        if not self.form.specs or not self.endpoint_edit.text().strip() or not self.application_edit.text().strip():
            return None
        return self.task_body(quiet=True) if self.upscaling else self.job_body(quiet=True)

    def _show_estimate(self, answer: Dict[str, Any]) -> None:
        lines = [K.estimate_text(answer, upscale=self.upscaling)]
        budget = K.budget_text(answer.get("budget"))
        if budget:
            lines.append(budget)
        self.estimate_label.setText("\n".join(lines))
        self.estimate_label.setStyleSheet("" if K.estimate_known(answer) else "color: gray;")
        self.estimate_label.show()
        warning = K.exceed_warning(answer)
        self.estimate_warning.setText(warning)
        self.estimate_warning.setVisible(bool(warning))

    def _estimate_failed(self, error) -> None:
        if error is not None and error.status in (404, 405):
            text = "Cost estimate not available (this daemon has no /estimate)."
        else:
            text = f"Cost estimate not available: {error.message if error is not None else 'no answer'}"
        self.estimate_label.setText(text)
        self.estimate_label.setStyleSheet("color: gray;")
        self.estimate_label.show()
        self.estimate_warning.hide()

    def _estimate_cleared(self) -> None:
        self.estimate_label.clear()
        self.estimate_label.hide()
        self.estimate_warning.clear()
        self.estimate_warning.hide()

    def submit(self) -> None:
        self._clear_errors()
        if self.upscaling:
            body = self.task_body()
            if body is None:
                return
            self.submit_button.setEnabled(False)
            self.client.post("/upscale_tasks", body, self._task_submitted)
            return
        body = self.job_body()
        if body is None:
            return
        self.submit_button.setEnabled(False)
        self.client.post("/unit_jobs", body, self._submitted)

    def _refused(self, result: ApiResult) -> None:
        """A refusal of the daemon: a budget one in one clear sentence, else its errors
        under their fields."""
        if K.budget_exceeded(result.error):
            text = K.budget_exceeded_text(result.error)
            self.general_error.setText(text)
            self.general_error.show()
            self.notify(text, Qgis.MessageLevel.Warning, 10)
            return
        self._show_errors(result.error.errors, result.error.message)
        self.notify(f"Not submitted: {result.error.message}", Qgis.MessageLevel.Warning, 8)

    def _task_submitted(self, result: ApiResult) -> None:
        self.submit_button.setEnabled(True)
        if not result.ok:
            self._refused(result)
            return
        task = result.data
        self.last_task = task
        if self.tasks is not None:
            self.tasks.on_task(task)
        n = len(task.get("jobs") or [])
        # The tiles' footprints take the cells' place on the map.
        self.upscale.preview.clear()
        self.notify(f"Upscale task #{task.get('id')} “{task.get('title')}” submitted: {n} tiles",
                    Qgis.MessageLevel.Success, 4)
        self.tabs.setCurrentWidget(self.job_list)

    def _submitted(self, result: ApiResult) -> None:
        self.submit_button.setEnabled(True)
        if not result.ok:
            self._refused(result)
            return
        job = result.data
        self.last_job = job
        self.jobs.on_event("job", job)
        self.notify(f"Job #{job.get('id')} “{job.get('title')}” submitted", Qgis.MessageLevel.Success, 4)
        self.tabs.setCurrentWidget(self.job_list)

    def _clear_errors(self) -> None:
        self.form.clear_errors()
        for label in (self.endpoint_error, self.application_error, self.namespace_error, self.title_error,
                      self.format_error, self.max_cost_error, self.general_error):
            label.clear()
            label.hide()

    def _show_errors(self, errors: List[Dict[str, str]], message: str) -> None:
        rest = self.form.show_errors(errors)
        unplaced = []
        labels = {"service.endpoint": self.endpoint_error, "service.application": self.application_error,
                  "service.namespace": self.namespace_error, "title": self.title_error, "format": self.format_error,
                  "max_cost": self.max_cost_error}
        for e in rest:
            label = labels.get(str(e.get("name")))
            if label is not None:
                label.setText(str(e.get("reason")))
                label.show()
                if str(e.get("name")).startswith("service."):
                    self.address_box.setCollapsed(False)
            else:
                unplaced.append(e)
        if unplaced or not errors:
            text = message if not unplaced else message + "\n" + "\n".join(f"{e.get('name')}: {e.get('reason')}" for e in unplaced)
            self.general_error.setText(text)
            self.general_error.show()

    # --- job actions -----------------------------------------------------------------

    def job_folder(self, job: Dict[str, Any]) -> Optional[Path]:
        results = job.get("results") or {}
        if results.get("dir") and Path(results["dir"]).is_dir():
            return Path(results["dir"])
        return find_published_folder(self.client.info.results_dir, str(job.get("uuid", "")), job.get("id"))

    def job_action(self, action: str, jid: int) -> None:
        job = self.jobs.job(jid)
        if job is None:
            return
        if action == "login":
            waiting = waiting_view(job)
            url = waiting.backend if waiting is not None else (job.get("service") or {}).get("endpoint")
            entry = next((b for b in self.backends if str(b.get("url")).rstrip("/") == str(url).rstrip("/")), None)
            self.open_login(entry or {"url": url})
        elif action == "cancel":
            self.client.post(f"/unit_jobs/{jid}/cancel", {}, lambda r: self._after("Cancel", r))
        elif action == "logs":
            self.client.get(f"/unit_jobs/{jid}/logs", lambda r: self._show_logs(job, r))
        elif action == "folder":
            folder = self.job_folder(job)
            if folder is None:
                self.notify(f"Job #{jid}: no result folder (yet) in {self.client.info.results_dir}", Qgis.MessageLevel.Warning, 6)
            else:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        elif action == "zoom":
            bbox = P.job_bbox(job)
            if bbox is None or self.canvas is None:
                return
            rect = P.wgs84_to_crs(bbox, self.canvas.mapSettings().destinationCrs())
            rect.scale(1.1)
            self.canvas.setExtent(rect)
            self.canvas.refresh()
        elif action == "reload":
            folder = self.job_folder(job)
            if folder is None:
                if (job.get("results") or {}).get("state") in ("failed", "removed"):
                    self.client.post(f"/unit_jobs/{jid}/results/download", {}, lambda r: self._after("Download", r))
                else:
                    self.notify(f"Job #{jid}: no result folder (yet)", Qgis.MessageLevel.Warning, 6)
            elif self.autoloader is not None:
                self.autoloader.load_folder(folder, replace=True)

    def task_folder(self, tid: int) -> Optional[Path]:
        task = self.tasks.task(tid) if self.tasks is not None else None
        tiles = self.tasks.tiles(tid) if self.tasks is not None else []
        return U.find_task_folder(self.client.info.results_dir, tid, tiles, (task or {}).get("title"))

    def task_action(self, action: str, tid: int) -> None:
        """Cancel all, retry failed, open folder, zoom to, load the mosaic again."""
        if action == "cancel":
            self.client.post(f"/upscale_tasks/{tid}/cancel", {}, lambda r: self._after_task("Cancel", r))
        elif action == "retry":
            self.client.post(f"/upscale_tasks/{tid}/retry", {}, lambda r: self._after_task("Retry", r))
        elif action in ("folder", "reload"):
            folder = self.task_folder(tid)
            if folder is None:
                self.notify(f"Upscale task #{tid}: no task folder (yet) in {self.client.info.results_dir}",
                            Qgis.MessageLevel.Warning, 6)
            elif action == "folder":
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
            elif self.autoloader is not None:
                self.autoloader.load_folder(folder, replace=True)
        elif action == "zoom":
            bbox = U.task_bbox(self.tasks.tiles(tid)) if self.tasks is not None else None
            if bbox is None or self.canvas is None:
                return
            rect = P.wgs84_to_crs(bbox, self.canvas.mapSettings().destinationCrs())
            rect.scale(1.1)
            self.canvas.setExtent(rect)
            self.canvas.refresh()

    def _after_task(self, what: str, result: ApiResult) -> None:
        if not result.ok:
            self.notify(f"{what} failed: {result.error.message}", Qgis.MessageLevel.Warning, 8)
        elif isinstance(result.data, dict) and isinstance(result.data.get("id"), int) and self.tasks is not None:
            self.tasks.on_task(result.data)

    def _after(self, what: str, result: ApiResult) -> None:
        if not result.ok:
            self.notify(f"{what} failed: {result.error.message}", Qgis.MessageLevel.Warning, 8)
        elif isinstance(result.data, dict) and isinstance(result.data.get("id"), int):
            self.jobs.on_event("job", result.data)

    def _show_logs(self, job: Dict[str, Any], result: ApiResult) -> None:
        if not result.ok:
            self.notify(f"Logs of job #{job['id']}: {result.error.message}", Qgis.MessageLevel.Warning, 8)
            return
        data = result.data
        entries = data.get("logs", []) if isinstance(data, dict) else (data or [])
        text = "\n".join(f"[{e.get('level', '')}] {e.get('message', '')}" for e in entries if isinstance(e, dict))
        dlg = QDialog(self)
        dlg.setWindowTitle(f"Logs of job #{job['id']} {job.get('title', '')}")
        layout = QVBoxLayout(dlg)
        view = QPlainTextEdit(dlg)
        view.setReadOnly(True)
        view.setPlainText(text or "(no log entries)")
        layout.addWidget(view)
        dlg.resize(700, 400)
        dlg.show()
        self.logs_dialog = dlg

    def cleanup(self) -> None:
        self._health_timer.stop()
        self._backends_timer.stop()
        self.estimator.stop()
        for dlg in (self.browser, self.budget_dialog):
            if dlg is not None:
                dlg.close()
        self.upscale.cleanup()
        self.form.clear()
        if self.login_dialog is not None:
            self.login_dialog.close()
