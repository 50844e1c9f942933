"""From the daemon's ``POST /params`` descriptors to form fields, and form values back
to job parameters. Shared by the dock's form and the Processing algorithms.

Descriptor (daemon ``ParamDescriptor``): ``{name, type, optional, description, default,
options, schema}``; types ``datetime, date-interval, bounding-box, polygon, boolean,
integer, double, string, array-string, array-double, array-integer, datacube, object,
json``.

Service kinds (``label``): ``openeo`` (backend + UDP URL) and ``ogc_api_process`` (OGC API
Processes server + process id or process URL, optional namespace = the path before
``/processes``). Their forms are built the same way; only bounding boxes differ in what
is sent: ``{west, south, east, north}`` for openEO, the OGC form ``{"bbox": [w, s, e, n],
"crs": ".../CRS84"}`` for an input whose schema says ``format: ogc-bbox`` (or refers to
the OGC ``bbox.yaml``).

Extents: every extent the user picks (canvas, drawn rectangle, layer) is transformed to
EPSG:4326 with ``QgsCoordinateTransform`` (the whole rectangle's boundary is densified,
so a projected extent gives the true enclosing lon/lat box) and rounded to 6 decimals.

No Qt widgets here.
"""

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsProject,
    QgsRectangle,
)

WGS84 = "EPSG:4326"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

# Service kinds: the ``label`` of /services, /params and /unit_jobs.
OPENEO = "openeo"
OGC = "ogc_api_process"
KINDS = [(OPENEO, "openEO"), (OGC, "OGC API Processes")]

# Field kinds of the form (one widget type each).
EXTENT = "extent"
POLYGON = "polygon"
DATE_RANGE = "date_range"
DATE = "date"
BOOLEAN = "boolean"
INTEGER = "integer"
DOUBLE = "double"
ENUM = "enum"
STRING = "string"
LIST = "list"
JSON = "json"
UNSUPPORTED = "unsupported"

_KINDS = {
    "bounding-box": EXTENT,
    "polygon": POLYGON,
    "date-interval": DATE_RANGE,
    "datetime": DATE,
    "boolean": BOOLEAN,
    "integer": INTEGER,
    "double": DOUBLE,
    "string": STRING,
    "array-string": LIST,
    "array-double": LIST,
    "array-integer": LIST,
    "object": JSON,
    "json": JSON,
    "datacube": UNSUPPORTED,
}

FORMATS = [("gtiff", "GeoTIFF"), ("netcdf", "netCDF"), ("geojson", "GeoJSON"), ("json", "JSON")]


@dataclass
class FieldSpec:
    """One form field."""

    name: str
    kind: str
    param_type: str
    optional: bool
    description: str = ""
    default: Any = None
    options: List[Any] = field(default_factory=list)
    schema: Any = None
    title: str = ""

    @property
    def label(self) -> str:
        """The service's own title of the parameter (OGC inputs have one), else its name."""
        if self.title.strip():
            return self.title.strip()
        return self.name.replace("_", " ").capitalize()

    @property
    def required(self) -> bool:
        return not self.optional

    @property
    def ogc_bbox(self) -> bool:
        """Whether this bounding box is sent in the OGC API form ``{bbox, crs}``."""
        return self.kind == EXTENT and is_ogc_bbox_schema(self.schema)

    @property
    def minimum(self) -> Optional[float]:
        return _bound(self.schema, "minimum", "exclusiveMinimum")

    @property
    def maximum(self) -> Optional[float]:
        return _bound(self.schema, "maximum", "exclusiveMaximum")


def _schemas(schema: Any) -> List[Dict[str, Any]]:
    """A schema and its ``allOf``/``anyOf``/``oneOf`` alternatives, flattened."""
    out: List[Dict[str, Any]] = []
    if isinstance(schema, list):
        for x in schema:
            out += _schemas(x)
    elif isinstance(schema, dict):
        out.append(schema)
        for key in ("allOf", "anyOf", "oneOf"):
            out += _schemas(schema.get(key))
    return out


def is_ogc_bbox_schema(schema: Any) -> bool:
    """``format: ogc-bbox``, or a ``$ref`` to the OGC ``bbox.yaml`` schema, anywhere in the
    schema's alternatives (as the daemon decides)."""
    for s in _schemas(schema):
        if s.get("format") == "ogc-bbox":
            return True
        ref = s.get("$ref")
        if isinstance(ref, str) and ref.rstrip("/").rsplit("/", 1)[-1] in ("bbox.yaml", "bbox.json", "bbox"):
            return True
    return False


def _bound(schema: Any, inclusive: str, exclusive: str) -> Optional[float]:
    """The numeric bound of a schema (the tightest one of its alternatives that are all
    numbers); an exclusive bound counts as inclusive (the daemon checks exactly)."""
    found: List[float] = []
    for s in _schemas(schema):
        for key in (inclusive, exclusive):
            v = s.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                found.append(float(v))
    if not found:
        return None
    return max(found) if inclusive == "minimum" else min(found)


