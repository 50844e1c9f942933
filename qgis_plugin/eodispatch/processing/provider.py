"""The "EO Dispatch" Processing provider: an algorithm per known service (from the
service catalogue, cached so that the toolbox is complete at start-up) and a generic
one."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.services import ServiceCatalog, key_of
from .algorithms import GenericAlgorithm, ServiceAlgorithm, UpscaleAlgorithm

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")


class EoDispatchProvider(QgsProcessingProvider):
    def __init__(self, catalog: ServiceCatalog):
        super().__init__()
        self.catalog = catalog

    def id(self) -> str:
        return "eodispatch"

    def name(self) -> str:
        return "EO Dispatch"

    def longName(self) -> str:  # noqa: N802
        return "EO Dispatch (ESA APEx services through the eodispatch daemon)"

    def icon(self):
        return QIcon(ICON)

    def loadAlgorithms(self):  # noqa: N802
        self.addAlgorithm(GenericAlgorithm())
        self.addAlgorithm(UpscaleAlgorithm(self.catalog.services))
        seen = set()
        for service in self.catalog.services:
            alg = ServiceAlgorithm(service, self.catalog.params.get(key_of(service)))
            if alg.name() in seen:
                continue
            seen.add(alg.name())
            self.addAlgorithm(alg)
