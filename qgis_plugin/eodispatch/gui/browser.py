"""The service browser: the daemon's catalogue with a search field, kind and platform
filters, and the selected service's description, platform, cost, thumbnail and links.
"Use this service" hands the service (and its defaults) to the dock's form.

Filtering is local, on the list read once from ``GET /services``: the search waits for a
short pause in typing, then refills the list (instant with hundreds of records). The
detail (``GET /services/{id}``) and the thumbnail (from the internet) arrive
asynchronously; an answer for a service no longer selected is not shown."""

from typing import Any, Dict, List, Optional

from qgis.PyQt.QtCore import Qt, QTimer, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices, QPixmap
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core import catalogue as C
from ..core import params as P
from ..core.client import DaemonClient
from ..core.safe import plain_label, plain_tip

SEARCH_DELAY_MS = 200
THUMB_SIZE = 160
NO_PREVIEW = "(no preview)"


class ServiceBrowser(QDialog):
    chosen = pyqtSignal(dict, dict)  # the record, its detail ({} when not read yet)

    def __init__(self, client: DaemonClient, records: Optional[List[Dict[str, Any]]] = None, parent=None):
        super().__init__(parent)
        self.setObjectName("eodispatch_service_browser")
        self.setWindowTitle("EO Dispatch: services")
        self.client = client
        self.model = C.CatalogueModel(client, records, self)
        self.images = C.ImageFetcher(self)
        self.current_id: Optional[str] = None
        self.thumbnail_url: Optional[str] = None
        self.shown: List[Dict[str, Any]] = []
        self._build()
        self.model.listed.connect(self._listed)
        self.model.list_failed.connect(self._list_failed)
        self.model.detail_ready.connect(self._detail)
        self.model.detail_failed.connect(self._detail_failed)
        self.images.ready.connect(self._image)
        self.images.failed.connect(self._no_image)
        self._listed()
        self.model.refresh()
        self.client.get("/catalogue", self._got_sources)

    # --- layout ---------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget(split)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.search = QLineEdit(left)
        self.search.setObjectName("service_search")
        self.search.setPlaceholderText("Search: title, description, keyword…")
        self.search.setClearButtonEnabled(True)
        ll.addWidget(self.search)
        filters = QHBoxLayout()
        self.kind_filter = QComboBox(left)
        self.kind_filter.setObjectName("service_kind_filter")
        self.platform_filter = QComboBox(left)
        self.platform_filter.setObjectName("service_platform_filter")
        filters.addWidget(self.kind_filter)
        filters.addWidget(self.platform_filter, 1)
        ll.addLayout(filters)
        self.list = QListWidget(left)
        self.list.setObjectName("service_list")
        self.list.setUniformItemSizes(True)
        ll.addWidget(self.list, 1)
        self.count_label = QLabel(left)
        self.count_label.setObjectName("service_count")
        ll.addWidget(self.count_label)
        self.sources_label = plain_label(QLabel(left))
        self.sources_label.setObjectName("catalogue_sources")
        self.sources_label.setWordWrap(True)
        self.sources_label.setStyleSheet("color: gray;")
        ll.addWidget(self.sources_label)

        right = QWidget(split)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(4, 0, 0, 0)
        top = QHBoxLayout()
        self.title_label = plain_label(QLabel(right))
        self.title_label.setObjectName("service_title")
        self.title_label.setWordWrap(True)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        self.thumbnail = QLabel(right)
        self.thumbnail.setObjectName("service_thumbnail")
        self.thumbnail.setFixedSize(THUMB_SIZE, THUMB_SIZE * 3 // 4)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet("color: gray; border: 1px solid #ccc;")
        top.addWidget(self.title_label, 1)
        top.addWidget(self.thumbnail)
        rl.addLayout(top)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.kind_label = plain_label(QLabel(right))
        self.platform_label = plain_label(QLabel(right))
        self.platform_label.setObjectName("service_platform")
        self.platform_label.setWordWrap(True)
        self.cost_label = plain_label(QLabel(right))
        self.cost_label.setObjectName("service_cost")
        self.cost_label.setWordWrap(True)
        self.keywords_label = plain_label(QLabel(right))
        self.keywords_label.setObjectName("service_keywords")
        self.keywords_label.setWordWrap(True)
        self.contacts_label = plain_label(QLabel(right))
        self.contacts_label.setWordWrap(True)
        form.addRow("Kind", self.kind_label)
        form.addRow("Platform", self.platform_label)
        form.addRow("Cost", self.cost_label)
        form.addRow("Keywords", self.keywords_label)
        form.addRow("Contacts", self.contacts_label)
        rl.addLayout(form)
        # Catalogue text: plain, never rendered as HTML.
        self.description = QPlainTextEdit(right)
        self.description.setObjectName("service_description_full")
        self.description.setReadOnly(True)
        rl.addWidget(self.description, 1)
        rl.addWidget(QLabel("Links (double-click to open in the browser)", right))
        self.links = QListWidget(right)
        self.links.setObjectName("service_links")
        self.links.setMaximumHeight(120)
        rl.addWidget(self.links)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        outer.addWidget(split, 1)

        buttons = QDialogButtonBox(self)
        self.choose_button = QPushButton("Use this service", self)
        self.choose_button.setObjectName("service_choose")
        self.choose_button.setEnabled(False)
        self.choose_button.setDefault(True)
        buttons.addButton(self.choose_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.choose_button.clicked.connect(self.choose)
        outer.addWidget(buttons)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.apply_filter)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.kind_filter.currentIndexChanged.connect(lambda _i: self.apply_filter())
        self.platform_filter.currentIndexChanged.connect(lambda _i: self.apply_filter())
        self.list.currentItemChanged.connect(lambda cur, _prev: self._selected(cur))
        self.list.itemDoubleClicked.connect(lambda _item: self.choose())
        self.links.itemActivated.connect(self.open_link)
        self.links.itemDoubleClicked.connect(self.open_link)
        self.resize(900, 560)
        self._show_record(None)

    # --- list -----------------------------------------------------------------------

    def _fill_filters(self) -> None:
        kinds = dict(P.KINDS)
        for combo, entries, everything in (
            (self.kind_filter, [(k, kinds.get(k, k)) for k in C.kinds(self.model.records)], "All kinds"),
            (self.platform_filter, C.platforms(self.model.records), "All platforms"),
        ):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(everything, C.ALL)
            for code, text in entries:
                combo.addItem(text, code)
            i = combo.findData(current)
            combo.setCurrentIndex(i if i >= 0 else 0)
            combo.blockSignals(False)

    def _listed(self) -> None:
        self._fill_filters()
        self.apply_filter()

    def _list_failed(self, error) -> None:
        if not self.model.records:
            self.count_label.setText(f"Cannot read the services: {getattr(error, 'message', error)}")

    def _got_sources(self, result) -> None:
        """One line per catalogue source: how it stands (``GET /catalogue``)."""
        if not result.ok or not isinstance(result.data, dict):
            return
        sources = [x for x in result.data.get("sources") or [] if isinstance(x, dict)]
        self.sources_label.setText("\n".join(C.source_text(x) for x in sources))
        self.sources_label.setToolTip(plain_tip("\n".join(str(x.get("error")) for x in sources if x.get("error"))))

    @property
    def filter_pending(self) -> bool:
        return self._search_timer.isActive()

    def apply_filter(self) -> None:
        self._search_timer.stop()
        self.shown = C.filter_records(self.model.records, self.search.text(),
                                      self.kind_filter.currentData() or C.ALL,
                                      self.platform_filter.currentData() or C.ALL)
        keep = self.current_id
        self.list.blockSignals(True)
        self.list.clear()
        row = -1
        for i, r in enumerate(self.shown):
            item = QListWidgetItem(str(r.get("title") or r.get("id")))
            item.setData(Qt.ItemDataRole.UserRole, str(r.get("id")))
            platform = C.platform_title(r)
            item.setToolTip(plain_tip(f"{r.get('id')}" + (f" — {platform}" if platform else "")))
            self.list.addItem(item)
            if str(r.get("id")) == keep:
                row = i
        self.list.blockSignals(False)
        total = len(self.model.records)
        n = len(self.shown)
        self.count_label.setText(f"{n} of {total} services" if n != total else f"{total} services")
        if row >= 0:
            self.list.setCurrentRow(row)
        elif self.shown:
            self.list.setCurrentRow(0)
        else:
            self._selected(None)

    def ids(self) -> List[str]:
        """The ids listed now, in order."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def select(self, sid: str) -> bool:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == sid:
                self.list.setCurrentRow(i)
                return True
        return False

    # --- the selected service ---------------------------------------------------------

    def current_record(self) -> Optional[Dict[str, Any]]:
        return self.model.record(self.current_id) if self.current_id else None

    def current_detail(self) -> Dict[str, Any]:
        return self.model.details.get(self.current_id or "", {})

    def _selected(self, item: Optional[QListWidgetItem]) -> None:
        sid = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        self.current_id = sid
        record = self.model.record(sid) if sid else None
        self._show_record(record)
        if record is not None:
            self.model.fetch_detail(sid)

    def _show_record(self, record: Optional[Dict[str, Any]]) -> None:
        self.choose_button.setEnabled(record is not None)
        self.links.clear()
        if record is None:
            self.title_label.setText("No service selected")
            for label in (self.kind_label, self.platform_label, self.cost_label, self.keywords_label,
                          self.contacts_label):
                label.setText("")
            self.description.setPlainText("")
            self._set_thumbnail(None)
            return
        kinds = dict(P.KINDS)
        kind = C.kind_of(record)
        self.title_label.setText(str(record.get("title") or record.get("id")))
        self.kind_label.setText(kinds.get(kind, kind))
        platform = C.platform_of(record) or {}
        self.platform_label.setText(C.platform_title(record) or "not given")
        self.platform_label.setToolTip(plain_tip(str(platform.get("url") or record.get("endpoint") or "")))
        self.cost_label.setText(C.cost_text(record))
        self.keywords_label.setText(", ".join(str(k) for k in record.get("keywords") or []))
        self.contacts_label.setText("")
        desc = str(record.get("description") or "")
        extra = [f"Runs at: {record.get('endpoint')}"]
        if record.get("license"):
            extra.append(f"License: {record.get('license')}")
        formats = [str(f.get("name") if isinstance(f, dict) else f) for f in record.get("formats") or []]
        if formats:
            extra.append("Formats: " + ", ".join(formats))
        self.description.setPlainText(desc + ("\n\n" if desc else "") + "\n".join(extra))
        self._set_thumbnail(record.get("thumbnail") if isinstance(record.get("thumbnail"), str) else None)

    def _detail(self, sid: str, detail: Dict[str, Any]) -> None:
        if sid != self.current_id:
            return  # an answer for a service no longer selected
        self.links.clear()
        for link in C.links_of(detail):
            item = QListWidgetItem(link["text"])
            item.setData(Qt.ItemDataRole.UserRole, link["href"])
            item.setToolTip(plain_tip(link["href"]))
            self.links.addItem(item)
        self.contacts_label.setText(C.contacts_text(detail))
        if self.thumbnail_url is None:
            thumb = next((x["href"] for x in C.links_of(detail) if x["rel"] == "thumbnail"), None)
            if thumb:
                self._set_thumbnail(thumb)

    def _detail_failed(self, sid: str, error) -> None:
        if sid == self.current_id:
            self.links.clear()
            item = QListWidgetItem(f"(links not available: {getattr(error, 'message', error)})")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.links.addItem(item)

    def link_urls(self) -> List[str]:
        return [self.links.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.links.count())
                if self.links.item(i).data(Qt.ItemDataRole.UserRole)]

    def open_link(self, item: QListWidgetItem) -> None:
        href = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if href:
            QDesktopServices.openUrl(QUrl(href))

    # --- thumbnail ------------------------------------------------------------------

    def _set_thumbnail(self, url: Optional[str]) -> None:
        self.thumbnail_url = url
        self.thumbnail.setPixmap(QPixmap())
        self.thumbnail.setText("…" if url else NO_PREVIEW)
        self.thumbnail.setToolTip(plain_tip(url or ""))
        if url:
            self.images.fetch(url)

    def _image(self, url: str, data: bytes) -> None:
        if url != self.thumbnail_url:
            return
        pix = QPixmap()
        if not pix.loadFromData(data):
            self._no_image(url)
            return
        self.thumbnail.setText("")
        self.thumbnail.setPixmap(pix.scaled(self.thumbnail.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation))

    def _no_image(self, url: str) -> None:
        if url == self.thumbnail_url:
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText(NO_PREVIEW)

    # --- choose ---------------------------------------------------------------------

    def choose(self) -> None:
        record = self.current_record()
        if record is None:
            return
        self.chosen.emit(record, self.current_detail())
        self.accept()

    def done(self, r: int) -> None:  # noqa: D401 (Qt API)
        self._search_timer.stop()
        self.images.abort_all()
        super().done(r)