def field_spec(descriptor: Dict[str, Any]) -> FieldSpec:
    """The form field of one ``/params`` descriptor."""
    ptype = str(descriptor.get("type") or "json")
    options = list(descriptor.get("options") or [])
    kind = ENUM if options and ptype in ("string", "integer", "double") else _KINDS.get(ptype, JSON)
    return FieldSpec(
        name=str(descriptor["name"]),
        kind=kind,
        param_type=ptype,
        optional=bool(descriptor.get("optional")),
        description=str(descriptor.get("description") or ""),
        default=descriptor.get("default"),
        options=options,
        schema=descriptor.get("schema"),
        title=str(descriptor.get("title") or ""),
    )


def field_specs(descriptors: List[Dict[str, Any]]) -> List[FieldSpec]:
    return [field_spec(d) for d in descriptors if isinstance(d, dict) and d.get("name")]


def extent_field(specs: List[FieldSpec]) -> Optional[FieldSpec]:
    """The field that takes the map extent: the first bounding box (else polygon)."""
    for kind in (EXTENT, POLYGON):
        for s in specs:
            if s.kind == kind:
                return s
    return None


# --- extents ---------------------------------------------------------------------------


def extent_to_wgs84(
    rect: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    context: Optional[QgsCoordinateTransformContext] = None,
) -> Dict[str, float]:
    """``{west, south, east, north}`` in EPSG:4326 of a rectangle in ``crs``."""
    target = QgsCoordinateReferenceSystem(WGS84)
    if context is None:
        context = QgsProject.instance().transformContext()
    if not crs.isValid():
        raise ValueError("the extent has no valid coordinate reference system")
    out = rect
    if crs != target:
        transform = QgsCoordinateTransform(crs, target, context)
        # Allow a fallback operation rather than failing on a missing grid.
        transform.setBallparkTransformsAreAppropriate(True)
        out = transform.transformBoundingBox(rect)
    bbox = {
        "west": round(out.xMinimum(), 6),
        "south": round(out.yMinimum(), 6),
        "east": round(out.xMaximum(), 6),
        "north": round(out.yMaximum(), 6),
    }
    if bbox["west"] >= bbox["east"] or bbox["south"] >= bbox["north"]:
        raise ValueError("the extent is empty")
    return bbox


def wgs84_to_crs(
    bbox: Dict[str, float],
    crs: QgsCoordinateReferenceSystem,
    context: Optional[QgsCoordinateTransformContext] = None,
) -> QgsRectangle:
    """A ``{west, south, east, north}`` box as a rectangle in ``crs`` (for zooming)."""
    rect = QgsRectangle(bbox["west"], bbox["south"], bbox["east"], bbox["north"])
    target = QgsCoordinateReferenceSystem(WGS84)
    if not crs.isValid() or crs == target:
        return rect
    transform = QgsCoordinateTransform(
        target, crs, context or QgsProject.instance().transformContext()
    )
    transform.setBallparkTransformsAreAppropriate(True)
    return transform.transformBoundingBox(rect)


def ogc_bbox(bbox: Dict[str, float]) -> Dict[str, Any]:
    """The OGC API form of a ``{west, south, east, north}`` lon/lat box."""
    return {"bbox": [bbox["west"], bbox["south"], bbox["east"], bbox["north"]], "crs": CRS84}


def extent_value(spec: "FieldSpec", bbox: Dict[str, float]) -> Any:
    """What an extent field sends for a lon/lat box: a GeoJSON Polygon for a polygon, the
    OGC form for an OGC bounding box, else the box itself (openEO)."""
    if spec.kind == POLYGON:
        return bbox_polygon(bbox)
    if spec.ogc_bbox:
        return ogc_bbox(bbox)
    return bbox


def bbox_polygon(bbox: Dict[str, float]) -> Dict[str, Any]:
    """A GeoJSON Polygon of a ``{west, south, east, north}`` box."""
    w, s, e, n = bbox["west"], bbox["south"], bbox["east"], bbox["north"]
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _is_lonlat_crs(crs: Any) -> bool:
    return crs in (None, 4326, "4326", "EPSG:4326", "epsg:4326") or (
        isinstance(crs, str) and (crs.endswith("CRS84") or crs.endswith("CRS84h"))
    )


