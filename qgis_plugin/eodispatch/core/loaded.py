"""Auto-loading of published job folders, and the memory of what was loaded.

``LoadedRegistry`` remembers, per job UUID, the folder loaded (a small JSON file in the
QGIS profile: ``<profile>/eodispatch/loaded.json``), so that restarting QGIS does not
load a job twice. Each loaded group also carries the job UUID as a custom property, so
a saved project that already holds a job's group is recognised too.

``AutoLoader`` watches ``results_dir`` (``QFileSystemWatcher`` plus a rescan every few
seconds, for file systems without notifications):

- a folder that appears while QGIS runs is loaded at once (``job_loaded``);
- folders that arrived while QGIS was closed are found by the first scan and offered
  (``missed_found``), not loaded without asking; ``load_missed()`` loads them.

An upscale task's folder (``task.json``; its tiles' job folders are inside it and are
not loaded one by one) is loaded as ONE group holding its mosaic layers, once
``task.json`` has a layer. While the task is not ``final`` the folder is watched: each
time the daemon republishes ``task.json`` (a new inode or time), the mosaic layers are
reopened in place — same layers, same place in the tree, same style — and outputs new to
the manifest are added (``task_refreshed``); ``final`` ends the watch (``task_final``).

No Qt widgets here.
"""

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import QFileSystemWatcher, QObject, QTimer, pyqtSignal

from .client import log
from .runner import is_claimed
from .manifest import (
    TASK_MANIFEST,
    LoadedJob,
    Manifest,
    ManifestError,
    add_to_project,
    create_layers,
    find_group,
    is_job_folder,
    is_task_folder,
    read_any_manifest,
    read_manifest,
    read_task_manifest,
    refresh_task_group,
)


def default_registry_path() -> Path:
    return Path(QgsApplication.qgisSettingsDirPath()) / "eodispatch" / "loaded.json"


