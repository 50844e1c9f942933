"""A published job folder (``results_dir/<date>_<slug>_<id>/job.json``, docs/results-folder.md) as
QGIS layers: names from the manifest, styles from its ``style`` hints.

Styles: ``minmax`` → single-band grey stretched between min and max; ``palette`` →
paletted raster with the manifest's classes, colours and labels; ``rgb`` → multiband
colour with a stretch per band; ``single`` → the vector symbol's colour. Without a hint
QGIS's own default applies. Layers are created without their "default style": a
``.qml`` next to a result, or a style stored inside a GeoPackage, comes from the backend
and is never applied (it could carry actions or Python). Layers that GDAL could not read
or that the daemon's GDAL helper refused (``readable: false``) and ``other`` files are
not loaded (they are listed in the result).

Without the GDAL helper (``error_code: "GeoHelperMissing"``: a daemon built without
GDAL, or the helper missing), every file is still tried with QGIS itself, raster then
vector, after the checks the plugin can make on its own: a regular file inside the job
folder, not a side file, recognised by GDAL as one of the formats results come in (no
VRT: its sources cannot be checked here), and a GeoJSON without a ``crs`` link (which
GDAL would fetch). Layer names that would repeat in a group get their file name.

Creating layers is safe in a worker thread; adding them to the project is not (that is
``add_to_project``, GUI thread).

No Qt widgets here.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from qgis.core import (
    QgsContrastEnhancement,
    QgsCoordinateTransformContext,
    QgsDataProvider,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsProviderRegistry,
    QgsProviderSublayerDetails,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

MANIFEST = "job.json"
MANIFEST_VERSION = 1
#: An upscale task's folder: its manifest (the tiles' job folders are inside the folder).
TASK_MANIFEST = "task.json"
TASK_MANIFEST_VERSION = 1
PROP_JOB_UUID = "eodispatch/job_uuid"
PROP_JOB_ID = "eodispatch/job_id"
PROP_FOLDER = "eodispatch/folder"
#: On a task's group and layers: the task id; on a mosaic layer: its output name.
PROP_TASK_ID = "eodispatch/task_id"
PROP_OUTPUT = "eodispatch/output"
#: On a task's group: the outputs of task.json seen so far (JSON list): one the user
#: removed from the group is not added again when the mosaic grows.
PROP_SEEN_OUTPUTS = "eodispatch/seen_outputs"

#: ``error_code`` of a layer the daemon's GDAL helper could not look at.
HELPER_MISSING = "GeoHelperMissing"
#: GDAL drivers of the formats results come in (crates/gdal-helper/src/safety.rs, without VRT).
RESULT_DRIVERS = frozenset(
    ["GTiff", "netCDF", "GeoJSON", "GPKG", "Parquet", "JP2OpenJPEG", "JP2ECW", "JP2KAK", "PNG", "Zarr"]
)
#: Their file name endings, for when GDAL's Python bindings are not there.
RESULT_EXTENSIONS = (".tif", ".tiff", ".nc", ".nc4", ".geojson", ".json", ".gpkg", ".parquet", ".jp2", ".png")
#: Side files of the backend are kept under this ending (src/results/names.rs).
SIDE_FILE_SUFFIX = ".sidecar"
#: Largest GeoJSON read whole to check its ``crs`` without the helper.
MAX_CHECKED_JSON = 256 * 1024 * 1024


class ManifestError(Exception):
    """A folder that is not a readable job folder."""


@dataclass
class Manifest:
    """A job folder's ``job.json``, or an upscale task folder's ``task.json`` (``is_task``:
    its ``task`` stands where a job's ``job`` is; its ``layers`` are the mosaics)."""

    folder: Path
    data: Dict[str, Any]

    @property
    def is_task(self) -> bool:
        return "eodispatch_task_manifest" in self.data

    @property
    def job(self) -> Dict[str, Any]:
        return (self.data.get("task") if self.is_task else self.data.get("job")) or {}

    @property
    def final(self) -> bool:
        """A task folder whose mosaic will not change any more (a job folder: always)."""
        return bool(self.data.get("final")) if self.is_task else True

    @property
    def uuid(self) -> str:
        return str(self.job.get("uuid") or self.folder.name)

    @property
    def job_id(self) -> Optional[int]:
        v = self.job.get("id")
        return v if isinstance(v, int) else None

    @property
    def title(self) -> str:
        return str(self.job.get("title") or self.folder.name)

    @property
    def group_name(self) -> str:
        """The layer group's name: the job's title and its id."""
        jid = self.job_id
        if self.is_task:
            return f"{self.title} (task #{jid})" if jid is not None else self.title
        return f"{self.title} (#{jid})" if jid is not None else self.title

    @property
    def layers(self) -> List[Dict[str, Any]]:
        return [x for x in self.data.get("layers") or [] if isinstance(x, dict)]


def is_job_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).is_file()