def bbox_of_value(value: Any) -> Optional[Dict[str, float]]:
    """The lon/lat box of a job parameter value: a bounding box (openEO ``{west, south,
    east, north, crs?}`` or OGC API ``{"bbox": [w, s, (z,) e, n, (z)], "crs"?}`` in CRS84),
    or a GeoJSON geometry / Feature / FeatureCollection (its coordinates' envelope).
    ``None`` otherwise. An OGC box crossing the antimeridian (west > east) ends east of
    180°."""
    if not isinstance(value, dict):
        return None
    ogc = value.get("bbox")
    if isinstance(ogc, list) and len(ogc) in (4, 6) and value.get("type") is None:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ogc):
            return None
        crs = value.get("crs")
        # Only CRS84 is lon/lat by definition (an EPSG:4326 URI is lat/lon in OGC APIs).
        if not (crs is None or (isinstance(crs, str) and (crs.endswith("CRS84") or crs.endswith("CRS84h")))):
            return None
        half = len(ogc) // 2
        w, s, e, n = float(ogc[0]), float(ogc[1]), float(ogc[half]), float(ogc[half + 1])
        if s > n:
            return None
        if w > e:
            e += 360.0
        return {"west": w, "south": s, "east": e, "north": n}
    keys = ("west", "south", "east", "north")
    if all(isinstance(value.get(k), (int, float)) for k in keys):
        if not _is_lonlat_crs(value.get("crs")):
            return None
        return {k: float(value[k]) for k in keys}
    coords: List[List[float]] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("type") == "FeatureCollection":
                for f in obj.get("features") or []:
                    walk(f)
            elif obj.get("type") == "Feature":
                walk(obj.get("geometry"))
            elif obj.get("type") == "GeometryCollection":
                for g in obj.get("geometries") or []:
                    walk(g)
            else:
                walk_coords(obj.get("coordinates"))

    def walk_coords(c: Any) -> None:
        if isinstance(c, list) and len(c) >= 2 and all(isinstance(x, (int, float)) for x in c[:2]):
            coords.append([float(c[0]), float(c[1])])
        elif isinstance(c, list):
            for x in c:
                walk_coords(x)

    walk(value)
    if not coords:
        return None
    xs = [c[0] for c in coords]
    ys = [c[1] for c in coords]
    return {"west": min(xs), "south": min(ys), "east": max(xs), "north": max(ys)}


def job_bbox(job: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """The lon/lat box of a job: its first parameter that is an extent."""
    params = job.get("parameters") if isinstance(job, dict) else None
    if not isinstance(params, dict):
        return None
    preferred = ["spatial_extent", "bounding_box", "bbox", "geometry", "aoi", "geometries"]
    names = preferred + [k for k in params if k not in preferred]
    for name in names:
        box = bbox_of_value(params.get(name))
        if box is not None:
            return box
    return None


# --- values ------------------------------------------------------------------------------


def wants_datetime(spec: FieldSpec) -> bool:
    """Whether a ``datetime`` field's schema asks for a date-time (not a date)."""
    text = json.dumps(spec.schema or {})
    return '"date-time"' in text and '"date"' not in text.replace('"date-time"', "")


def date_value(spec: FieldSpec, iso_date: str) -> str:
    """A picked day as the field wants it: ``2023-05-01`` or ``2023-05-01T00:00:00Z``."""
    return iso_date + "T00:00:00Z" if wants_datetime(spec) else iso_date


def parse_date(value: Any) -> Optional[_dt.date]:
    if isinstance(value, str) and len(value) >= 10:
        try:
            return _dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def default_date_range(spec: FieldSpec) -> List[str]:
    """The default interval, or the last full month before today."""
    d = spec.default
    if isinstance(d, list) and len(d) == 2 and all(parse_date(x) for x in d):
        return [str(d[0])[:10], str(d[1])[:10]]
    first_this_month = _dt.date.today().replace(day=1)
    end = first_this_month - _dt.timedelta(days=1)
    return [end.replace(day=1).isoformat(), end.isoformat()]


def parse_list(kind: str, text: str) -> List[Any]:
    """Comma-separated text as a list of strings or numbers (per ``param_type``)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if kind == "array-integer":
        return [int(x) for x in items]
    if kind == "array-double":
        return [float(x) for x in items]
    return items


def parse_json(text: str) -> Any:
    return json.loads(text) if text.strip() else None


def job_body(
    title: str,
    label: str,
    endpoint: str,
    application: str,
    parameters: Dict[str, Any],
    output_format: str,
    namespace: Optional[str] = None,
) -> Dict[str, Any]:
    """A ``POST /unit_jobs`` body (``namespace``: OGC API Processes only, when set)."""
    service = service_body(endpoint, application, namespace)
    return {
        "title": title,
        "label": label,
        "service": service,
        "parameters": parameters,
        "format": output_format,
    }


def service_body(endpoint: str, application: str, namespace: Optional[str] = None) -> Dict[str, Any]:
    """The ``service`` object of ``/params`` and ``/unit_jobs``."""
    service: Dict[str, Any] = {"endpoint": endpoint, "application": application}
    if namespace:
        service["namespace"] = namespace
    return service


def params_body(label: str, endpoint: str, application: str, namespace: Optional[str] = None) -> Dict[str, Any]:
    """A ``POST /params`` body."""
    return {"label": label or OPENEO, "service": service_body(endpoint, application, namespace)}


def field_of_error(name: str, field_names: List[str]) -> str:
    """The form field a validation error names: ``parameters.spatial_extent.west`` →
    ``spatial_extent``; ``title``/``format``/``service.*`` are their own; else ``""``."""
    if name.startswith("parameters."):
        rest = name[len("parameters.") :]
        for f in sorted(field_names, key=len, reverse=True):
            if rest == f or rest.startswith(f + ".") or rest.startswith(f + "["):
                return f
        return ""
    if name in ("title", "format", "label") or name.startswith("service"):
        return name.split(".")[0]
    if name in field_names:
        return name
    return ""
