"""Processing algorithms: one per known service, openEO or OGC API Processes (parameters
from ``/params``), and a generic one (kind, backend or server URL, application, OGC
namespace, parameters as JSON). Each submits a job to the
daemon, waits with progress and cancellation through the ``QgsFeedback``, and returns
the result layers (loaded into the project on completion), the result folder and the
job id — so they work in the toolbox, the graphical modeler and batch mode.

"Upscale a service over a grid" splits an area (an extent, or the polygons of a layer)
into the daemon's 20 or 250 km cells and runs a service on each as one upscale task; it
follows the task's progress, cancels it when you cancel, and returns the mosaic layers,
the task folder and the task id.
"""

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsGeometry,
)

from ..core import params as P
from ..core import upscale as U
from ..core.client import ApiError, blocking_request
from ..core.costs import budget_exceeded, budget_exceeded_text
from ..core.daemon import DaemonInfo
from ..core.manifest import create_layers, read_manifest, read_task_manifest
from ..core.runner import JobFailed, submit_and_wait, submit_task_and_wait

TITLE = "TITLE"
FORMAT = "FORMAT"
ENDPOINT = "ENDPOINT"
APPLICATION = "APPLICATION"
KIND = "KIND"
NAMESPACE = "NAMESPACE"
EXTENT = "EXTENT"
PARAMETERS = "PARAMETERS"
OUTPUT_LAYERS = "OUTPUT_LAYERS"
OUTPUT_FOLDER = "OUTPUT_FOLDER"
JOB_ID = "JOB_ID"
SERVICE = "SERVICE"
AREA = "AREA"
GRID = "GRID"
TASK_ID = "TASK_ID"

FORMAT_CODES = [code for code, _ in P.FORMATS]
KIND_CODES = [code for code, _ in P.KINDS]


def algorithm_id(service: Dict[str, Any]) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", str(service.get("id") or "service").lower()).strip("_") or "service"


def _date_type():
    t = getattr(QgsProcessingParameterDateTime, "Type", None)
    return t.Date if t is not None and hasattr(t, "Date") else QgsProcessingParameterDateTime.Date


class _Base(QgsProcessingAlgorithm):
    def group(self) -> str:
        return "Services"

    def groupId(self) -> str:  # noqa: N802
        return "services"

    def _common_params(self, default_title: str) -> None:
        self.addParameter(QgsProcessingParameterString(TITLE, "Job title", defaultValue=default_title))
        fmt = QgsProcessingParameterEnum(
            FORMAT, "Output format", options=[label for _, label in P.FORMATS], defaultValue=0
        )
        self.addParameter(fmt)

    def _outputs(self) -> None:
        self.addOutput(QgsProcessingOutputMultipleLayers(OUTPUT_LAYERS, "Result layers"))
        self.addOutput(QgsProcessingOutputFolder(OUTPUT_FOLDER, "Result folder"))
        self.addOutput(QgsProcessingOutputNumber(JOB_ID, "Job id"))

    def _run(self, body: Dict[str, Any], context: QgsProcessingContext, feedback) -> Dict[str, Any]:
        info = DaemonInfo.resolve()
        try:
            done = submit_and_wait(info, body, feedback, on_info=feedback.pushInfo)
        except ApiError as e:
            if budget_exceeded(e):  # which budget, its limit, what was spent, the estimate
                raise QgsProcessingException(budget_exceeded_text(e)) from e
            lines = [e.message] + [f"{x.get('name')}: {x.get('reason')}" for x in e.errors]
            raise QgsProcessingException("\n".join(lines)) from e
        except JobFailed as e:
            raise QgsProcessingException(str(e)) from e
        folder = done["folder"]
        manifest = read_manifest(folder)
        loaded = create_layers(manifest)
        for s in loaded.skipped:
            feedback.reportError(f"not loaded: {s}")
        ids: List[str] = []
        for layer in loaded.layers:
            context.temporaryLayerStore().addMapLayer(layer)
            details = QgsProcessingContext.LayerDetails(layer.name(), context.project(), layer.name())
            context.addLayerToLoadOnCompletion(layer.id(), details)
            ids.append(layer.id())
        feedback.pushInfo(f"{len(ids)} layer(s) from {folder}")
        return {OUTPUT_LAYERS: ids, OUTPUT_FOLDER: str(folder), JOB_ID: done["job"]["id"]}


