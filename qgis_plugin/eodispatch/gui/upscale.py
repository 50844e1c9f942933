"""The dock's "Upscale over a grid" panel: an area (map canvas, a drawn rectangle or
polygon, the features of a layer), a grid (20 or 250 km), and the daemon's cells for
them (``POST /tiles``, asked as soon as the area or the grid changes) drawn on the map
as a temporary layer with their count, before submitting."""

from typing import Any, Dict, List, Optional

from qgis.core import QgsGeometry, QgsMapLayerProxyModel, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapLayerComboBox, QgsMapTool, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ..core import upscale as U
from ..core.client import ApiResult, DaemonClient
from ..core.safe import plain_label
from .form import ERROR_STYLE


class PolygonTool(QgsMapTool):
    """Draws a polygon on the canvas: a left click adds a corner, a right click (or a
    double click) closes it, Backspace takes the last corner back, Escape gives up."""

    drawn = pyqtSignal(object)  # QgsGeometry in the canvas CRS
    canceled = pyqtSignal()

    def __init__(self, canvas):
        super().__init__(canvas)
        self.points: List[QgsPointXY] = []
        self._band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self._band.setColor(QColor(227, 26, 28, 60))
        self._band.setStrokeColor(QColor("#e31a1c"))
        self._band.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def _show(self, moving: Optional[QgsPointXY] = None) -> None:
        pts = self.points + ([moving] if moving is not None else [])
        self._band.reset(QgsWkbTypes.PolygonGeometry)
        for i, p in enumerate(pts):
            self._band.addPoint(p, i == len(pts) - 1)

    def add_point(self, point: QgsPointXY) -> None:
        if self.points and self.points[-1] == point:
            return  # the two clicks of a double click
        self.points.append(QgsPointXY(point))
        self._show()

    def finish(self) -> Optional[QgsGeometry]:
        """Closes the polygon (three corners at least); emits ``drawn``."""
        if len(self.points) < 3:
            return None
        geom = QgsGeometry.fromPolygonXY([self.points + [self.points[0]]])
        self.reset()
        self.drawn.emit(geom)
        return geom

    def reset(self) -> None:
        self.points = []
        self._band.reset(QgsWkbTypes.PolygonGeometry)

    def canvasMoveEvent(self, e):  # noqa: N802 (Qt API)
        if self.points:
            self._show(e.mapPoint())

    def canvasReleaseEvent(self, e):  # noqa: N802
        if e.button() == Qt.MouseButton.LeftButton:
            self.add_point(e.mapPoint())
        elif e.button() == Qt.MouseButton.RightButton:
            self.finish()

    def canvasDoubleClickEvent(self, e):  # noqa: N802
        self.finish()

    def keyPressEvent(self, e):  # noqa: N802
        if e.key() == Qt.Key.Key_Escape:
            self.reset()
            self.canceled.emit()
        elif e.key() == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            self._show()

    def deactivate(self):
        self._band.reset(QgsWkbTypes.PolygonGeometry)
        super().deactivate()


