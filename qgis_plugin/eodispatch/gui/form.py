"""The parameter form generated from a service's ``/params`` descriptors."""

import json
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsDateEdit, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import QDate, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDateTimeEdit,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core import params as P
from ..core.safe import plain_label, plain_tip

ERROR_STYLE = "color: #c0392b;"


class ExtentWidget(QWidget):
    """West/south/east/north in EPSG:4326, set from the map canvas, a rectangle drawn on
    the map, or a layer's extent (each transformed from its CRS)."""

    changed = pyqtSignal()

    def __init__(self, canvas=None, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self._tool = None
        self._previous_tool = None
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.spins: Dict[str, QDoubleSpinBox] = {}
        for i, (key, lo, hi) in enumerate(
            [("west", -180, 180), ("south", -90, 90), ("east", -180, 180), ("north", -90, 90)]
        ):
            spin = QDoubleSpinBox(self)
            spin.setRange(lo, hi)
            spin.setDecimals(6)
            spin.setSingleStep(0.01)
            # Room for every digit ("-180.000000"): in a narrow dock the row puts its
            # label above the coordinates rather than cutting them off.
            spin.setMinimumWidth(spin.fontMetrics().boundingRect("-180.000000").width() + 14)
            spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            spin.setObjectName(f"extent_{key}")
            spin.valueChanged.connect(lambda _v: self.changed.emit())
            self.spins[key] = spin
            grid.addWidget(QLabel(key.capitalize()), i // 2, (i % 2) * 2)
            grid.addWidget(spin, i // 2, (i % 2) * 2 + 1)
        buttons = QHBoxLayout()
        self.canvas_button = QPushButton("Map canvas", self)
        self.canvas_button.setToolTip("Use the current map extent")
        self.canvas_button.clicked.connect(self.from_canvas)
        self.draw_button = QPushButton("Draw", self)
        self.draw_button.setToolTip("Draw a rectangle on the map")
        self.draw_button.setCheckable(True)
        self.draw_button.clicked.connect(self._toggle_draw)
        buttons.addWidget(self.canvas_button)
        buttons.addWidget(self.draw_button)
        grid.addLayout(buttons, 2, 0, 1, 4)
        layer_row = QHBoxLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.HasGeometry | QgsMapLayerProxyModel.Filter.RasterLayer)
        self.layer_button = QPushButton("Layer extent", self)
        self.layer_button.clicked.connect(self.from_layer)
        layer_row.addWidget(self.layer_combo, 1)
        layer_row.addWidget(self.layer_button)
        grid.addLayout(layer_row, 3, 0, 1, 4)
        has_canvas = canvas is not None
        self.canvas_button.setEnabled(has_canvas)
        self.draw_button.setEnabled(has_canvas)

    def value(self) -> Optional[Dict[str, float]]:
        v = {k: round(s.value(), 6) for k, s in self.spins.items()}
        if v["west"] >= v["east"] or v["south"] >= v["north"]:
            if all(x == 0 for x in v.values()):
                return None
        return v

    def set_value(self, bbox: Optional[Dict[str, float]]) -> None:
        if not bbox:
            return
        for k, s in self.spins.items():
            if isinstance(bbox.get(k), (int, float)):
                s.setValue(float(bbox[k]))

    def set_rect(self, rect, crs) -> None:
        self.set_value(P.extent_to_wgs84(rect, crs))

    def from_canvas(self) -> None:
        if self.canvas is None:
            return
        self.set_rect(self.canvas.extent(), self.canvas.mapSettings().destinationCrs())

    def from_layer(self) -> None:
        layer = self.layer_combo.currentLayer()
        if layer is not None:
            self.set_rect(layer.extent(), layer.crs())

    def _toggle_draw(self, checked: bool) -> None:
        if self.canvas is None:
            return
        if checked:
            self._previous_tool = self.canvas.mapTool()
            self._tool = QgsMapToolExtent(self.canvas)
            self._tool.extentChanged.connect(self._drawn)
            self.canvas.setMapTool(self._tool)
        else:
            self._stop_draw()

    def _drawn(self, rect) -> None:
        if not rect.isEmpty():
            self.set_rect(rect, self.canvas.mapSettings().destinationCrs())
        self._stop_draw()

    def _stop_draw(self) -> None:
        self.draw_button.setChecked(False)
        if self._tool is not None:
            if self.canvas.mapTool() is self._tool:
                if self._previous_tool is not None:
                    self.canvas.setMapTool(self._previous_tool)
                else:
                    self.canvas.unsetMapTool(self._tool)
            self._tool.deleteLater()
            self._tool = None

    def cleanup(self) -> None:
        self._stop_draw()


class DateRangeWidget(QWidget):
    def __init__(self, start: str, end: str, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.start = _date_edit(start, self)
        self.end = _date_edit(end, self)
        row.addWidget(self.start)
        row.addWidget(QLabel("to"))
        row.addWidget(self.end)

    def value(self) -> List[str]:
        return [self.start.date().toString("yyyy-MM-dd"), self.end.date().toString("yyyy-MM-dd")]


def _date_edit(iso: Optional[str], parent) -> QDateEdit:
    edit = QDateEdit(parent)
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    d = QDate.fromString(iso or "", "yyyy-MM-dd")
    edit.setDate(d if d.isValid() else QDate.currentDate())
    return edit


def _optional_date_edit(parent) -> QgsDateEdit:
    """A date that may stay empty (an optional date without default: not sent)."""
    edit = QgsDateEdit(parent)
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setAllowNull(True)
    edit.setNullRepresentation("not given")
    edit.clear()
    return edit


def _range_text(spec: P.FieldSpec) -> str:
    lo, hi = spec.minimum, spec.maximum
    if lo is None and hi is None:
        return ""
    fmt = (lambda x: str(int(x))) if spec.kind == P.INTEGER else (lambda x: f"{x:g}")
    if lo is not None and hi is not None:
        return f"{fmt(lo)} … {fmt(hi)}"
    return f"≥ {fmt(lo)}" if lo is not None else f"≤ {fmt(hi)}"


class ParameterForm(QWidget):
    """One row per parameter (widget by type, default filled in, description as tooltip)
    with an error label under it for the daemon's validation messages.

    Optional parameters without a default are left out of the job unless the user gives
    them (empty number or text, grey check box, "not given" date or choice).

    ``changed`` is emitted when any value changes (the live cost estimate listens)."""

    changed = pyqtSignal()

    def __init__(self, canvas=None, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self.specs: List[P.FieldSpec] = []
        self.editors: Dict[str, QWidget] = {}
        self.error_labels: Dict[str, QLabel] = {}
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        # Narrow docks: labels above their field rather than a horizontal scroll bar.
        self.layout_.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)

    def clear(self) -> None:
        for e in self.editors.values():
            if isinstance(e, ExtentWidget):
                e.cleanup()
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.specs, self.editors, self.error_labels = [], {}, {}

    def build(self, descriptors: List[Dict[str, Any]]) -> None:
        self.clear()
        self.specs = P.field_specs(descriptors)
        for spec in self.specs:
            editor = self._editor(spec)
            editor.setObjectName(f"param_{spec.name}")
            rng = _range_text(spec) if spec.kind in (P.INTEGER, P.DOUBLE) else ""
            editor.setToolTip(plain_tip(spec.description + (f"\n({rng})" if rng else "")))
            box = QWidget(self)
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 0, 0, 0)
            col.addWidget(editor)
            err = plain_label(QLabel(box))
            err.setObjectName(f"error_{spec.name}")
            err.setStyleSheet(ERROR_STYLE)
            err.setWordWrap(True)
            err.hide()
            col.addWidget(err)
            # Titles and descriptions come from the service: plain text.
            label = plain_label(QLabel(), spec.label + ("" if spec.optional else " *"))
            label.setToolTip(plain_tip(spec.description))
            self.layout_.addRow(label, box)
            self.editors[spec.name] = editor
            self.error_labels[spec.name] = err
            self._watch(editor)
        self.changed.emit()

    def _watch(self, editor: QWidget) -> None:
        """Connects the editor's change signal to ``changed``."""
        emit = self.changed.emit
        if isinstance(editor, ExtentWidget):
            editor.changed.connect(emit)
        elif isinstance(editor, DateRangeWidget):
            editor.start.dateChanged.connect(lambda _d: emit())
            editor.end.dateChanged.connect(lambda _d: emit())
        elif isinstance(editor, QDateTimeEdit):  # QDateEdit, QgsDateEdit
            editor.dateChanged.connect(lambda _d: emit())
        elif isinstance(editor, QCheckBox):
            editor.stateChanged.connect(lambda _s: emit())
        elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
            editor.valueChanged.connect(lambda _v: emit())
        elif isinstance(editor, QComboBox):
            editor.currentIndexChanged.connect(lambda _i: emit())
        elif isinstance(editor, (QLineEdit, QPlainTextEdit)):
            editor.textChanged.connect(lambda *_a: emit())

    def set_values(self, values: Dict[str, Any]) -> List[str]:
        """Puts ``values`` (e.g. a catalogue service's defaults) into the fields of the
        same name; values a field cannot take are skipped. Returns the names set."""
        done = []
        for spec in self.specs:
            if spec.name not in values or values[spec.name] is None:
                continue
            try:
                if self._set_value(spec, self.editors[spec.name], values[spec.name]):
                    done.append(spec.name)
            except (TypeError, ValueError):
                continue
        return done

    @staticmethod
    def _set_value(spec: P.FieldSpec, w: QWidget, v: Any) -> bool:
        if isinstance(w, ExtentWidget):
            bbox = P.bbox_of_value(v) if isinstance(v, dict) else None
            if bbox is None and isinstance(v, list) and len(v) == 4:
                bbox = dict(zip(("west", "south", "east", "north"), map(float, v)))
            if not bbox:
                return False
            w.set_value(bbox)
            return True
        if isinstance(w, DateRangeWidget):
            if not isinstance(v, list) or len(v) != 2:
                return False
            start, end = (QDate.fromString(str(x or "")[:10], "yyyy-MM-dd") for x in v)
            if not (start.isValid() and end.isValid()):
                return False
            w.start.setDate(start)
            w.end.setDate(end)
            return True
        if isinstance(w, QDateTimeEdit):
            d = QDate.fromString(str(v)[:10], "yyyy-MM-dd")
            if not d.isValid():
                return False
            w.setDate(d)
            return True
        if isinstance(w, QCheckBox):
            if not isinstance(v, bool):
                return False
            w.setCheckState(Qt.CheckState.Checked if v else Qt.CheckState.Unchecked)
            return True
        if isinstance(w, QSpinBox):
            w.setValue(int(v))
            return True
        if isinstance(w, QDoubleSpinBox):
            w.setValue(float(v))
            return True
        if isinstance(w, QComboBox):
            i = w.findData(v)
            if i < 0:
                i = w.findText(str(v))
            if i < 0:
                return False
            w.setCurrentIndex(i)
            return True
        if isinstance(w, QPlainTextEdit):
            w.setPlainText(v if isinstance(v, str) else json.dumps(v))
            return True
        if isinstance(w, QLineEdit):
            w.setText(", ".join(map(str, v)) if isinstance(v, list) else str(v))
            return True
        return False

    def _editor(self, spec: P.FieldSpec) -> QWidget:
        d = spec.default
        if spec.kind == P.EXTENT or spec.kind == P.POLYGON:
            w = ExtentWidget(self.canvas, self)
            if isinstance(d, dict) and P.bbox_of_value(d):
                w.set_value(P.bbox_of_value(d))
            if self.canvas is not None and not self.canvas.extent().isEmpty():
                try:
                    w.from_canvas()
                except ValueError:
                    pass
            return w
        if spec.kind == P.DATE_RANGE:
            start, end = P.default_date_range(spec)
            return DateRangeWidget(start, end, self)
        if spec.kind == P.DATE:
            if spec.optional and not P.parse_date(d):
                return _optional_date_edit(self)
            return _date_edit(str(d)[:10] if d else None, self)
        if spec.kind == P.BOOLEAN:
            w = QCheckBox(self)
            if spec.optional and d is None:
                # Three states: not given (the service decides), true, false.
                w.setTristate(True)
                w.setCheckState(Qt.CheckState.PartiallyChecked)
                w.setToolTip("grey: not given")
            else:
                w.setChecked(bool(d))
            return w
        if spec.kind in (P.INTEGER, P.DOUBLE) and spec.optional and d is None:
            # No default to show: an empty field means "not given".
            w = QLineEdit(self)
            rng = _range_text(spec)
            w.setPlaceholderText(f"optional ({rng})" if rng else "optional")
            return w
        lo, hi = spec.minimum, spec.maximum
        if spec.kind == P.INTEGER:
            w = QSpinBox(self)
            # The schema's range (the daemon checks it again).
            w.setRange(int(lo) if lo is not None else -2_000_000_000, int(hi) if hi is not None else 2_000_000_000)
            if isinstance(d, (int, float)):
                w.setValue(int(d))
            return w
        if spec.kind == P.DOUBLE:
            w = QDoubleSpinBox(self)
            w.setDecimals(6)
            w.setRange(lo if lo is not None else -1e12, hi if hi is not None else 1e12)
            if isinstance(d, (int, float)):
                w.setValue(float(d))
            return w
        if spec.kind == P.ENUM:
            w = QComboBox(self)
            if spec.optional and d is None:
                w.addItem("(not given)", None)
            for o in spec.options:
                w.addItem(str(o), o)
            if d is not None:
                i = w.findText(str(d))
                if i >= 0:
                    w.setCurrentIndex(i)
            return w
        if spec.kind == P.JSON:
            w = QPlainTextEdit(self)
            w.setMaximumHeight(80)
            if d is not None:
                w.setPlainText(json.dumps(d))
            return w
        if spec.kind == P.UNSUPPORTED:
            w = QLabel("(a data cube: cannot be given from a form)", self)
            w.setEnabled(False)
            return w
        w = QLineEdit(self)
        if isinstance(d, list):
            w.setText(", ".join(map(str, d)))
        elif d is not None:
            w.setText(str(d))
        if spec.kind == P.LIST:
            w.setPlaceholderText("comma-separated values")
        return w

    def set_field_visible(self, name: str, visible: bool) -> None:
        """Shows or hides a parameter's row (its label too)."""
        editor = self.editors.get(name)
        if editor is None:
            return
        box = editor.parentWidget()
        label = self.layout_.labelForField(box)
        for w in (box, label):
            if w is not None:
                w.setVisible(visible)

    def extent_widget(self) -> Optional[ExtentWidget]:
        spec = P.extent_field(self.specs)
        return self.editors.get(spec.name) if spec else None  # type: ignore[return-value]

    def values(self) -> Tuple[Dict[str, Any], List[Dict[str, str]]]:
        """The job parameters, and the form's own errors ({name, reason})."""
        out: Dict[str, Any] = {}
        errors: List[Dict[str, str]] = []
        for spec in self.specs:
            w = self.editors[spec.name]
            try:
                if spec.kind in (P.EXTENT, P.POLYGON):
                    v = w.value()
                    if v is None:
                        if spec.required:
                            errors.append({"name": spec.name, "reason": "is required: set an extent"})
                        continue
                    out[spec.name] = P.extent_value(spec, v)
                elif spec.kind == P.DATE_RANGE:
                    out[spec.name] = w.value()
                elif spec.kind == P.DATE:
                    if isinstance(w, QgsDateEdit) and w.isNull():
                        continue
                    out[spec.name] = P.date_value(spec, w.date().toString("yyyy-MM-dd"))
                elif spec.kind == P.BOOLEAN:
                    if w.checkState() != Qt.CheckState.PartiallyChecked:
                        out[spec.name] = w.isChecked()
                elif spec.kind in (P.INTEGER, P.DOUBLE) and isinstance(w, QLineEdit):
                    text = w.text().strip()
                    if text:
                        out[spec.name] = int(text) if spec.kind == P.INTEGER else float(text)
                elif spec.kind in (P.INTEGER, P.DOUBLE):
                    out[spec.name] = w.value()
                elif spec.kind == P.ENUM:
                    if w.currentData() is None and spec.optional:
                        continue
                    out[spec.name] = w.currentData()
                elif spec.kind == P.JSON:
                    v = P.parse_json(w.toPlainText())
                    if v is not None:
                        out[spec.name] = v
                elif spec.kind == P.UNSUPPORTED:
                    continue
                else:
                    text = w.text().strip()
                    if not text and spec.optional:
                        continue
                    out[spec.name] = P.parse_list(spec.param_type, text) if spec.kind == P.LIST else text
            except ValueError as e:
                errors.append({"name": spec.name, "reason": f"invalid value ({e})"})
        return out, errors

    def show_errors(self, errors: List[Dict[str, str]]) -> List[Dict[str, str]]:
        """Shows each error under its field; returns those naming no field of the form."""
        self.clear_errors()
        rest = []
        names = [s.name for s in self.specs]
        per_field: Dict[str, List[str]] = {}
        for e in errors:
            name = str(e.get("name", ""))
            field = P.field_of_error(name, names) if name.startswith("parameters.") else (name if name in names else "")
            if field in self.error_labels:
                detail = name[len("parameters." + field):].lstrip(".")
                per_field.setdefault(field, []).append((f"{detail}: " if detail else "") + str(e.get("reason", "")))
            else:
                rest.append(e)
        for field, reasons in per_field.items():
            label = self.error_labels[field]
            label.setText("\n".join(reasons))
            label.show()
        return rest

    def clear_errors(self) -> None:
        for label in self.error_labels.values():
            label.clear()
            label.hide()
