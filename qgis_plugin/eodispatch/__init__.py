"""EO Dispatch: QGIS plugin of the eodispatch daemon.

QGIS imports this module when it loads the plugin; nothing heavy happens here: the plugin
class is imported only when QGIS asks for it (``classFactory``).
"""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Called by QGIS: returns the plugin instance."""
    from .plugin import EoDispatchPlugin

    return EoDispatchPlugin(iface)