class UpscalePanel(QWidget):
    """The area, the grid and the cells of an upscale task (GUI thread)."""

    cells_changed = pyqtSignal()

    def __init__(self, client: DaemonClient, canvas=None, parent=None):
        super().__init__(parent)
        self.client = client
        self.canvas = canvas
        self.preview = U.CellPreview()
        self.area: Optional[QgsGeometry] = None  # EPSG:4326
        self.area_text = ""
        self.cells: List[Dict[str, Any]] = []
        self.error = ""
        self._asked = 0  # answers of older requests are dropped
        self.busy = False  # the daemon is asked for the cells
        self._tool = None
        self._previous_tool = None
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        grid.addWidget(QLabel("Area"), 0, 0)
        buttons = QHBoxLayout()
        self.canvas_button = QPushButton("Map canvas", self)
        self.canvas_button.setObjectName("upscale_canvas")
        self.canvas_button.setToolTip("The area is the current map extent")
        self.canvas_button.clicked.connect(self.area_from_canvas)
        self.rect_button = QPushButton("Rectangle", self)
        self.rect_button.setObjectName("upscale_rectangle")
        self.rect_button.setToolTip("Draw a rectangle on the map")
        self.rect_button.setCheckable(True)
        self.rect_button.clicked.connect(self._toggle_rect)
        self.polygon_button = QPushButton("Polygon", self)
        self.polygon_button.setObjectName("upscale_polygon")
        self.polygon_button.setToolTip("Draw a polygon on the map: click its corners, right-click to close it")
        self.polygon_button.setCheckable(True)
        self.polygon_button.clicked.connect(self._toggle_polygon)
        for b in (self.canvas_button, self.rect_button, self.polygon_button):
            buttons.addWidget(b)
            b.setEnabled(canvas is not None)
        grid.addLayout(buttons, 0, 1)
        layer_row = QHBoxLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setObjectName("upscale_layer")
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.layer_combo.setExceptedLayerList([])
        self.selected_only = QCheckBox("selected", self)
        self.selected_only.setToolTip("Only the layer's selected features")
        self.layer_button = QPushButton("Features", self)
        self.layer_button.setObjectName("upscale_features")
        self.layer_button.setToolTip("The area is the layer's (selected) polygons")
        self.layer_button.clicked.connect(lambda: self.area_from_layer(self.layer_combo.currentLayer(),
                                                                       self.selected_only.isChecked()))
        layer_row.addWidget(self.layer_combo, 1)
        layer_row.addWidget(self.selected_only)
        layer_row.addWidget(self.layer_button)
        grid.addLayout(layer_row, 1, 1)
        grid.addWidget(QLabel("Grid"), 2, 0)
        self.grid_combo = QComboBox(self)
        self.grid_combo.setObjectName("upscale_grid")
        for code, label in U.GRIDS:
            self.grid_combo.addItem(label, code)
        self.grid_combo.currentIndexChanged.connect(lambda _i: self.ask_cells())
        grid.addWidget(self.grid_combo, 2, 1)
        self.status = plain_label(QLabel("Pick an area: the cells are shown on the map.", self))
        self.status.setObjectName("upscale_status")
        self.status.setWordWrap(True)
        grid.addWidget(self.status, 3, 0, 1, 2)

    # --- the area ------------------------------------------------------------------------

    @property
    def grid(self) -> str:
        return str(self.grid_combo.currentData())

    def set_grid(self, code: str) -> None:
        i = self.grid_combo.findData(code)
        if i >= 0:
            self.grid_combo.setCurrentIndex(i)

    def set_area(self, geometry: QgsGeometry, crs, how: str) -> bool:
        """The area (in ``crs``); asks the daemon for its cells."""
        try:
            self.area = U.area_to_wgs84(geometry, crs)
        except (U.AreaError, ValueError) as e:
            self._show_error(f"Not an area: {e}")
            return False
        self.area_text = how
        self.ask_cells()
        return True

    def area_from_bbox(self, bbox: Dict[str, float], how: str = "extent") -> bool:
        from qgis.core import QgsCoordinateReferenceSystem

        rect = QgsRectangle(bbox["west"], bbox["south"], bbox["east"], bbox["north"])
        return self.set_area(QgsGeometry.fromRect(rect), QgsCoordinateReferenceSystem(U.P.WGS84), how)

    def area_from_canvas(self) -> None:
        if self.canvas is not None:
            self.set_area(QgsGeometry.fromRect(self.canvas.extent()), self.canvas.mapSettings().destinationCrs(),
                          "the map canvas")

    def area_from_layer(self, layer, selected_only: bool = False) -> bool:
        if layer is None:
            self._show_error("Pick a polygon layer")
            return False
        features = layer.selectedFeatures() if selected_only else layer.getFeatures()
        geoms = [f.geometry() for f in features if f.hasGeometry() and not f.geometry().isEmpty()]
        if not geoms:
            self._show_error(f"{layer.name()}: no {'selected ' if selected_only else ''}polygon")
            return False
        union = QgsGeometry.unaryUnion(geoms)
        return self.set_area(union, layer.crs(), f"{len(geoms)} feature(s) of {layer.name()}")

    def _toggle_rect(self, checked: bool) -> None:
        if checked:
            self.polygon_button.setChecked(False)
            tool = QgsMapToolExtent(self.canvas)
            tool.extentChanged.connect(self._rect_drawn)
            self._use_tool(tool)
        else:
            self.stop_drawing()

    def _rect_drawn(self, rect) -> None:
        self.stop_drawing()
        if not rect.isEmpty():
            self.set_area(QgsGeometry.fromRect(rect), self.canvas.mapSettings().destinationCrs(), "a drawn rectangle")

    def _toggle_polygon(self, checked: bool) -> None:
        if checked:
            self.rect_button.setChecked(False)
            tool = PolygonTool(self.canvas)
            tool.drawn.connect(self._polygon_drawn)
            tool.canceled.connect(self.stop_drawing)
            self._use_tool(tool)
            self.status.setStyleSheet("")
            self.status.setText("Click the corners on the map; right-click to close the polygon.")
        else:
            self.stop_drawing()

    def _polygon_drawn(self, geometry) -> None:
        crs = self.canvas.mapSettings().destinationCrs()
        self.stop_drawing()
        self.set_area(geometry, crs, "a drawn polygon")

    @property
    def tool(self):
        return self._tool

    def _use_tool(self, tool) -> None:
        self.stop_drawing(keep_buttons=True)
        self._previous_tool = self.canvas.mapTool()
        self._tool = tool
        self.canvas.setMapTool(tool)

    def stop_drawing(self, keep_buttons: bool = False) -> None:
        if not keep_buttons:
            self.rect_button.setChecked(False)
            self.polygon_button.setChecked(False)
        tool, self._tool = self._tool, None
        if tool is not None and self.canvas is not None:
            if self.canvas.mapTool() is tool:
                if self._previous_tool is not None:
                    self.canvas.setMapTool(self._previous_tool)
                else:
                    self.canvas.unsetMapTool(tool)
            tool.deleteLater()

    # --- the cells -----------------------------------------------------------------------

    def ask_cells(self) -> None:
        if self.area is None:
            return
        self._asked += 1
        asked = self._asked
        self.busy = True
        self.status.setStyleSheet("")
        self.status.setText(f"Asking the daemon for the {U.grid_label(self.grid)} cells of {self.area_text}…")
        area = self.area
        self.client.post("/tiles", U.tiles_body(area, self.grid), lambda r: self._got_cells(asked, area, r))

    def _got_cells(self, asked: int, area: QgsGeometry, result: ApiResult) -> None:
        if asked != self._asked:
            return
        self.busy = False
        if not result.ok:
            self.cells = []
            self.preview.show(area, [])
            detail = "; ".join(f"{e.get('name')}: {e.get('reason')}" for e in result.error.errors)
            self._show_error(f"No cells: {result.error.message}" + (f" ({detail})" if detail else ""))
            self.cells_changed.emit()
            return
        self.cells = U.cells_in(U.cells_of(result.data), area)
        self.error = ""
        self.preview.show(area, self.cells)
        n = len(self.cells)
        self.status.setStyleSheet("")
        self.status.setText(f"{n} cell{'s' if n != 1 else ''} of {U.grid_label(self.grid)} over {self.area_text} "
                            f"(on the map as “{U.PREVIEW_NAME}”): one job each.")
        self.cells_changed.emit()

    def _show_error(self, text: str) -> None:
        self.error = text
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(text)

    def clear(self) -> None:
        """Forgets the area and its cells, and removes the preview layer."""
        self._asked += 1
        self.busy = False
        self.area = None
        self.cells = []
        self.preview.clear()
        self.status.setStyleSheet("")
        self.status.setText("Pick an area: the cells are shown on the map.")
        self.cells_changed.emit()

    def cleanup(self) -> None:
        self.stop_drawing()
        self.preview.clear()