class LoadedRegistry:
    """Job UUID → folder that was loaded, persisted as JSON (written atomically)."""

    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path else default_registry_path()
        self._loaded: Dict[str, Dict[str, str]] = {}
        self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            loaded = data.get("loaded") if isinstance(data, dict) else None
            if isinstance(loaded, dict):
                self._loaded = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            self._loaded = {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "loaded": self._loaded}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def is_loaded(self, uuid: str) -> bool:
        return uuid in self._loaded

    def folders(self) -> List[str]:
        return [v.get("folder", "") for v in self._loaded.values()]

    def add(self, uuid: str, folder: Path) -> None:
        self._loaded[uuid] = {
            "folder": str(folder),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._write()

    def forget(self, uuid: str) -> None:
        if self._loaded.pop(uuid, None) is not None:
            self._write()


def _uuid_of(folder: Path) -> Optional[str]:
    try:
        return read_manifest(folder).uuid
    except ManifestError:
        return None


def _stamp(folder: Path) -> Optional[tuple]:
    """What tells a republished ``task.json`` (written through a rename) from the last."""
    try:
        st = (Path(folder) / TASK_MANIFEST).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def has_map_layers(m: Manifest) -> bool:
    return any(e.get("kind") in ("raster", "vector") for e in m.layers)


def task_claim(task_id) -> str:
    """The claim (``runner.claim``) of a task a Processing algorithm loads itself."""
    return f"task:{task_id}"


class AutoLoader(QObject):
    """Loads job folders that appear in ``results_dir`` (GUI thread)."""

    job_loaded = pyqtSignal(object)  # LoadedJob (a task's: its first mosaic layers)
    task_refreshed = pyqtSignal(object)  # LoadedJob: a task's layers reopened or added
    task_final = pyqtSignal(object)  # Manifest: a task's mosaic will not change any more
    missed_found = pyqtSignal(list)  # [folder path str] that arrived while QGIS was closed
    load_failed = pyqtSignal(str, str)  # folder, message

    RESCAN_MS = 3000

    def __init__(
        self,
        results_dir: Path,
        registry: Optional[LoadedRegistry] = None,
        project: Optional[QgsProject] = None,
        parent: Optional[QObject] = None,
    ):
        super().__init__(parent)
        self.results_dir = Path(results_dir)
        self.registry = registry or LoadedRegistry()
        self._project = project
        self.missed: List[Path] = []
        self._broken: set = set()
        self._uuids: Dict[str, str] = {}
        # Task folders: the last task.json read (stamp, manifest), and those whose group
        # is followed as the mosaic grows (folder -> stamp of the last refresh).
        self._task_seen: Dict[str, tuple] = {}
        self.tracked: Dict[str, Optional[tuple]] = {}
        self._started = False
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(lambda _p: self.scan())
        self._timer = QTimer(self)
        self._timer.setInterval(self.RESCAN_MS)
        self._timer.timeout.connect(self.scan)

    @property
    def project(self) -> QgsProject:
        return self._project or QgsProject.instance()

    def set_results_dir(self, results_dir: Path) -> None:
        if Path(results_dir) == self.results_dir:
            return
        for p in self._watcher.directories():
            self._watcher.removePath(p)
        self.results_dir = Path(results_dir)
        if self._started:
            self._watch()
            self.scan(initial=True)

    def start(self) -> None:
        """First scan (offers what arrived while closed), then watch."""
        self._started = True
        self._watch()
        self.scan(initial=True)
        self._timer.start()

    def stop(self) -> None:
        self._started = False
        self._timer.stop()
        for p in self._watcher.directories():
            self._watcher.removePath(p)

    def _watch(self) -> None:
        watched = self._watcher.directories()
        if self.results_dir.is_dir() and str(self.results_dir) not in watched:
            self._watcher.addPath(str(self.results_dir))
        for folder in self.tracked:
            if folder not in watched and Path(folder).is_dir():
                self._watcher.addPath(folder)

    def _track(self, folder: Path, stamp: Optional[tuple]) -> None:
        self.tracked[str(folder)] = stamp
        if self._started and str(folder) not in self._watcher.directories():
            self._watcher.addPath(str(folder))

    def _untrack(self, folder: str) -> None:
        self.tracked.pop(folder, None)
        if folder in self._watcher.directories():
            self._watcher.removePath(folder)

    def _task_manifest(self, folder: Path) -> Optional[Manifest]:
        """``task.json`` of a task folder, read again only when it was republished."""
        stamp = _stamp(folder)
        seen = self._task_seen.get(str(folder))
        if seen is not None and seen[0] == stamp:
            return seen[1]
        try:
            m = read_task_manifest(folder)
        except ManifestError:
            return None  # being replaced, or not ours: looked at again at the next scan
        self._task_seen[str(folder)] = (stamp, m)
        return m

    def _new_task(self, folder: Path) -> bool:
        """Whether a task folder is to be loaded (or offered); follows one whose group
        is in the project already."""
        m = self._task_manifest(folder)
        if m is None:
            return False
        uuid = m.uuid
        in_project = find_group(self.project, uuid) is not None
        if in_project and not m.final and str(folder) not in self.tracked:
            self._track(folder, None)
        if self.registry.is_loaded(uuid):
            return False
        if is_claimed(uuid) or is_claimed(task_claim(m.job_id)):
            self.registry.add(uuid, folder)
            return False
        if in_project:
            self.registry.add(uuid, folder)
            return False
        # Loaded once the mosaic has a layer (the first task.json may have none yet).
        return has_map_layers(m)

    def refresh_tasks(self) -> None:
        """Brings the groups of followed task folders up to their ``task.json``."""
        for folder in list(self.tracked):
            stamp = _stamp(Path(folder))
            if stamp is None:
                if not Path(folder).exists():
                    self._untrack(folder)
                continue
            if stamp == self.tracked.get(folder):
                continue
            m = self._task_manifest(Path(folder))
            if m is None:
                continue
            refreshed = refresh_task_group(self.project, m)
            if refreshed is None:
                self._untrack(folder)  # the group was removed: not added back
                continue
            self.tracked[folder] = stamp
            for s in refreshed.skipped:
                log(f"{m.group_name}: {s}", Qgis.MessageLevel.Warning)
            self.task_refreshed.emit(refreshed)
            if m.final:
                self._untrack(folder)
                self.task_final.emit(m)

    def _new_folders(self) -> List[Path]:
        try:
            entries = sorted(self.results_dir.iterdir())
        except OSError:
            return []
        out = []
        missed = {str(p) for p in self.missed}
        for folder in entries:
            if str(folder) in missed or str(folder) in self._broken:
                continue
            if is_task_folder(folder):
                if self._new_task(folder):
                    out.append(folder)
                continue
            if not is_job_folder(folder):
                continue
            # Published folders never change (one rename): read each manifest once.
            uuid = self._uuids.get(str(folder)) or _uuid_of(folder)
            if uuid is not None:
                self._uuids[str(folder)] = uuid
            if uuid is None:
                self._broken.add(str(folder))
                self.load_failed.emit(str(folder), "job.json is not a readable eodispatch manifest")
                continue
            if self.registry.is_loaded(uuid):
                continue
            if is_claimed(uuid):
                # A Processing algorithm returns these layers itself.
                self.registry.add(uuid, folder)
                continue
            if find_group(self.project, uuid) is not None:
                # In the project already (a saved project): remember it, do not duplicate.
                self.registry.add(uuid, folder)
                continue
            out.append(folder)
        return out

    def scan(self, initial: bool = False) -> None:
        if not self._started:
            return
        self._watch()
        new = self._new_folders()
        self.refresh_tasks()
        if not new:
            return
        if initial:
            self.missed.extend(new)
            log(f"{len(new)} result folder(s) arrived while QGIS was closed: offered")
            self.missed_found.emit([str(p) for p in new])
            return
        for folder in new:
            self.load_folder(folder)

    def load_missed(self) -> List[LoadedJob]:
        missed, self.missed = self.missed, []
        return [j for j in (self.load_folder(f) for f in missed) if j is not None]

    def dismiss_missed(self) -> None:
        """Not now: offered again at the next start."""
        self.missed = []

    def load_folder(self, folder, replace: bool = False) -> Optional[LoadedJob]:
        """Loads one job folder, or a task folder's mosaics, as a layer group
        (``replace``: load again)."""
        folder = Path(folder)
        stamp = _stamp(folder)  # before reading: a task.json republished meanwhile is read again
        try:
            manifest = read_any_manifest(folder)
        except ManifestError as e:
            if not is_task_folder(folder):  # a task.json being replaced is read again later
                self._broken.add(str(folder))
            self.load_failed.emit(str(folder), str(e))
            return None
        if not replace and find_group(self.project, manifest.uuid) is not None:
            self.registry.add(manifest.uuid, folder)
            return None
        loaded = create_layers(manifest)
        add_to_project(loaded, self.project, replace=replace)
        self.registry.add(manifest.uuid, folder)
        if manifest.is_task:
            if manifest.final:
                self._untrack(str(folder))
            else:
                self._track(folder, stamp)
        for s in loaded.skipped:
            log(f"{manifest.group_name}: not loaded: {s}", Qgis.MessageLevel.Warning)
        self.job_loaded.emit(loaded)
        return loaded
