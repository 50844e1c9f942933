"""Submit a job and wait for its published results, blocking: for Processing algorithms
(they run in a worker thread) — never call this on the GUI thread of QGIS.

Results: the job's ``results.dir`` once ``results.state`` is ``ready``; otherwise a
published folder of ``results_dir`` whose ``job.json`` names the job's UUID (the same
thing, found by looking; it also covers a daemon that published before answering).

No Qt widgets here.
"""

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from qgis.core import QgsFeedback

from .client import ApiError, blocking_request
from .daemon import DaemonInfo
from .manifest import ManifestError, is_job_folder, read_manifest

# Job UUIDs whose results a Processing algorithm loads itself: the auto-loader only
# records them, so that they do not appear twice.
_CLAIMED = set()
_CLAIMED_LOCK = threading.Lock()


def claim(uuid: str) -> None:
    with _CLAIMED_LOCK:
        _CLAIMED.add(uuid)


def is_claimed(uuid: str) -> bool:
    with _CLAIMED_LOCK:
        return uuid in _CLAIMED


class JobFailed(Exception):
    pass


def find_published_folder(results_dir: Path, uuid: str, job_id: Optional[int] = None) -> Optional[Path]:
    try:
        entries = list(Path(results_dir).iterdir())
    except OSError:
        return None
    # The folder name ends in _<id>: look at those first.
    entries.sort(key=lambda p: 0 if job_id is not None and p.name.endswith(f"_{job_id}") else 1)
    for folder in entries:
        if not is_job_folder(folder):
            continue
        try:
            if read_manifest(folder).uuid == uuid:
                return folder
        except ManifestError:
            continue
    return None


def _sleep(seconds: float, feedback: Optional[QgsFeedback]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if feedback is not None and feedback.isCanceled():
            return
        time.sleep(0.05)


def submit_and_wait(
    info: DaemonInfo,
    body: Dict[str, Any],
    feedback: Optional[QgsFeedback] = None,
    on_info: Callable[[str], None] = lambda _m: None,
    poll_s: float = 1.0,
) -> Dict[str, Any]:
    """Submits ``body`` (a ``POST /unit_jobs`` body) and waits until the job finished and
    its results are published. Returns ``{"job": ..., "folder": Path}``. Cancelling
    ``feedback`` cancels the job on the daemon. Raises ``ApiError`` / ``JobFailed``."""
    job = blocking_request(info, "POST", "/unit_jobs", body, feedback)
    jid, uuid = job["id"], job.get("uuid", "")
    claim(uuid)
    on_info(f"job #{jid} submitted ({job.get('status')})")
    last_status = job.get("status")
    while True:
        if feedback is not None and feedback.isCanceled():
            try:
                blocking_request(info, "POST", f"/unit_jobs/{jid}/cancel", {}, None, 10)
                on_info(f"job #{jid} canceled")
            except ApiError as e:
                on_info(f"job #{jid}: cancel failed: {e.message}")
            raise JobFailed("canceled")
        status = job.get("status")
        if status != last_status:
            on_info(f"job #{jid}: {status}")
            last_status = status
        progress = job.get("progress")
        if feedback is not None:
            if isinstance(progress, (int, float)):
                feedback.setProgress(min(90.0, float(progress) * 0.9))
            elif status == "finished":
                feedback.setProgress(90.0)
        if status == "failed":
            err = job.get("error") or {}
            raise JobFailed(f"job #{jid} failed: {err.get('message') or err.get('code') or 'no reason given'}")
        if status == "canceled":
            raise JobFailed(f"job #{jid} was canceled")
        if status == "finished":
            results = job.get("results") or {}
            state = results.get("state")
            if state == "failed":
                raise JobFailed(f"job #{jid}: downloading its results failed; retry from the job list")
            folder = None
            if state == "ready" and results.get("dir"):
                folder = Path(results["dir"])
            if folder is None or not is_job_folder(folder):
                folder = find_published_folder(info.results_dir, uuid, jid)
            if folder is not None:
                if feedback is not None:
                    feedback.setProgress(100.0)
                return {"job": job, "folder": folder}
        _sleep(poll_s, feedback)
        if feedback is not None and feedback.isCanceled():
            continue
        try:
            job = blocking_request(info, "GET", f"/unit_jobs/{jid}", None, feedback)
        except ApiError as e:
            if e.code != "Canceled":
                raise


def submit_task_and_wait(
    info: DaemonInfo,
    body: Dict[str, Any],
    feedback: Optional[QgsFeedback] = None,
    on_info: Callable[[str], None] = lambda _m: None,
    poll_s: float = 1.0,
    final_timeout_s: float = 120.0,
) -> Dict[str, Any]:
    """Submits ``body`` (a ``POST /upscale_tasks`` body) and waits until every tile has
    ended, every delivery too, and the task folder's ``task.json`` is ``final``. Returns
    ``{"task": ..., "folder": Path}``. Progress is the task's. Cancelling ``feedback``
    cancels the task on the daemon. Raises ``ApiError`` / ``JobFailed`` (no tile
    finished, or no final mosaic)."""
    from .loaded import task_claim
    from .upscale import find_task_folder, read_task_json

    task = blocking_request(info, "POST", "/upscale_tasks", body, feedback)
    tid = task["id"]
    claim(task_claim(tid))
    on_info(f"upscale task #{tid} submitted: {len(task.get('jobs') or [])} tiles")
    last = None
    final_since = None
    while True:
        if feedback is not None and feedback.isCanceled():
            try:
                blocking_request(info, "POST", f"/upscale_tasks/{tid}/cancel", {}, None, 10)
                on_info(f"upscale task #{tid} canceled")
            except ApiError as e:
                on_info(f"upscale task #{tid}: cancel failed: {e.message}")
            raise JobFailed("canceled")
        counts = task.get("counts") or {}
        summary = (task.get("status"), tuple(sorted(counts.items())))
        if summary != last:
            on_info(f"task #{tid}: {task.get('status')}, " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
            last = summary
        if feedback is not None and isinstance(task.get("progress"), (int, float)):
            feedback.setProgress(min(95.0, float(task["progress"]) * 0.95))
        results = task.get("results") or {}
        if task.get("status") in ("finished", "failed", "canceled") and not results.get("pending"):
            if not counts.get("finished"):
                raise JobFailed(f"upscale task #{tid} {task.get('status')}: no tile finished")
            folder = find_task_folder(info.results_dir, tid, None, task.get("title"))
            data = read_task_json(folder) if folder is not None else None
            if data is not None and data.get("final"):
                if feedback is not None:
                    feedback.setProgress(100.0)
                return {"task": task, "folder": folder}
            final_since = final_since or time.monotonic()
            if time.monotonic() - final_since > final_timeout_s:
                raise JobFailed(f"upscale task #{tid}: its folder has no final task.json in {info.results_dir}")
        _sleep(poll_s, feedback)
        if feedback is not None and feedback.isCanceled():
            continue
        try:
            task = blocking_request(info, "GET", f"/upscale_tasks/{tid}", None, feedback)
        except ApiError as e:
            if e.code != "Canceled":
                raise