def is_task_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / TASK_MANIFEST).is_file()


def _read(folder, name: str, key: str, version: int, what: str) -> Manifest:
    """The manifest ``name`` of ``folder``, whose ``key`` must be ``version``."""
    folder = Path(folder)
    try:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
    except OSError as e:
        raise ManifestError(f"{folder}: cannot read {name}: {e}") from e
    except ValueError as e:
        raise ManifestError(f"{folder}: {name} is not JSON: {e}") from e
    if not isinstance(data, dict) or data.get(key) != version:
        raise ManifestError(f"{folder}: {name} is not an eodispatch {what} (version {version})")
    return Manifest(folder, data)


def read_task_manifest(folder) -> Manifest:
    return _read(folder, TASK_MANIFEST, "eodispatch_task_manifest", TASK_MANIFEST_VERSION, "task manifest")


def read_any_manifest(folder) -> Manifest:
    """A task folder's ``task.json``, else a job folder's ``job.json``."""
    folder = Path(folder)
    if (folder / TASK_MANIFEST).is_file():
        return read_task_manifest(folder)
    return read_manifest(folder)


def read_manifest(folder) -> Manifest:
    return _read(folder, MANIFEST, "eodispatch_manifest", MANIFEST_VERSION, "manifest")


def _inside(folder: Path, rel: str) -> Optional[Path]:
    """``folder/rel`` when it stays inside the folder (manifests are data, not trusted)."""
    if not rel or os.path.isabs(rel):
        return None
    path = (folder / rel).resolve()
    try:
        path.relative_to(folder.resolve())
    except ValueError:
        return None
    return path


def _color(text: Any, fallback: str = "#808080") -> QColor:
    c = QColor(str(text)) if text else QColor(fallback)
    return c if c.isValid() else QColor(fallback)


def apply_raster_style(layer: QgsRasterLayer, style: Optional[Dict[str, Any]]) -> bool:
    """Applies a manifest style hint; ``False`` when there is none usable."""
    if not style or not isinstance(style, dict) or not layer.isValid():
        return False
    provider = layer.dataProvider()
    kind = style.get("type")
    if kind == "minmax":
        if style.get("min") is None or style.get("max") is None:
            return False  # the helper found no statistics (an empty band): QGIS's own stretch
        band = int(style.get("band") or 1)
        renderer = QgsSingleBandGrayRenderer(provider, band)
        ce = QgsContrastEnhancement(provider.dataType(band))
        ce.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
        )
        ce.setMinimumValue(float(style["min"]))
        ce.setMaximumValue(float(style["max"]))
        renderer.setContrastEnhancement(ce)
        layer.setRenderer(renderer)
        return True
    if kind == "palette":
        band = int(style.get("band") or 1)
        classes = [
            QgsPalettedRasterRenderer.Class(
                float(c["value"]), _color(c.get("color")), str(c.get("label", c["value"]))
            )
            for c in style.get("classes") or []
            if isinstance(c, dict) and "value" in c
        ]
        if not classes:
            return False
        layer.setRenderer(QgsPalettedRasterRenderer(provider, band, classes))
        return True
    if kind == "rgb":
        bands = list(style.get("bands") or [1, 2, 3])
        if len(bands) != 3:
            return False
        renderer = QgsMultiBandColorRenderer(provider, int(bands[0]), int(bands[1]), int(bands[2]))
        mins = style.get("min") or []
        maxs = style.get("max") or []
        setters = (
            renderer.setRedContrastEnhancement,
            renderer.setGreenContrastEnhancement,
            renderer.setBlueContrastEnhancement,
        )
        for i, setter in enumerate(setters):
            if i < len(mins) and i < len(maxs):
                ce = QgsContrastEnhancement(provider.dataType(int(bands[i])))
                ce.setContrastEnhancementAlgorithm(
                    QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
                )
                ce.setMinimumValue(float(mins[i]))
                ce.setMaximumValue(float(maxs[i]))
                setter(ce)
        layer.setRenderer(renderer)
        return True
    return False


