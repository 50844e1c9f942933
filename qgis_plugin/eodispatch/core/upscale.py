"""Upscaling: from an area on the map to the daemon's grid cells (``POST /tiles``) and
an upscale task (``POST /upscale_tasks``), and back from a task to its folder.

- The **area** is any QGIS geometry (a canvas or drawn rectangle, a drawn polygon, the
  features of a layer) in any CRS; it is densified, transformed to EPSG:4326 and sent as
  one GeoJSON Polygon. ``POST /tiles`` takes a Polygon only: an area of several parts
  (features of a layer far apart) is sent as its convex hull, and the cells that do not
  touch the area itself are dropped here.
- The **cells** (WGS84 polygons, 20 or 250 km squares in the UTM zone of the area's
  centre) become the ``values`` of the task's dimension: the service's extent parameter,
  in the form that parameter takes (an openEO box, an OGC ``{bbox, crs}`` box, or the
  cell polygon for a polygon parameter).
- ``CellPreview`` draws the area and its cells as a temporary layer before submitting.
- ``find_task_folder`` finds a task's folder in ``results_dir`` (``<date>_<slug>_task<id>``
  with ``task.json``; the tiles' job folders are inside it).

No Qt widgets here.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsFillSymbol,
    QgsGeometry,
    QgsProject,
    QgsRendererCategory,
    QgsVectorLayer,
    QgsWkbTypes,
)

from . import params as P

#: The daemon's grids: wire name, label.
GRIDS: List[Tuple[str, str]] = [("20x20km", "20 km × 20 km"), ("250x250km", "250 km × 250 km")]
GRID_CODES = [code for code, _ in GRIDS]
#: Points added per edge before transforming a rectangle or polygon to EPSG:4326, so
#: that a projected straight edge stays where it was drawn.
DENSIFY = 16
PREVIEW_NAME = "Upscale cells (preview)"
PROP_PREVIEW = "eodispatch/upscale_preview"
TASK_MANIFEST = "task.json"
TASK_MANIFEST_VERSION = 1


class AreaError(ValueError):
    """An area that cannot be upscaled (empty, not a surface, no valid CRS)."""


def grid_label(code: str) -> str:
    return dict(GRIDS).get(code, code)


def area_to_wgs84(
    geometry: QgsGeometry,
    crs: QgsCoordinateReferenceSystem,
    context: Optional[QgsCoordinateTransformContext] = None,
) -> QgsGeometry:
    """A polygon geometry in ``crs`` as a polygon in EPSG:4326 (edges densified first)."""
    if geometry is None or geometry.isEmpty():
        raise AreaError("the area is empty")
    if geometry.type() != QgsWkbTypes.PolygonGeometry:
        raise AreaError("the area must be a polygon")
    if not crs.isValid():
        raise AreaError("the area has no valid coordinate reference system")
    out = QgsGeometry(geometry)
    target = QgsCoordinateReferenceSystem(P.WGS84)
    if crs != target:
        out = out.densifyByCount(DENSIFY)
        transform = QgsCoordinateTransform(crs, target, context or QgsProject.instance().transformContext())
        transform.setBallparkTransformsAreAppropriate(True)
        out.transform(transform)
    if not out.isGeosValid():
        out = out.makeValid()
    if out.isEmpty() or out.area() <= 0:
        raise AreaError("the area is empty")
    return out


def _rounded(coords: Any) -> Any:
    if isinstance(coords, list) and coords and isinstance(coords[0], (int, float)):
        return [round(float(c), 6) for c in coords[:2]]
    return [_rounded(c) for c in coords]


def geometry_geojson(geometry: QgsGeometry) -> Dict[str, Any]:
    """A geometry as a GeoJSON object (coordinates rounded to 6 decimals)."""
    data = json.loads(geometry.asJson(6))
    if "coordinates" in data:
        data["coordinates"] = _rounded(data["coordinates"])
    return data


def aoi_polygon(area: QgsGeometry) -> Dict[str, Any]:
    """The GeoJSON Polygon ``POST /tiles`` is sent for an area in EPSG:4326: the area
    itself when it is one polygon, else its convex hull (then filter the cells with
    ``cells_in``)."""
    parts = area.asGeometryCollection() if area.isMultipart() else [area]
    parts = [p for p in parts if not p.isEmpty()]
    one = parts[0] if len(parts) == 1 else area.convexHull()
    data = geometry_geojson(one)
    if data.get("type") == "MultiPolygon" and len(data.get("coordinates") or []) == 1:
        data = {"type": "Polygon", "coordinates": data["coordinates"][0]}
    if data.get("type") != "Polygon":
        data = geometry_geojson(area.convexHull())
    return data


def tiles_body(area: QgsGeometry, grid: str) -> Dict[str, Any]:
    """The ``POST /tiles`` body of an area in EPSG:4326."""
    return {"grid": grid, "aoi": aoi_polygon(area)}


def cells_of(answer: Any) -> List[Dict[str, Any]]:
    """The cells (GeoJSON Polygons) of a ``POST /tiles`` answer."""
    if not isinstance(answer, dict):
        return []
    if answer.get("type") == "GeometryCollection":
        items = answer.get("geometries") or []
    elif answer.get("type") == "FeatureCollection":
        items = [f.get("geometry") for f in answer.get("features") or [] if isinstance(f, dict)]
    else:
        items = []
    return [g for g in items if isinstance(g, dict) and g.get("type") == "Polygon"]


def cell_geometry(cell: Dict[str, Any]) -> QgsGeometry:
    rings = cell.get("coordinates") or []
    from qgis.core import QgsPointXY

    return QgsGeometry.fromPolygonXY([[QgsPointXY(float(x), float(y)) for x, y, *_ in ring] for ring in rings])


def cells_in(cells: List[Dict[str, Any]], area: QgsGeometry) -> List[Dict[str, Any]]:
    """The cells that touch the area itself (an area of several parts was sent as its
    convex hull)."""
    if not area.isMultipart():
        return list(cells)
    return [c for c in cells if cell_geometry(c).intersects(area)]


def dimension_values(spec: P.FieldSpec, cells: List[Dict[str, Any]]) -> List[Any]:
    """One value of the service's extent parameter per cell, in the form it takes."""
    out = []
    for cell in cells:
        if spec.kind == P.POLYGON:
            out.append(cell)
            continue
        bbox = P.bbox_of_value(cell)
        if bbox is None:
            continue
        out.append(P.extent_value(spec, {k: round(v, 6) for k, v in bbox.items()}))
    return out


