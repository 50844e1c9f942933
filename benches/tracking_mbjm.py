"""MultiBackendJobManager round of the tracking benchmark (run by `benches/tracking.sh`).

The openEO Python client's `MultiBackendJobManager` (from PyPI) runs the same N
PV-farm jobs on a fake backend: a CSV job DB of N rows (one `title` column), a
`start_job` callback that creates the UDP-by-URL job
(`datacube_from_process(..., namespace=<the fake's UDP URL>).save_result("GTiff")
.create_job(title=...)`), `run_jobs()` with `download_results=False` (the round
compares tracking, not downloading). The round's figures are written as JSON: wall
time of `run_jobs` (from before the first submission until it returns, i.e. all
jobs ended), this process's CPU seconds and memory (from /proc, all threads), and
the fake's request counters and jobs.

`run_jobs` runs in a thread so that the round can stop at its timeout and still
report; the manager's log goes to a file (WARNING and above).

Needs `openeo` and `pandas` (the benchmark's venv).
"""

import argparse
import json
import logging
import os
import sys
import threading
import time

import openeo
import pandas as pd
from openeo.extra.job_management import MultiBackendJobManager

import tracking_common as tc

SPATIAL_EXTENT = {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008}
TEMPORAL_EXTENT = ["2023-05-01", "2023-09-30"]
TOKEN = "oidc/fake/tracking-bench-token"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fake", required=True, help="the fake's base URL")
    ap.add_argument("--fake-pid", type=int, required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--queued-s", type=float, default=1.0, help="the fake's queued time per job")
    ap.add_argument("--running-s", type=float, default=4.0, help="the fake's running time per job")
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--poll-sleep", type=float, default=1.0)
    ap.add_argument("--workdir", required=True, help="folder for the job DB and the log")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the round")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    n = args.jobs
    os.makedirs(args.workdir, exist_ok=True)
    logging.basicConfig(
        filename=os.path.join(args.workdir, "mbjm.log"),
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    pid = os.getpid()
    udp_url = f"{args.fake}/udp/eurac_pv_farm_detection.json"
    titles = [f"tracking-bench {i:04d}" for i in range(n)]
    job_db = os.path.join(args.workdir, "jobs.csv")
    result = {
        "client": "MultiBackendJobManager",
        "jobs": n,
        "timed_out": False,
        "notes": [],
        "openeo_version": openeo.client_version(),
        "pandas_version": pd.__version__,
    }

    def start_job(row, connection, **kwargs):
        cube = connection.datacube_from_process(
            "eurac_pv_farm_detection",
            namespace=udp_url,
            spatial_extent=SPATIAL_EXTENT,
            temporal_extent=TEMPORAL_EXTENT,
        ).save_result("GTiff")
        return cube.create_job(title=row["title"])

    rss_before, _ = tc.proc_mem_mb(pid)
    result["rss_before_mb"] = rss_before
    result["load_start"] = tc.loadavg()
    fake_cpu0 = tc.proc_cpu_s(args.fake_pid)
    cpu0 = tc.proc_cpu_s(pid)
    t0 = time.monotonic()

    # Everything the manager does is measured, from connecting on.
    con = openeo.connect(args.fake).authenticate_bearer_token(TOKEN)
    manager = MultiBackendJobManager(
        poll_sleep=args.poll_sleep, root_dir=args.workdir, download_results=False
    )
    manager.add_backend("fake", connection=con, parallel_jobs=args.parallel)
    df = pd.DataFrame({"title": titles})
    outcome = {}

    def run():
        try:
            outcome["stats"] = manager.run_jobs(df=df, start_job=start_job, job_db=job_db)
        except BaseException as e:  # reported, not raised: the round still reports
            outcome["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=run, name="run_jobs", daemon=True)
    worker.start()
    deadline = t0 + args.timeout
    last = t0
    while worker.is_alive():
        worker.join(timeout=1.0)
        now = time.monotonic()
        if now > deadline:
            result["timed_out"] = True
            break
        if now - last >= 15:
            last = now
            counts = _db_counts(job_db)
            if sum(counts.values()) == n:  # else read while being rewritten: skip
                tc.log(f"MBJM:       {now - t0:6.0f} s  {json.dumps(counts, sort_keys=True)}")
    t_end = time.monotonic()
    cpu1 = tc.proc_cpu_s(pid)
    fake_cpu1 = tc.proc_cpu_s(args.fake_pid)
    _, hwm = tc.proc_mem_mb(pid)
    result["load_end"] = tc.loadavg()
    result["wall_s"] = t_end - t0
    result["cpu_s"] = cpu1 - cpu0
    result["cpu_total_s"] = cpu1
    result["peak_rss_mb"] = hwm
    result["fake_cpu_s"] = fake_cpu1 - fake_cpu0
    if "error" in outcome:
        result["notes"].append(f"run_jobs raised {outcome['error']}")
    if "stats" in outcome:
        result["run_jobs_stats"] = {k: int(v) for k, v in outcome["stats"].items()}

    statuses = _db_counts(job_db)
    result["client_statuses"] = statuses
    result["finished"] = statuses.get("finished", 0)
    result["submitted"] = sum(v for k, v in statuses.items() if k != "not_started")
    result["fake"] = tc.fake_report(args.fake, set(titles), args.queued_s, args.running_s)
    tc.write_json(args.out, result)
    tc.log(
        f"MBJM: done in {result['wall_s']:.1f} s, {result['finished']}/{n} finished, "
        f"{result['fake']['requests_total']} backend requests, CPU {result['cpu_s']:.2f} s"
    )
    sys.stdout.flush()
    # A timed-out run_jobs thread would keep the interpreter busy: leave now.
    os._exit(0)


def _db_counts(path):
    """Status histogram of the manager's CSV job DB ({} while it does not exist yet)."""
    try:
        counts = pd.read_csv(path, usecols=["status"])["status"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    main()