def apply_vector_style(layer: QgsVectorLayer, style: Optional[Dict[str, Any]]) -> bool:
    if not style or style.get("type") != "single" or not layer.isValid():
        return False
    renderer = layer.renderer()
    symbol = renderer.symbol() if renderer is not None and hasattr(renderer, "symbol") else None
    if symbol is None:
        return False
    symbol.setColor(_color(style.get("color")))
    layer.triggerRepaint()
    return True


@dataclass
class LoadedJob:
    manifest: Manifest
    layers: List[QgsMapLayer] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # "name: why"
    files: List[str] = field(default_factory=list)  # file name of each layer
    unchecked: List[str] = field(default_factory=list)  # layers opened without the GDAL helper
    outputs: List[str] = field(default_factory=list)  # each layer's output key (PROP_OUTPUT)


def _tag(layer: QgsMapLayer, m: Manifest) -> None:
    layer.setCustomProperty(PROP_JOB_UUID, m.uuid)
    if m.job_id is not None:
        layer.setCustomProperty(PROP_TASK_ID if m.is_task else PROP_JOB_ID, m.job_id)
    layer.setCustomProperty(PROP_FOLDER, str(m.folder))


def raster_source(path) -> str:
    """What a raster file is opened as. A VRT is opened through GDAL's ``vrt://``
    connection: GDAL writes a VRT opened by name back to its file when QGIS computes
    statistics on it (it keeps them in the XML), even read-only, and does so when the
    layer closes; a mosaic the daemon republished meanwhile would be overwritten with the
    old one. Through ``vrt://`` the file is only read."""
    path = str(path)
    if path.lower().endswith(".vrt") and not path.startswith("vrt://"):
        return "vrt://" + path
    return path


def _raster(src: str, name: str) -> QgsRasterLayer:
    """A raster layer without the default style (a ``.qml`` next to it is not read)."""
    return QgsRasterLayer(raster_source(src), name, "gdal", QgsRasterLayer.LayerOptions(False))


def _vector(src: str, name: str) -> QgsVectorLayer:
    """A vector layer without the default style (nor a style stored in the file)."""
    return QgsVectorLayer(src, name, "ogr", QgsVectorLayer.LayerOptions(False))


def helper_missing(entry: Dict[str, Any]) -> bool:
    """Whether the daemon's GDAL helper could not look at this file at all."""
    code = entry.get("error_code")
    if code is not None:
        return code == HELPER_MISSING
    # Manifests written before error_code.
    return entry.get("readable") is False and entry.get("error") == "GDAL helper not found"


def _identify(path: Path) -> Optional[str]:
    """The GDAL driver that would open ``path``, without opening it (None: unknown)."""
    try:
        from osgeo import gdal
    except ImportError:
        return None
    try:
        driver = gdal.IdentifyDriverEx(str(path), gdal.OF_RASTER | gdal.OF_VECTOR)
    except RuntimeError:
        return None
    return driver.ShortName if driver is not None else None


