"""MultiBackendJobManager contender of the upscale benchmark (run by `benches/upscale.sh`).

The openEO Python client's `MultiBackendJobManager` (openeo from PyPI, pinned by the
script) runs the same N tiles on its own fake backend: a DataFrame of N rows (title and
the tile's west/south/east/north), a `start_job` callback that creates the PV farm job
with the UDP by its URL as namespace, as the APEx notebook does
(`connection.datacube_from_process("eurac_pv_farm_detection", namespace=<URL>,
spatial_extent=<tile>, temporal_extent=...).save_result("GTiff").create_job(...)`),
`run_jobs()` with a CSV job DB and `download_results=True` (results into
`<workdir>/results/job_<id>/`). The round's figures are written as JSON: wall time from
connecting until `run_jobs` returned (every job ended and every download done), the time
the last job was seen finished (`on_job_done`), this process's CPU seconds
(`resource.getrusage`, all threads) and peak resident memory (VmHWM, the same as
`ru_maxrss`), and what the fake saw.

`run_jobs` runs in a thread so that the round can stop at its timeout and still report;
the manager's log goes to a file (WARNING and above).

Needs `openeo` and `pandas` (the benchmark's venv).
"""

import argparse
import json
import logging
import os
import resource
import sys
import threading
import time

import openeo
import pandas as pd
from openeo.extra.job_management import MultiBackendJobManager

import upscale_common as uc


def rusage_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fake", required=True, help="the fake's base URL")
    ap.add_argument("--fake-pid", type=int, required=True)
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--job-secs", type=float, required=True, help="queued + running seconds per job")
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--poll-sleep", type=float, default=1.0)
    ap.add_argument("--workdir", required=True, help="folder for the job DB, results and log")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the round")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    n = args.tiles
    os.makedirs(args.workdir, exist_ok=True)
    logging.basicConfig(
        filename=os.path.join(args.workdir, "mbjm.log"),
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    boxes = uc.tiles(n)
    titles = [f"upscale-bench {i:04d}" for i in range(n)]
    df = pd.DataFrame({
        "title": titles,
        "west": [b["west"] for b in boxes],
        "south": [b["south"] for b in boxes],
        "east": [b["east"] for b in boxes],
        "north": [b["north"] for b in boxes],
    })
    job_db = os.path.join(args.workdir, "jobs.csv")
    results_dir = os.path.join(args.workdir, "results")
    result = {
        "client": "MultiBackendJobManager",
        "tiles": n,
        "round": args.round,
        "timed_out": False,
        "notes": [],
        "openeo_version": openeo.client_version(),
        "pandas_version": pd.__version__,
    }

    def start_job(row, connection, **kwargs):
        cube = connection.datacube_from_process(
            uc.UDP_ID,
            namespace=uc.udp_url(args.fake),
            spatial_extent={k: float(row[k]) for k in ("west", "south", "east", "north")},
            temporal_extent=uc.TEMPORAL_EXTENT,
        ).save_result("GTiff")
        return cube.create_job(title=row["title"])

    finished = {"n": 0, "at": None}

    class Manager(MultiBackendJobManager):
        """The stock manager; only counts finished jobs (for the time of the last one)."""

        def on_job_done(self, job, row):
            finished["n"] += 1
            if finished["n"] == n:
                finished["at"] = time.monotonic()
            super().on_job_done(job, row)

    pid = os.getpid()
    rss_before, _ = uc.proc_mem_mb(pid)
    result["rss_before_mb"] = rss_before
    result["load_start"] = uc.loadavg()
    fake_cpu0, _ = uc.proc_cpu_s(args.fake_pid)
    cpu0 = rusage_cpu_s()
    t0 = time.monotonic()

    # Everything the manager does is measured, from connecting on.
    con = openeo.connect(args.fake)
    manager = Manager(poll_sleep=args.poll_sleep, root_dir=results_dir, download_results=True)
    manager.add_backend("fake", connection=con, parallel_jobs=args.parallel)
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
        worker.join(timeout=0.25)
        now = time.monotonic()
        if now > deadline:
            result["timed_out"] = True
            break
        if now - last >= 10:
            last = now
            uc.log(f"MBJM: {now - t0:6.1f} s  {finished['n']} finished")
    t_end = time.monotonic()
    cpu1 = rusage_cpu_s()
    fake_cpu1, _ = uc.proc_cpu_s(args.fake_pid)
    _, hwm = uc.proc_mem_mb(pid)
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_end"] = uc.loadavg()
    result["wall_s"] = t_end - t0
    result["finished_s"] = None if finished["at"] is None else finished["at"] - t0
    result["cpu_s"] = cpu1 - cpu0
    result["cpu_total_s"] = cpu1
    result["peak_rss_mb"] = hwm
    result["ru_maxrss_mb"] = maxrss_mb
    result["fake_cpu_s"] = fake_cpu1 - fake_cpu0
    if "error" in outcome:
        result["notes"].append(f"run_jobs raised {outcome['error']}")
    if "stats" in outcome:
        result["run_jobs_stats"] = {k: int(v) for k, v in outcome["stats"].items()}
        result["notes"].append("run_jobs stats: " + json.dumps(result["run_jobs_stats"], sort_keys=True))

    try:
        counts = pd.read_csv(job_db, usecols=["status"])["status"].value_counts()
        result["client_statuses"] = {str(k): int(v) for k, v in counts.items()}
    except (OSError, ValueError, KeyError) as e:
        result["notes"].append(f"job DB unreadable: {e}")
    complete = 0
    if os.path.isdir(results_dir):
        for entry in os.scandir(results_dir):
            if entry.is_dir() and any(name.endswith(".tif") for name in os.listdir(entry.path)):
                complete += 1
    result["results_complete"] = complete
    files, size = uc.folder_size(results_dir)
    result["result_files"], result["result_bytes"] = files, size
    result["fake"] = uc.fake_report(args.fake, set(titles), args.job_secs)
    uc.write_json(args.out, result)
    uc.log(f"MBJM: done in {result['wall_s']:.1f} s, {complete}/{n} results downloaded, "
           f"{result['fake']['requests_total']} backend requests, CPU {result['cpu_s']:.2f} s")
    sys.stdout.flush()
    sys.stderr.flush()
    # A timed-out run_jobs thread would keep the interpreter busy: leave now.
    os._exit(0)


if __name__ == "__main__":
    main()