def task_body(
    title: str,
    label: str,
    endpoint: str,
    application: str,
    parameters: Dict[str, Any],
    output_format: str,
    dimension: str,
    values: List[Any],
    namespace: Optional[str] = None,
) -> Dict[str, Any]:
    """A ``POST /upscale_tasks`` body: the job's body with ``dimension`` (the extent
    parameter's name and one value per cell) in place of that parameter."""
    body = P.job_body(title, label, endpoint, application, dict(parameters), output_format, namespace)
    body["parameters"].pop(dimension, None)
    body["dimension"] = {"name": dimension, "values": list(values)}
    return body


def task_bbox(jobs: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
    """The lon/lat box over every tile of a task."""
    boxes = [b for b in (P.job_bbox(j) for j in jobs) if b is not None]
    if not boxes:
        return None
    return {
        "west": min(b["west"] for b in boxes),
        "south": min(b["south"] for b in boxes),
        "east": max(b["east"] for b in boxes),
        "north": max(b["north"] for b in boxes),
    }


# --- the task folder ----------------------------------------------------------------


def read_task_json(folder: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads((Path(folder) / TASK_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("eodispatch_task_manifest") != TASK_MANIFEST_VERSION:
        return None
    return data


def find_task_folder(results_dir: Path, task_id: int, tiles: Optional[List[Dict[str, Any]]] = None,
                     title: Optional[str] = None) -> Optional[Path]:
    """The folder of task ``task_id``: the parent of a delivered tile's folder, else the
    folder of ``results_dir`` whose ``task.json`` names the task (and its title, when
    given: two daemons may share a results folder)."""
    for job in tiles or []:
        d = (job.get("results") or {}).get("dir")
        if d:
            parent = Path(d).parent
            data = read_task_json(parent)
            if data is not None and (data.get("task") or {}).get("id") == task_id:
                return parent
    try:
        entries = list(Path(results_dir).iterdir())
    except OSError:
        return None
    entries.sort(key=lambda p: 0 if p.name.endswith(f"_task{task_id}") else 1)
    for folder in entries:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        data = read_task_json(folder)
        task = (data or {}).get("task") or {}
        if task.get("id") == task_id and (title is None or task.get("title") == title):
            return folder
    return None


# --- the preview layer ------------------------------------------------------------------


def _preview_renderer() -> QgsCategorizedSymbolRenderer:
    area = QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "#e31a1c", "outline_width": "0.8", "outline_style": "dash"})
    cell = QgsFillSymbol.createSimple(
        {"color": "31,120,180,40", "outline_color": "#1f78b4", "outline_width": "0.5"})
    return QgsCategorizedSymbolRenderer("kind", [
        QgsRendererCategory("cell", cell, "grid cell"),
        QgsRendererCategory("area", area, "area"),
    ])


class CellPreview:
    """The temporary layer of the area and its cells, before submitting (GUI thread)."""

    def __init__(self, project: Optional[QgsProject] = None):
        self._project = project
        self._layer: Optional[QgsVectorLayer] = None

    @property
    def project(self) -> QgsProject:
        return self._project or QgsProject.instance()

    def layer(self) -> Optional[QgsVectorLayer]:
        layer = self._layer
        if layer is None:
            return None
        try:
            if self.project.mapLayer(layer.id()) is None:
                self._layer = None
        except RuntimeError:
            self._layer = None
        return self._layer

    def show(self, area: Optional[QgsGeometry], cells: List[Dict[str, Any]]) -> QgsVectorLayer:
        from .footprints import _field

        layer = self.layer()
        if layer is None:
            layer = QgsVectorLayer("Polygon?crs=EPSG:4326", PREVIEW_NAME, "memory")
            layer.dataProvider().addAttributes([_field("kind", str), _field("cell", int)])
            layer.updateFields()
            layer.setRenderer(_preview_renderer())
            layer.setCustomProperty(PROP_PREVIEW, True)
            layer.setCustomProperty("skipMemoryLayersCheck", 1)
            crs = self.project.crs()
            first = not self.project.mapLayers()
            # On top of the layer tree: drawn over everything while the area is chosen.
            self.project.addMapLayer(layer, False)
            self.project.layerTreeRoot().insertLayer(0, layer)
            if first and crs.isValid() and self.project.crs() != crs:
                self.project.setCrs(crs)
            self._layer = layer
        provider = layer.dataProvider()
        provider.truncate()
        features = []
        for i, cell in enumerate(cells):
            f = QgsFeature(layer.fields())
            f.setAttributes(["cell", i + 1])
            f.setGeometry(cell_geometry(cell))
            features.append(f)
        if area is not None and not area.isEmpty():
            f = QgsFeature(layer.fields())
            f.setAttributes(["area", None])
            f.setGeometry(area)
            features.append(f)
        provider.addFeatures(features)
        layer.updateExtents()
        layer.triggerRepaint()
        return layer

    def cell_count(self) -> int:
        layer = self.layer()
        if layer is None:
            return 0
        return sum(1 for f in layer.getFeatures() if f["kind"] == "cell")

    def clear(self) -> None:
        layer = self.layer()
        if layer is not None:
            self.project.removeMapLayer(layer.id())
        self._layer = None