def _geojson_crs_link(path: Path) -> Optional[str]:
    """Why a GeoJSON cannot be opened here: a ``crs`` GDAL would fetch, or too big to
    check; ``None`` when fine."""
    try:
        if path.stat().st_size > MAX_CHECKED_JSON:
            return "a GeoJSON too large to check without the GDAL helper"
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None  # not JSON: GDAL will say what it is
    crs = data.get("crs") if isinstance(data, dict) else None
    if isinstance(crs, dict) and str(crs.get("type", "")).lower() in ("link", "url"):
        return "a GeoJSON whose crs is a link (GDAL would fetch it)"
    return None


def unchecked_refusal(path: Path) -> Optional[str]:
    """Why a file the GDAL helper did not look at is not opened by the plugin either;
    ``None`` when it may be."""
    if path.is_symlink() or not path.is_file():
        return "not a regular file"
    if path.name.lower().endswith(SIDE_FILE_SUFFIX):
        return "a side file of the backend"
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20).split(b"\0", 1)[0]
    except OSError as e:
        return f"cannot read it: {e}"
    if b"<VRTDataset" in head or b"<OGRVRTDataSource" in head:
        return "a VRT (its sources cannot be checked without the GDAL helper)"
    driver = _identify(path)
    if driver is None:
        if not path.name.lower().endswith(RESULT_EXTENSIONS):
            return "not a format results come in"
    elif driver not in RESULT_DRIVERS:
        return f"GDAL reads it as {driver}, not a format results come in"
    if driver == "GeoJSON" or path.name.lower().endswith((".geojson", ".json")):
        return _geojson_crs_link(path)
    return None


def _open_unchecked(m: Manifest, entry: Dict[str, Any], name: str, out: "LoadedJob") -> None:
    """A file the GDAL helper could not look at, opened by QGIS: raster, then vector."""
    rel = str(entry.get("path") or "")
    path = _inside(m.folder, rel)
    if path is None or not path.exists():
        out.skipped.append(f"{name}: file {entry.get('path')!r} missing")
        return
    # The name itself, not what a link points to.
    why = "not a regular file" if (m.folder / rel).is_symlink() else unchecked_refusal(path)
    if why is not None:
        out.skipped.append(f"{name}: not opened without the daemon's GDAL helper: {why}")
        return
    details = [d for d in QgsProviderRegistry.instance().querySublayers(str(path)) if d.providerKey() in ("gdal", "ogr")]
    details.sort(key=lambda d: 0 if d.providerKey() == "gdal" else 1)
    if not details:
        out.skipped.append(f"{name}: QGIS cannot open {path.name}")
        return
    options = QgsProviderSublayerDetails.LayerOptions(QgsCoordinateTransformContext())
    options.loadDefaultStyle = False
    for d in details:
        layer_name = name if len(details) == 1 else f"{name} {d.name()}"
        layer = d.toLayer(options)
        if layer is None or not layer.isValid():
            out.skipped.append(f"{layer_name}: QGIS cannot open {d.uri()}")
            continue
        layer.setName(layer_name)
        _tag(layer, m)
        out.layers.append(layer)
        out.files.append(path.name)
        out.unchecked.append(layer_name)


def _distinct_names(out: "LoadedJob") -> None:
    """Layer names that repeat in the group get their file name (older manifests gave
    ``output.tiff`` and ``output.nc`` one name)."""
    counts: Dict[str, int] = {}
    for layer in out.layers:
        counts[layer.name()] = counts.get(layer.name(), 0) + 1
    for layer, file_name in zip(out.layers, out.files):
        if counts[layer.name()] > 1:
            layer.setName(f"{layer.name()} ({file_name})")


