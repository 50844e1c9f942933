"""A project without layers is offered, once, an OpenStreetMap background (QGIS's own
XYZ tiles source) in the message bar, so that job footprints and results have a map under
them; "once" is remembered in QgsSettings. (No tile is fetched in these tests: no layer
is rendered.)"""


def test_an_empty_project_is_offered_openstreetmap_once(qgis_app, qgis_iface, qgis_new_project, daemon,
                                                        fresh_settings):
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QPushButton

    import eodispatch
    from eodispatch.plugin import OSM_OFFERED_KEY

    assert QgsProject.instance().mapLayers() == {}
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        widget = plugin._osm_bar
        assert widget is not None and "OpenStreetMap" in widget.text()
        assert qgis_iface.messageBar().currentItem() is widget
        assert fresh_settings.value(OSM_OFFERED_KEY, False, type=bool) is True
        [button] = [b for b in widget.findChildren(QPushButton) if b.text() == "Add OpenStreetMap"]
        button.click()
        layers = list(QgsProject.instance().mapLayers().values())
        assert len(layers) == 1
        osm = layers[0]
        assert isinstance(osm, QgsRasterLayer) and osm.isValid() and osm.providerType() == "wms"
        assert osm.source() == "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0"
        assert osm.name() == "OpenStreetMap"
        # At the bottom of the layer tree: footprints and results go above it.
        root = QgsProject.instance().layerTreeRoot()
        assert root.children()[-1].layerId() == osm.id()
        assert qgis_iface.messageBar().currentItem() is not widget
    finally:
        plugin.unload()
    # Offered once: an empty project at the next start is not offered it again.
    QgsProject.instance().removeAllMapLayers()
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        assert plugin._osm_bar is None
    finally:
        plugin.unload()


def test_a_project_with_layers_is_not_offered_a_background(qgis_app, qgis_iface, qgis_new_project, daemon,
                                                           fresh_settings):
    from qgis.core import QgsProject, QgsVectorLayer

    import eodispatch
    from eodispatch.plugin import OSM_OFFERED_KEY

    layer = QgsVectorLayer("Point?crs=EPSG:4326", "mine", "memory")
    QgsProject.instance().addMapLayer(layer)
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        assert plugin._osm_bar is None
        # Not used up: an empty project another time is still offered it.
        assert fresh_settings.value(OSM_OFFERED_KEY, False, type=bool) is False
    finally:
        plugin.unload()