class ServiceAlgorithm(_Base):
    """A service of the catalogue; its form follows the service's parameters."""

    def __init__(self, service: Dict[str, Any], descriptors: Optional[List[Dict[str, Any]]]):
        super().__init__()
        self.service = service
        self.descriptors = descriptors or []
        self.specs = P.field_specs(self.descriptors)
        self._names: Dict[str, Tuple[P.FieldSpec, List[str]]] = {}

    def createInstance(self):  # noqa: N802
        return ServiceAlgorithm(self.service, self.descriptors)

    def name(self) -> str:
        return algorithm_id(self.service)

    def displayName(self) -> str:  # noqa: N802
        return str(self.service.get("title") or self.name())

    @property
    def is_ogc(self) -> bool:
        return self.service.get("label") == P.OGC

    def shortHelpString(self) -> str:  # noqa: N802
        if self.is_ogc:
            where = f"OGC API Processes server: {self.service.get('endpoint')}\n"
            if self.service.get("namespace"):
                where += f"Namespace: {self.service.get('namespace')}\n"
            where += f"Process: {self.service.get('application')}"
        else:
            where = f"Backend: {self.service.get('endpoint')}\nApplication: {self.service.get('application')}"
        return (
            f"{self.service.get('description') or ''}\n\n{where}\n\n"
            "Submits a job through the eodispatch daemon, waits for it (cancel stops it) "
            "and returns the result layers."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self._names = {}
        for spec in self.specs:
            optional = spec.optional
            label = spec.label
            d = spec.default
            if spec.kind in (P.EXTENT, P.POLYGON):
                p = QgsProcessingParameterExtent(spec.name, label, optional=optional)
                names = [spec.name]
            elif spec.kind == P.DATE_RANGE:
                start, end = P.default_date_range(spec)
                p1 = QgsProcessingParameterDateTime(spec.name + "_start", label + " (start)", type=_date_type(), defaultValue=start, optional=optional)
                p2 = QgsProcessingParameterDateTime(spec.name + "_end", label + " (end)", type=_date_type(), defaultValue=end, optional=optional)
                self.addParameter(p1)
                self.addParameter(p2)
                self._names[spec.name] = (spec, [spec.name + "_start", spec.name + "_end"])
                continue
            elif spec.kind == P.DATE:
                p = QgsProcessingParameterDateTime(spec.name, label, type=_date_type(), defaultValue=d, optional=optional)
                names = [spec.name]
            elif spec.kind == P.BOOLEAN:
                p = QgsProcessingParameterBoolean(spec.name, label, defaultValue=bool(d) if d is not None else False, optional=optional)
                names = [spec.name]
            elif spec.kind in (P.INTEGER, P.DOUBLE):
                ntype = QgsProcessingParameterNumber.Integer if spec.kind == P.INTEGER else QgsProcessingParameterNumber.Double
                p = QgsProcessingParameterNumber(spec.name, label, type=ntype, defaultValue=d, optional=optional)
                if spec.minimum is not None:
                    p.setMinimum(spec.minimum)
                if spec.maximum is not None:
                    p.setMaximum(spec.maximum)
                names = [spec.name]
            elif spec.kind == P.ENUM:
                opts = [str(o) for o in spec.options]
                default = opts.index(str(d)) if d is not None and str(d) in opts else None
                p = QgsProcessingParameterEnum(spec.name, label, options=opts, defaultValue=default, optional=optional)
                names = [spec.name]
            elif spec.kind == P.UNSUPPORTED:
                continue
            else:  # string, list, json
                default = d if isinstance(d, str) else (json.dumps(d) if d is not None and spec.kind == P.JSON else (", ".join(map(str, d)) if isinstance(d, list) else None))
                p = QgsProcessingParameterString(spec.name, label, defaultValue=default, optional=optional, multiLine=spec.kind == P.JSON)
                names = [spec.name]
            p.setHelp(spec.description)
            self.addParameter(p)
            self._names[spec.name] = (spec, names)
        self._common_params(self.displayName())
        backend = QgsProcessingParameterString(
            ENDPOINT, "Server URL" if self.is_ogc else "Backend URL", defaultValue=str(self.service.get("endpoint") or "")
        )
        backend.setHelp(
            "Another OGC API Processes server that offers the same process, if any" if self.is_ogc
            else "Another openEO backend that offers the same service, if any")
        backend.setFlags(backend.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(backend)
        self._outputs()

    def job_parameters(self, parameters, context) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        wgs84 = QgsCoordinateReferenceSystem(P.WGS84)
        for spec in self.specs:
            if spec.kind == P.UNSUPPORTED:
                continue
            names = self._names.get(spec.name, (spec, [spec.name]))[1]
            given = [n for n in names if parameters.get(n) is not None and parameters.get(n) != ""]
            if not given:
                if spec.required and spec.default is None:
                    raise QgsProcessingException(f"{spec.label} is required")
                continue
            if spec.kind in (P.EXTENT, P.POLYGON):
                rect = self.parameterAsExtent(parameters, spec.name, context)
                crs = self.parameterAsExtentCrs(parameters, spec.name, context)
                if not crs.isValid():
                    crs = context.project().crs() if context.project() else wgs84
                bbox = P.extent_to_wgs84(rect, crs, context.transformContext())
                out[spec.name] = P.extent_value(spec, bbox)
            elif spec.kind == P.DATE_RANGE:
                start = self.parameterAsDateTime(parameters, names[0], context).date().toString("yyyy-MM-dd")
                end = self.parameterAsDateTime(parameters, names[1], context).date().toString("yyyy-MM-dd")
                out[spec.name] = [start, end]
            elif spec.kind == P.DATE:
                day = self.parameterAsDateTime(parameters, spec.name, context).date().toString("yyyy-MM-dd")
                out[spec.name] = P.date_value(spec, day)
            elif spec.kind == P.BOOLEAN:
                out[spec.name] = self.parameterAsBool(parameters, spec.name, context)
            elif spec.kind == P.INTEGER:
                out[spec.name] = self.parameterAsInt(parameters, spec.name, context)
            elif spec.kind == P.DOUBLE:
                out[spec.name] = self.parameterAsDouble(parameters, spec.name, context)
            elif spec.kind == P.ENUM:
                out[spec.name] = spec.options[self.parameterAsEnum(parameters, spec.name, context)]
            elif spec.kind == P.LIST:
                out[spec.name] = P.parse_list(spec.param_type, self.parameterAsString(parameters, spec.name, context))
            elif spec.kind == P.JSON:
                try:
                    out[spec.name] = P.parse_json(self.parameterAsString(parameters, spec.name, context))
                except ValueError as e:
                    raise QgsProcessingException(f"{spec.label}: not JSON ({e})") from e
            else:
                out[spec.name] = self.parameterAsString(parameters, spec.name, context)
        return out

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        body = P.job_body(
            self.parameterAsString(parameters, TITLE, context) or self.displayName(),
            str(self.service.get("label") or P.OPENEO),
            self.parameterAsString(parameters, ENDPOINT, context).strip() or str(self.service["endpoint"]),
            str(self.service["application"]),
            self.job_parameters(parameters, context),
            FORMAT_CODES[self.parameterAsEnum(parameters, FORMAT, context)],
            self.service.get("namespace"),
        )
        return self._run(body, context, feedback)


class GenericAlgorithm(_Base):
    """Any service by address: openEO (backend URL + UDP URL) or OGC API Processes
    (server URL + process id or process URL, optional namespace); parameters as JSON; the
    extent goes to the service's bounding-box parameter (asked from ``/params``), in the
    form that parameter takes."""

    def createInstance(self):  # noqa: N802
        return GenericAlgorithm()

    def name(self) -> str:
        return "run_service"

    def displayName(self) -> str:  # noqa: N802
        return "Run a service by URL"

    def group(self) -> str:
        return "Generic"

    def groupId(self) -> str:  # noqa: N802
        return "generic"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Runs a service given by address through the eodispatch daemon: an openEO "
            "user-defined process (backend URL and the UDP's URL) or an OGC API Processes "
            "process (server URL and the process id or the process URL; the namespace is the "
            "path before /processes, if any). The extent (optional) is given to the "
            "service's bounding-box parameter; other parameters as a JSON object."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        # Optional (openEO when not given): models and scripts written before OGC stay valid.
        kind = QgsProcessingParameterEnum(KIND, "Kind of service", options=[t for _, t in P.KINDS], defaultValue=0, optional=True)
        self.addParameter(kind)
        self.addParameter(QgsProcessingParameterString(ENDPOINT, "Backend or server URL", defaultValue="https://openeofed.dataspace.copernicus.eu"))
        self.addParameter(QgsProcessingParameterString(APPLICATION, "Application (openEO: UDP URL; OGC: process id or URL)"))
        namespace = QgsProcessingParameterString(NAMESPACE, "Namespace (OGC API Processes, optional)", optional=True)
        namespace.setHelp("The path before /processes on the server, if any")
        self.addParameter(namespace)
        self.addParameter(QgsProcessingParameterExtent(EXTENT, "Extent", optional=True))
        self.addParameter(QgsProcessingParameterString(PARAMETERS, "Other parameters (JSON object)", defaultValue="{}", multiLine=True, optional=True))
        self._common_params("Service by URL")
        self._outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        kind = self.parameterAsEnum(parameters, KIND, context) if parameters.get(KIND) is not None else 0
        label = KIND_CODES[kind]
        endpoint = self.parameterAsString(parameters, ENDPOINT, context).strip()
        application = self.parameterAsString(parameters, APPLICATION, context).strip()
        namespace = None
        if label == P.OGC:
            namespace = (self.parameterAsString(parameters, NAMESPACE, context) or "").strip().strip("/") or None
        try:
            values = P.parse_json(self.parameterAsString(parameters, PARAMETERS, context)) or {}
        except ValueError as e:
            raise QgsProcessingException(f"Other parameters: not JSON ({e})") from e
        if not isinstance(values, dict):
            raise QgsProcessingException("Other parameters: must be a JSON object")
        if parameters.get(EXTENT):
            info = DaemonInfo.resolve()
            try:
                descriptors = blocking_request(info, "POST", "/params", P.params_body(label, endpoint, application, namespace), feedback)
            except ApiError as e:
                raise QgsProcessingException(e.message) from e
            target = P.extent_field(P.field_specs(descriptors))
            if target is None:
                raise QgsProcessingException("this service takes no extent; leave Extent empty")
            rect = self.parameterAsExtent(parameters, EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, EXTENT, context)
            bbox = P.extent_to_wgs84(rect, crs, context.transformContext())
            values[target.name] = P.extent_value(target, bbox)
        body = P.job_body(
            self.parameterAsString(parameters, TITLE, context) or "Service by URL",
            label,
            endpoint,
            application,
            values,
            FORMAT_CODES[self.parameterAsEnum(parameters, FORMAT, context)],
            namespace,
        )
        return self._run(body, context, feedback)


def _source_area(alg: QgsProcessingAlgorithm, parameters, context) -> Tuple[QgsGeometry, Any]:
    """The union of a feature source's polygons (the selected ones when the source is
    "selected features only"), and its CRS."""
    source = alg.parameterAsSource(parameters, AREA, context)
    geoms = [f.geometry() for f in source.getFeatures() if f.hasGeometry() and not f.geometry().isEmpty()]
    if not geoms:
        raise QgsProcessingException("Area: the layer has no polygon")
    return QgsGeometry.unaryUnion(geoms), source.sourceCrs()


class UpscaleAlgorithm(QgsProcessingAlgorithm):
    """A service of the catalogue (or one given by address) run over the daemon's grid
    cells of an area: one upscale task, one mosaic."""

    def __init__(self, services: Optional[List[Dict[str, Any]]] = None):
        super().__init__()
        self.services = [s for s in services or [] if isinstance(s, dict)]

    def createInstance(self):  # noqa: N802
        return UpscaleAlgorithm(self.services)

    def name(self) -> str:
        return "upscale"

    def displayName(self) -> str:  # noqa: N802
        return "Upscale a service over a grid"

    def group(self) -> str:
        return "Generic"

    def groupId(self) -> str:  # noqa: N802
        return "generic"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Splits an area — an extent, or the polygons of a layer — into the daemon's grid cells "
            "(20 km or 250 km squares in the UTM zone of the area), runs the service on each cell as one "
            "upscale task of the eodispatch daemon (the cell goes to the service's extent parameter), follows "
            "the task's progress (cancel cancels the task), and returns the mosaic of the tiles as layers, the "
            "task folder and the task id. Other parameters as a JSON object. A service not in the list: pick "
            "the last entry and give its kind, backend or server URL and application."
        )

    def _service_options(self) -> List[str]:
        return [str(s.get("title") or s.get("id") or s.get("application")) for s in self.services] + [
            "Another service, by address (below)"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterEnum(SERVICE, "Service", options=self._service_options(),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterExtent(EXTENT, "Area (an extent)", optional=True))
        area = QgsProcessingParameterFeatureSource(AREA, "Area (the polygons of a layer; instead of the extent)",
                                                   types=[_polygon_type()], optional=True)
        self.addParameter(area)
        self.addParameter(QgsProcessingParameterEnum(GRID, "Grid", options=[label for _, label in U.GRIDS],
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterString(PARAMETERS, "Other parameters (JSON object)", defaultValue="{}",
                                                       multiLine=True, optional=True))
        self.addParameter(QgsProcessingParameterString(TITLE, "Task title", defaultValue="Upscale task"))
        self.addParameter(QgsProcessingParameterEnum(FORMAT, "Output format", options=[label for _, label in P.FORMATS],
                                                     defaultValue=0))
        advanced = [
            QgsProcessingParameterString(ENDPOINT, "Backend or server URL (another one than the service's)",
                                         optional=True),
            QgsProcessingParameterEnum(KIND, "Kind of service (by address)", options=[t for _, t in P.KINDS],
                                       defaultValue=0, optional=True),
            QgsProcessingParameterString(APPLICATION, "Application (by address: openEO UDP URL, OGC process id or URL)",
                                         optional=True),
            QgsProcessingParameterString(NAMESPACE, "Namespace (by address, OGC API Processes)", optional=True),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addOutput(QgsProcessingOutputMultipleLayers(OUTPUT_LAYERS, "Mosaic layers"))
        self.addOutput(QgsProcessingOutputFolder(OUTPUT_FOLDER, "Task folder"))
        self.addOutput(QgsProcessingOutputNumber(TASK_ID, "Task id"))

    def _service(self, parameters, context) -> Tuple[str, str, str, Optional[str]]:
        """label, endpoint, application, namespace."""
        index = self.parameterAsEnum(parameters, SERVICE, context)
        endpoint = (self.parameterAsString(parameters, ENDPOINT, context) or "").strip()
        if index < len(self.services):
            s = self.services[index]
            return (str(s.get("label") or P.OPENEO), endpoint or str(s.get("endpoint") or ""),
                    str(s.get("application") or ""), s.get("namespace"))
        kind = self.parameterAsEnum(parameters, KIND, context) if parameters.get(KIND) is not None else 0
        label = KIND_CODES[kind]
        application = (self.parameterAsString(parameters, APPLICATION, context) or "").strip()
        if not endpoint or not application:
            raise QgsProcessingException("A service by address needs its backend or server URL and its application")
        namespace = None
        if label == P.OGC:
            namespace = (self.parameterAsString(parameters, NAMESPACE, context) or "").strip().strip("/") or None
        return label, endpoint, application, namespace

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        info = DaemonInfo.resolve()
        label, endpoint, application, namespace = self._service(parameters, context)
        if parameters.get(AREA):
            geometry, crs = _source_area(self, parameters, context)
        elif parameters.get(EXTENT):
            rect = self.parameterAsExtent(parameters, EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, EXTENT, context)
            if not crs.isValid():
                crs = context.project().crs() if context.project() else QgsCoordinateReferenceSystem(P.WGS84)
            geometry = QgsGeometry.fromRect(rect)
        else:
            raise QgsProcessingException("Give the area: an extent, or a polygon layer")
        try:
            area = U.area_to_wgs84(geometry, crs, context.transformContext())
        except ValueError as e:
            raise QgsProcessingException(f"Area: {e}") from e
        try:
            values = P.parse_json(self.parameterAsString(parameters, PARAMETERS, context)) or {}
        except ValueError as e:
            raise QgsProcessingException(f"Other parameters: not JSON ({e})") from e
        if not isinstance(values, dict):
            raise QgsProcessingException("Other parameters: must be a JSON object")
        grid = U.GRID_CODES[self.parameterAsEnum(parameters, GRID, context)]
        try:
            descriptors = blocking_request(info, "POST", "/params",
                                           P.params_body(label, endpoint, application, namespace), feedback)
            field = P.extent_field(P.field_specs(descriptors or []))
            if field is None:
                raise QgsProcessingException("this service takes no extent: it cannot be upscaled")
            cells = U.cells_in(U.cells_of(blocking_request(info, "POST", "/tiles", U.tiles_body(area, grid), feedback)),
                               area)
            if not cells:
                raise QgsProcessingException("the area has no grid cell")
            feedback.pushInfo(f"{len(cells)} cell(s) of {U.grid_label(grid)}: one job each")
            body = U.task_body(
                self.parameterAsString(parameters, TITLE, context) or "Upscale task",
                label, endpoint, application, values,
                FORMAT_CODES[self.parameterAsEnum(parameters, FORMAT, context)],
                field.name, U.dimension_values(field, cells), namespace,
            )
            done = submit_task_and_wait(info, body, feedback, on_info=feedback.pushInfo)
        except ApiError as e:
            if budget_exceeded(e):  # which budget, its limit, what was spent, the estimate
                raise QgsProcessingException(budget_exceeded_text(e)) from e
            lines = [e.message] + [f"{x.get('name')}: {x.get('reason')}" for x in e.errors]
            raise QgsProcessingException("\n".join(lines)) from e
        except JobFailed as e:
            raise QgsProcessingException(str(e)) from e
        folder = done["folder"]
        manifest = read_task_manifest(folder)
        for failed in manifest.data.get("failed") or []:
            if isinstance(failed, dict):
                err = failed.get("error") or {}
                feedback.reportError(f"tile {failed.get('title') or failed.get('job')}: {failed.get('status')} "
                                     f"{err.get('message') or ''}".strip())
        loaded = create_layers(manifest)
        for s in loaded.skipped:
            feedback.reportError(f"not loaded: {s}")
        ids: List[str] = []
        for layer in loaded.layers:
            context.temporaryLayerStore().addMapLayer(layer)
            details = QgsProcessingContext.LayerDetails(layer.name(), context.project(), layer.name())
            context.addLayerToLoadOnCompletion(layer.id(), details)
            ids.append(layer.id())
        feedback.pushInfo(f"{len(ids)} mosaic layer(s) from {folder}")
        return {OUTPUT_LAYERS: ids, OUTPUT_FOLDER: str(folder), TASK_ID: done["task"]["id"]}


def _polygon_type():
    from qgis.core import QgsProcessing

    return QgsProcessing.TypeVectorPolygon