def create_layers(m: Manifest) -> LoadedJob:
    """The manifest's layers, created and styled (not added to any project)."""
    out = LoadedJob(m)
    for entry in m.layers:
        first = len(out.layers)
        _add_entry(m, entry, out)
        key = str(entry.get("output") or entry.get("path") or entry.get("name") or "")
        added = out.layers[first:]
        for layer in added:
            layer.setCustomProperty(PROP_OUTPUT, key if len(added) == 1 else f"{key}|{layer.name()}")
            out.outputs.append(layer.customProperty(PROP_OUTPUT))
    _distinct_names(out)
    return out


def _add_entry(m: Manifest, entry: Dict[str, Any], out: LoadedJob) -> None:
    """The layers of one manifest entry (none, one, or one per subdataset or table)."""
    name = str(entry.get("name") or entry.get("path") or "layer")
    kind = entry.get("kind")
    if entry.get("readable") is False:
        if helper_missing(entry):
            _open_unchecked(m, entry, name, out)
        else:
            out.skipped.append(f"{name}: {entry.get('error') or 'not readable'}")
        return
    path = _inside(m.folder, str(entry.get("path") or ""))
    if path is None or not path.exists():
        out.skipped.append(f"{name}: file {entry.get('path')!r} missing")
        return
    style = entry.get("style")
    if kind == "raster":
        subdatasets = [s for s in entry.get("subdatasets") or [] if isinstance(s, dict)]
        sources = []
        if subdatasets:
            for s in subdatasets:
                uri = str(s.get("uri") or "")
                # NETCDF:"file.nc":var with a file name relative to the folder.
                if uri.count('"') >= 2:
                    pre, rel, post = uri.split('"', 2)
                    if _inside(m.folder, rel) is None:
                        continue
                    uri = f'{pre}"{m.folder / rel}"{post}'
                sources.append((f"{name} {s.get('description') or uri.rsplit(':', 1)[-1]}", uri))
        else:
            sources.append((name, str(path)))
        for layer_name, src in sources:
            layer = _raster(src, layer_name)
            if not layer.isValid():
                out.skipped.append(f"{layer_name}: QGIS cannot open {src}")
                continue
            apply_raster_style(layer, style)
            _tag(layer, m)
            out.layers.append(layer)
            out.files.append(path.name)
    elif kind == "vector":
        sublayers = [s for s in entry.get("layers") or [] if isinstance(s, dict)]
        sources = []
        if len(sublayers) > 1:
            for s in sublayers:
                sources.append((f"{name} {s.get('name')}", f"{path}|layername={s.get('name')}"))
        else:
            sources.append((name, str(path)))
        for layer_name, src in sources:
            layer = _vector(src, layer_name)
            if not layer.isValid():
                out.skipped.append(f"{layer_name}: QGIS cannot open {src}")
                continue
            apply_vector_style(layer, style)
            _tag(layer, m)
            out.layers.append(layer)
            out.files.append(path.name)
    else:
        out.skipped.append(f"{name}: not a map layer")


def find_group(project: QgsProject, uuid: str) -> Optional[QgsLayerTreeGroup]:
    """The layer group of a job in the project, if any."""
    for group in _all_groups(project.layerTreeRoot()):
        if group.customProperty(PROP_JOB_UUID) == uuid:
            return group
    return None


def _all_groups(group: QgsLayerTreeGroup) -> List[QgsLayerTreeGroup]:
    out = []
    for child in group.children():
        if isinstance(child, QgsLayerTreeGroup):
            out.append(child)
            out.extend(_all_groups(child))
    return out


