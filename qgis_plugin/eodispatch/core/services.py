"""The known services (``GET /services``) and their parameters (``POST /params``),
fetched asynchronously and cached in ``QgsSettings`` so that the Processing provider has
its algorithms at start-up without waiting for the daemon.

No Qt widgets here.
"""

import json
from typing import Any, Dict, List, Optional

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .client import ApiResult, DaemonClient

SETTINGS_KEY = "eodispatch/services_cache"


def service_key(endpoint: str, application: str) -> str:
    return f"{endpoint}|{application}"


class ServiceCatalog(QObject):
    changed = pyqtSignal()  # services or parameters changed
    params_ready = pyqtSignal(str, list)  # service key, descriptors
    params_failed = pyqtSignal(str, object)  # service key, ApiError

    def __init__(self, client: Optional[DaemonClient] = None, parent: Optional[QObject] = None, persist: bool = True):
        super().__init__(parent)
        self.client = client
        self.persist = persist
        self.services: List[Dict[str, Any]] = []
        self.params: Dict[str, List[Dict[str, Any]]] = {}
        if persist:
            self._restore()

    def _restore(self) -> None:
        raw = QgsSettings().value(SETTINGS_KEY, "", type=str)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        self.services = [s for s in data.get("services") or [] if isinstance(s, dict)]
        self.params = {k: v for k, v in (data.get("params") or {}).items() if isinstance(v, list)}

    def _save(self) -> None:
        if self.persist:
            QgsSettings().setValue(
                SETTINGS_KEY, json.dumps({"services": self.services, "params": self.params})
            )

    def set_data(self, services: List[Dict[str, Any]], params: Dict[str, List[Dict[str, Any]]]) -> None:
        """Replaces the catalogue (tests, and the blocking path)."""
        self.services = list(services)
        self.params = dict(params)
        self._save()
        self.changed.emit()

    def refresh(self) -> None:
        """Fetches ``/services``, then the parameters of each service."""
        if self.client is not None:
            self.client.get("/services", self._got_services)

    def _got_services(self, result: ApiResult) -> None:
        if not result.ok or not isinstance(result.data, list):
            return
        services = [s for s in result.data if isinstance(s, dict) and s.get("application")]
        if services != self.services:
            self.services = services
            self._save()
            self.changed.emit()
        for s in services:
            self.fetch_params(s.get("label", "openeo"), s["endpoint"], s["application"], s.get("namespace"))

    def fetch_params(self, label: str, endpoint: str, application: str, namespace: Optional[str] = None) -> None:
        key = service_key(endpoint, application)
        service: Dict[str, Any] = {"endpoint": endpoint, "application": application}
        if namespace:
            service["namespace"] = namespace

        def done(result: ApiResult) -> None:
            if not result.ok or not isinstance(result.data, list):
                self.params_failed.emit(key, result.error)
                return
            changed = self.params.get(key) != result.data
            self.params[key] = result.data
            self.params_ready.emit(key, result.data)
            if changed:
                self._save()
                self.changed.emit()

        if self.client is not None:
            self.client.post("/params", {"label": label, "service": service}, done)

    def params_of(self, endpoint: str, application: str) -> Optional[List[Dict[str, Any]]]:
        return self.params.get(service_key(endpoint, application))
