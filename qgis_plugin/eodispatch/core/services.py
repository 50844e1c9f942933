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
from .params import OPENEO, params_body

SETTINGS_KEY = "eodispatch/services_cache"


def service_key(endpoint: str, application: str, namespace: Optional[str] = None) -> str:
    """The cache key of a service's parameters: an OGC API Processes server may offer
    the same process id in several namespaces."""
    return f"{endpoint}|{namespace}|{application}" if namespace else f"{endpoint}|{application}"


def key_of(service: Dict[str, Any]) -> str:
    """``service_key`` of a ``GET /services`` entry."""
    return service_key(str(service.get("endpoint") or ""), str(service.get("application") or ""), service.get("namespace"))


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
        self._pending = 0  # parameter answers still awaited for the whole catalogue
        self._dirty = False  # some of them changed what is known
        self._queue: List[tuple] = []  # services whose parameters are still to be asked
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
        # The whole catalogue's parameters (for the Processing algorithms) arrive as one
        # change: saved and announced once, when the last answer is in, not once per
        # service (70 rebuilds of the toolbox and the picker otherwise).
        # One request at a time: the client's few connections to the daemon stay free
        # for what the user does meanwhile (a cancel must not queue behind 70 of these).
        self._pending = len(services)
        self._dirty = False
        self._queue = [
            (s.get("label") or OPENEO, s["endpoint"], s["application"], s.get("namespace")) for s in services
        ]
        self._fetch_next()

    def _fetch_next(self) -> None:
        if self._queue:
            label, endpoint, application, namespace = self._queue.pop(0)
            self.fetch_params(label, endpoint, application, namespace, batch=True)

    def fetch_params(
        self, label: str, endpoint: str, application: str, namespace: Optional[str] = None, batch: bool = False
    ) -> None:
        key = service_key(endpoint, application, namespace)

        def done(result: ApiResult) -> None:
            if not result.ok or not isinstance(result.data, list):
                self.params_failed.emit(key, result.error)
            else:
                changed = self.params.get(key) != result.data
                self.params[key] = result.data
                self.params_ready.emit(key, result.data)
                if changed and not batch:
                    self._save()
                    self.changed.emit()
                self._dirty = self._dirty or changed
            if batch:
                self._pending = max(0, self._pending - 1)
                if self._pending == 0 and self._dirty:
                    self._dirty = False
                    self._save()
                    self.changed.emit()
                self._fetch_next()

        if self.client is not None:
            self.client.post("/params", params_body(label, endpoint, application, namespace), done)

    def params_of(self, endpoint: str, application: str, namespace: Optional[str] = None) -> Optional[List[Dict[str, Any]]]:
        return self.params.get(service_key(endpoint, application, namespace))