def add_to_project(loaded: LoadedJob, project: Optional[QgsProject] = None, replace: bool = False) -> QgsLayerTreeGroup:
    """Adds the layers as a group named after the job, at the top of the layer tree.
    With ``replace``, an existing group of the same job is removed first (reload)."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    m = loaded.manifest
    existing = find_group(project, m.uuid)
    if existing is not None:
        if not replace:
            return existing
        ids = [l.layerId() for l in existing.findLayers()]
        existing.parent().removeChildNode(existing)
        project.removeMapLayers(ids)
    group = root.insertGroup(0, m.group_name)
    group.setCustomProperty(PROP_JOB_UUID, m.uuid)
    group.setCustomProperty(PROP_FOLDER, str(m.folder))
    if m.is_task:
        group.setCustomProperty(PROP_TASK_ID, m.job_id)
        group.setCustomProperty(PROP_SEEN_OUTPUTS, json.dumps(_entry_keys(m)))
    for layer in loaded.layers:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    # The tree view follows expandedChanged: toggle so that it opens the new group.
    group.setExpanded(False)
    group.setExpanded(True)
    return group


def _entry_key(entry: Dict[str, Any]) -> str:
    return str(entry.get("output") or entry.get("path") or entry.get("name") or "")


def _entry_keys(m: Manifest) -> List[str]:
    return [_entry_key(e) for e in m.layers]


def reload_layer(layer: QgsMapLayer, project: Optional[QgsProject] = None) -> bool:
    """Opens a layer's file again, in place: the same layer object (its id, its place in
    the layer tree and its style are kept), the file's new content and extent. For a
    file the daemon replaced (a growing mosaic)."""
    project = project or QgsProject.instance()
    options = QgsDataProvider.ProviderOptions()
    options.transformContext = project.transformContext()
    renderer = layer.renderer().clone() if isinstance(layer, QgsRasterLayer) and layer.renderer() else None
    provider = layer.dataProvider()
    if provider is not None and not isinstance(layer, QgsRasterLayer):
        # OGR keeps connections to a file by name: drop them, or the old file is read.
        provider.invalidateConnections(layer.source())
    layer.setDataSource(layer.source(), layer.name(), layer.providerType(), options, False)
    if renderer is not None and layer.isValid():
        layer.setRenderer(renderer)
    layer.triggerRepaint()
    return layer.isValid()


def refresh_task_group(project: QgsProject, m: Manifest) -> Optional[LoadedJob]:
    """A task's group brought up to ``task.json`` ``m``: each mosaic layer already in the
    group is reopened in place (``reload_layer``), outputs new to the manifest are added
    to the group; a layer the user removed stays removed. ``None`` when the task has no
    group in the project (removed by the user: nothing is added back). The result lists
    the layers reloaded and added."""
    group = find_group(project, m.uuid)
    if group is None:
        return None
    try:
        seen = set(json.loads(group.customProperty(PROP_SEEN_OUTPUTS) or "[]"))
    except ValueError:
        seen = set()
    existing: Dict[str, QgsMapLayer] = {}
    for node in group.findLayers():
        layer = node.layer()
        if layer is not None and layer.customProperty(PROP_OUTPUT):
            existing[str(layer.customProperty(PROP_OUTPUT))] = layer
    out = LoadedJob(m)
    for entry in m.layers:
        key = _entry_key(entry)
        mine = {k: v for k, v in existing.items() if k == key or k.startswith(key + "|")}
        if mine:
            for layer in mine.values():
                if reload_layer(layer, project):
                    out.layers.append(layer)
                else:
                    out.skipped.append(f"{layer.name()}: QGIS cannot open {layer.source()} again")
            continue
        if key in seen:
            continue  # removed by the user
        single = LoadedJob(m)
        _add_entry(m, entry, single)
        for layer in single.layers:
            layer.setCustomProperty(PROP_OUTPUT, key if len(single.layers) == 1 else f"{key}|{layer.name()}")
            project.addMapLayer(layer, False)
            group.addLayer(layer)
            out.layers.append(layer)
        out.skipped.extend(single.skipped)
    group.setCustomProperty(PROP_SEEN_OUTPUTS, json.dumps(sorted(seen | set(_entry_keys(m)))))
    group.setCustomProperty(PROP_FOLDER, str(m.folder))
    return out
