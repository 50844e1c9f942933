"""The "Job footprints" layer: each job's extent, coloured by status as the APEx
notebook draws them (created blue, queued orange, running yellow, finished green,
canceled grey, failed red), updated from the event stream.

A memory layer (EPSG:4326) with fields ``job_id, title, status, progress, updated``
and a categorized renderer on ``status``. It is the plugin's: not saved with the
project's data (refilled from the daemon on start).

No Qt widgets here.
"""

from typing import Any, Dict, Optional

from qgis.core import (
    Qgis,
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer

from .params import job_bbox

LAYER_NAME = "Job footprints"
PROP_FOOTPRINTS = "eodispatch/footprints"

STATUS_COLORS: Dict[str, str] = {
    "created": "#1f78b4",  # blue
    "queued": "#ff7f00",  # orange
    "running": "#ffd92f",  # yellow
    "finished": "#33a02c",  # green
    "canceled": "#969696",  # grey
    "failed": "#e31a1c",  # red
}


def make_renderer() -> QgsCategorizedSymbolRenderer:
    categories = []
    for status, color in STATUS_COLORS.items():
        sym = QgsFillSymbol.createSimple(
            {"color": color, "outline_color": color, "outline_width": "0.6"}
        )
        fill = sym.color()
        fill.setAlpha(90)
        sym.symbolLayer(0).setFillColor(fill)
        categories.append(QgsRendererCategory(status, sym, status))
    return QgsCategorizedSymbolRenderer("status", categories)


def _field(name: str, kind: type) -> QgsField:
    """A field on QGIS 3.22 (QVariant types) and on 3.38+ / Qt6 (QMetaType types)."""
    if Qgis.QGIS_VERSION_INT >= 33800:
        from qgis.PyQt.QtCore import QMetaType

        return QgsField(name, QMetaType.Type.Int if kind is int else QMetaType.Type.QString)
    from qgis.PyQt.QtCore import QVariant

    return QgsField(name, QVariant.Int if kind is int else QVariant.String)


def make_layer() -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", LAYER_NAME, "memory")
    provider = layer.dataProvider()
    provider.addAttributes(
        [
            _field("job_id", int),
            _field("title", str),
            _field("status", str),
            _field("progress", int),
            _field("updated", str),
        ]
    )
    layer.updateFields()
    layer.setRenderer(make_renderer())
    layer.setCustomProperty(PROP_FOOTPRINTS, True)
    layer.setCustomProperty("skipMemoryLayersCheck", 1)
    return layer


class Footprints:
    """Keeps the footprint layer in step with the jobs (GUI thread)."""

    def __init__(self, project: Optional[QgsProject] = None):
        self._project = project
        self._layer: Optional[QgsVectorLayer] = None
        self._fids: Dict[int, int] = {}

    @property
    def project(self) -> QgsProject:
        return self._project or QgsProject.instance()

    def layer(self, create: bool = True) -> Optional[QgsVectorLayer]:
        """The layer in the project, (re)created when it was removed or the project
        changed."""
        layer = self._layer
        alive = False
        if layer is not None:
            try:
                alive = self.project.mapLayer(layer.id()) is not None
            except RuntimeError:  # deleted with a closed project
                alive = False
        if not alive:
            self._layer = None
            self._fids = {}
            if not create:
                return None
            # A footprint layer of a saved project: adopt it (emptied: refilled live).
            for candidate in self.project.mapLayers().values():
                if candidate.customProperty(PROP_FOOTPRINTS) and isinstance(candidate, QgsVectorLayer):
                    provider = candidate.dataProvider()
                    provider.deleteFeatures([f.id() for f in candidate.getFeatures()])
                    candidate.setRenderer(make_renderer())
                    self._layer = candidate
                    return candidate
            layer = make_layer()
            # The footprints are not the user's data: adding them first to an empty
            # project must not switch the project to their CRS (EPSG:4326).
            crs = self.project.crs()
            first = not self.project.mapLayers()
            self.project.addMapLayer(layer)
            if first and crs.isValid():
                # QGIS's canvas bridge sets the CRS of the first layer on its next,
                # deferred update: put the project's back after it.
                project = self.project

                def restore():
                    try:
                        if project.crs() != crs:
                            project.setCrs(crs)
                    except RuntimeError:
                        pass

                restore()
                QTimer.singleShot(0, restore)
            self._layer = layer
        return self._layer

    def update_job(self, job: Dict[str, Any]) -> None:
        """Adds, moves or recolours the footprint of a job (``deleted`` removes it)."""
        jid = job.get("id")
        if not isinstance(jid, int):
            return
        if job.get("deleted"):
            self.remove_job(jid)
            return
        bbox = job_bbox(job)
        if bbox is None:
            return
        layer = self.layer()
        provider = layer.dataProvider()
        geom = QgsGeometry.fromRect(
            QgsRectangle(bbox["west"], bbox["south"], bbox["east"], bbox["north"])
        )
        progress = job.get("progress")
        attrs = [
            jid,
            str(job.get("title") or ""),
            str(job.get("status") or ""),
            int(progress) if isinstance(progress, (int, float)) else None,
            str(job.get("updated") or ""),
        ]
        fid = self._fids.get(jid)
        if fid is not None and layer.getFeature(fid).isValid():
            provider.changeAttributeValues({fid: dict(enumerate(attrs))})
            provider.changeGeometryValues({fid: geom})
        else:
            f = QgsFeature(layer.fields())
            f.setAttributes(attrs)
            f.setGeometry(geom)
            ok, added = provider.addFeatures([f])
            if ok and added:
                self._fids[jid] = added[0].id()
        layer.updateExtents()
        layer.triggerRepaint()

    def remove_job(self, jid: int) -> None:
        layer = self.layer(create=False)
        fid = self._fids.pop(jid, None)
        if layer is not None and fid is not None:
            layer.dataProvider().deleteFeatures([fid])
            layer.triggerRepaint()

    def status_of(self, jid: int) -> Optional[str]:
        layer = self.layer(create=False)
        fid = self._fids.get(jid)
        if layer is None or fid is None:
            return None
        return layer.getFeature(fid)["status"]

    def color_of(self, jid: int) -> Optional[str]:
        """The fill colour the renderer gives the job's footprint (``#rrggbb``)."""
        layer = self.layer(create=False)
        fid = self._fids.get(jid)
        if layer is None or fid is None:
            return None
        from qgis.core import QgsRenderContext

        feature = layer.getFeature(fid)
        renderer = layer.renderer().clone()
        ctx = QgsRenderContext()
        renderer.startRender(ctx, layer.fields())
        try:
            sym = renderer.symbolForFeature(feature, ctx)
            return sym.color().name() if sym is not None else None
        finally:
            renderer.stopRender(ctx)

    def remove_layer(self) -> None:
        layer = self.layer(create=False)
        if layer is not None:
            self.project.removeMapLayer(layer.id())
        self._layer = None
        self._fids = {}
