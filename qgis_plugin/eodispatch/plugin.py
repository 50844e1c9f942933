"""The plugin object: wires the daemon client, the event stream, the job model, the
footprints layer, the auto-loader, the dock and the Processing provider; undoes all of
it in ``unload()``. On a project without layers it offers, once, an OpenStreetMap
background."""

import os
from typing import Optional

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QPushButton

try:  # Qt6: QAction lives in QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

from .core.client import DaemonClient, log
from .core.safe import esc
from .core.daemon import DaemonInfo
from .core.footprints import Footprints
from .core.jobs import JobModel
from .core.loaded import AutoLoader, LoadedRegistry
from .core.services import ServiceCatalog
from .core.sse import EventStream
from .core.tasks import TaskModel

MENU = "&EO Dispatch"
ICON = os.path.join(os.path.dirname(__file__), "icon.svg")
# QGIS's own "OpenStreetMap" XYZ tiles connection.
OSM_NAME = "OpenStreetMap"
OSM_SOURCE = "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0"
# Set once the background was offered: never offered again.
OSM_OFFERED_KEY = "eodispatch/osm_offered"


class EoDispatchPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.info: Optional[DaemonInfo] = None
        self.client = None
        self.stream = None
        self.jobs = None
        self.tasks = None
        self.catalog = None
        self.footprints = None
        self.autoloader = None
        self.provider = None
        self.dock = None
        self.action = None
        self.menu_actions = []  # "Browse services…", "Budgets…"
        self._started = False
        self._missed_bar = None
        self._osm_bar = None
        self._info_timer = None

    # --- QGIS entry points -------------------------------------------------------------

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing.provider import EoDispatchProvider

        if self.provider is None:
            self._ensure_core()
            self.provider = EoDispatchProvider(self.catalog)
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        from .gui.dock import EoDispatchDock

        self._ensure_core()
        self.initProcessing()
        self.dock = EoDispatchDock(
            self.client,
            self.stream,
            self.jobs,
            self.catalog,
            self.autoloader,
            canvas=self.iface.mapCanvas(),
            notify=self.notify,
            parent=self.iface.mainWindow(),
            tasks=self.tasks,
        )
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.action = QAction(QIcon(ICON), "EO Dispatch", self.iface.mainWindow())
        self.action.setObjectName("eodispatch_show_dock")
        self.action.setCheckable(True)
        self.action.setChecked(True)
        self.action.toggled.connect(self.dock.setUserVisible)
        self.dock.visibilityChanged.connect(self.action.setChecked)
        self.iface.addPluginToWebMenu(MENU, self.action)
        self.iface.addWebToolBarIcon(self.action)
        for name, text, slot in (("eodispatch_browse_services", "Browse services…", self.dock.open_browser),
                                 ("eodispatch_budgets", "Budgets…", self.dock.open_budgets)):
            action = QAction(text, self.iface.mainWindow())
            action.setObjectName(name)
            action.triggered.connect(lambda _c=False, f=slot: f())
            self.iface.addPluginToWebMenu(MENU, action)
            self.menu_actions.append(action)
        # QGIS builds its start-up project after plugins load: layers added now would
        # vanish. Start when QGIS is ready (or now, when the plugin is enabled later).
        self.iface.initializationCompleted.connect(self.start)
        if self.iface.mainWindow() is not None and self.iface.mainWindow().isVisible():
            QTimer.singleShot(0, self.start)
        project = QgsProject.instance()
        project.readProject.connect(self._project_changed)
        project.cleared.connect(self._project_changed)

    def unload(self):
        self._started = False
        if self._info_timer is not None:
            self._info_timer.stop()
            self._info_timer = None
        try:
            self.iface.initializationCompleted.disconnect(self.start)
        except (TypeError, RuntimeError):
            pass
        project = QgsProject.instance()
        for signal in (project.readProject, project.cleared):
            try:
                signal.disconnect(self._project_changed)
            except (TypeError, RuntimeError):
                pass
        if self.stream is not None:
            self.stream.stop()
        if self.autoloader is not None:
            self.autoloader.stop()
        if self.client is not None:
            self.client.abort_all()
        if self.footprints is not None:
            self.footprints.remove_layer()
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        for action in self.menu_actions:
            self.iface.removePluginWebMenu(MENU, action)
            action.deleteLater()
        self.menu_actions = []
        if self.action is not None:
            self.iface.removePluginWebMenu(MENU, self.action)
            self.iface.removeWebToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        for bar_widget in (self._missed_bar, self._osm_bar):
            if bar_widget is None:
                continue
            try:
                self.iface.messageBar().popWidget(bar_widget)
            except RuntimeError:
                pass
        self._missed_bar = self._osm_bar = None
        for obj in (self.tasks, self.jobs, self.stream, self.catalog, self.autoloader, self.client):
            if obj is not None:
                obj.deleteLater()
        self.tasks = self.jobs = self.stream = self.catalog = self.autoloader = self.client = None

    # --- wiring ----------------------------------------------------------------------

    def _ensure_core(self) -> None:
        if self.client is not None:
            return
        self.info = DaemonInfo.resolve()
        self.client = DaemonClient(self.info)
        self.stream = EventStream(self.client)
        self.jobs = JobModel(self.client, self.stream)
        self.tasks = TaskModel(self.client, self.stream, self.jobs)
        self.catalog = ServiceCatalog(self.client)
        self.catalog.changed.connect(self._services_changed)
        self.footprints = Footprints()
        self.jobs.job_changed.connect(self._job_changed)
        self.jobs.job_removed.connect(self.footprints.remove_job)
        self.autoloader = AutoLoader(self.info.results_dir, LoadedRegistry())
        self.autoloader.job_loaded.connect(self._job_loaded)
        self.autoloader.missed_found.connect(self._missed_found)
        self.autoloader.task_final.connect(
            lambda m: self.notify(f"The mosaic of “{m.group_name}” is complete", Qgis.MessageLevel.Success, 6)
        )
        self.autoloader.load_failed.connect(
            lambda folder, message: self.notify(f"Cannot load {folder}: {message}", Qgis.MessageLevel.Warning, 8)
        )

    def start(self) -> None:
        """Connects to the daemon and starts watching the results folder (once)."""
        if self._started or self.client is None:
            return
        self._started = True
        log(f"daemon at {self.info.base_url} ({self.info.origin_text}), results in {self.info.results_dir}")
        self.stream.start()
        self.autoloader.start()
        self.catalog.refresh()
        # A daemon (re)started elsewhere, config.toml or the environment may move the
        # daemon or the results folder.
        self._info_timer = QTimer()
        self._info_timer.setInterval(10000)
        self._info_timer.timeout.connect(self.refresh_info)
        self._info_timer.start()
        if self.dock is not None:
            self.dock.check_health()
        self.offer_background()

    def refresh_info(self) -> None:
        """Re-reads where the daemon and the results folder are; follows a change."""
        if self.client is None:
            return
        info = DaemonInfo.resolve()
        if info == self.info:
            return
        log(f"daemon settings changed: {self.info.base_url} -> {info.base_url}, results {info.results_dir}")
        self.info = info
        self.client.info = info
        self.autoloader.set_results_dir(info.results_dir)
        self.stream.reconnect_now()
        if self.dock is not None:
            self.dock.check_health()

    def _project_changed(self, *_args) -> None:
        if not self._started:
            return
        # After the new project is in place: refill the footprints from the jobs.
        QTimer.singleShot(0, self._refill_footprints)

    def _refill_footprints(self) -> None:
        if self.footprints is None:
            return
        for job in list(self.jobs.jobs.values()):
            self.footprints.update_job(job)

    def _job_changed(self, job) -> None:
        if self._started:
            self.footprints.update_job(job)
            if (job.get("results") or {}).get("state") == "ready":
                # Published: look now rather than at the next rescan (watchers can lag).
                self.autoloader.scan()

    def _services_changed(self) -> None:
        if self.provider is not None:
            self.provider.refreshAlgorithms()

    # --- messages ----------------------------------------------------------------------

    def notify(self, text: str, level=Qgis.MessageLevel.Info, duration: int = 5) -> None:
        """A message bar notice. The bar renders HTML with live links, and the text holds
        job titles, layer names and servers' messages: it is escaped."""
        log(text, level)
        try:
            self.iface.messageBar().pushMessage("EO Dispatch", esc(text), level, duration)
        except (AttributeError, RuntimeError):
            pass

    def _job_loaded(self, loaded) -> None:
        m = loaded.manifest
        names = ", ".join(layer.name() for layer in loaded.layers) or "no layers"
        extra = f"; {len(loaded.skipped)} file(s) not loadable (see the log)" if loaded.skipped else ""
        if loaded.unchecked:
            extra += f"; {len(loaded.unchecked)} opened by QGIS alone (the daemon's GDAL helper is missing)"
        self.notify(f"Results of “{m.group_name}” arrived: {names}{extra}", Qgis.MessageLevel.Success, 8)

    def offer_background(self) -> bool:
        """On a project without layers, offers (once: remembered in QgsSettings) to add
        the OpenStreetMap background, so that footprints and results have a map under
        them. ``True`` when offered now."""
        settings = QgsSettings()
        if settings.value(OSM_OFFERED_KEY, False, type=bool) or QgsProject.instance().mapLayers():
            return False
        settings.setValue(OSM_OFFERED_KEY, True)
        try:
            bar = self.iface.messageBar()
            widget = bar.createMessage(
                "EO Dispatch", "No layers yet: add an OpenStreetMap background?"
            )
        except (AttributeError, RuntimeError):
            return False
        button = QPushButton("Add OpenStreetMap", widget)
        button.setObjectName("eodispatch_add_osm")

        def add():
            self.add_background()
            try:
                bar.popWidget(widget)
            except RuntimeError:
                pass
            self._osm_bar = None

        button.clicked.connect(add)
        widget.layout().addWidget(button)
        self._osm_bar = widget
        bar.pushWidget(widget, Qgis.MessageLevel.Info, 0)
        return True

    @staticmethod
    def add_background() -> Optional[QgsRasterLayer]:
        """QGIS's OpenStreetMap XYZ tiles at the bottom of the layer tree."""
        layer = QgsRasterLayer(OSM_SOURCE, OSM_NAME, "wms")
        if not layer.isValid():
            log(f"the OpenStreetMap layer is not valid: {layer.error().summary()}", Qgis.MessageLevel.Warning)
            return None
        project = QgsProject.instance()
        project.addMapLayer(layer, False)
        root = project.layerTreeRoot()
        root.insertLayer(len(root.children()), layer)
        return layer

    def _missed_found(self, folders) -> None:
        bar = self.iface.messageBar()
        widget = bar.createMessage(
            "EO Dispatch", f"{len(folders)} result(s) arrived while QGIS was closed."
        )
        button = QPushButton("Load them", widget)

        def load():
            self.autoloader.load_missed()
            bar.popWidget(widget)

        button.clicked.connect(load)
        widget.layout().addWidget(button)
        self._missed_bar = widget
        bar.pushWidget(widget, Qgis.MessageLevel.Info, 0)
