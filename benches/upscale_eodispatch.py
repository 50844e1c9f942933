"""eodispatch contender of the upscale benchmark (run by `benches/upscale.sh`).

Sends ONE `POST /upscale_tasks` with the N tiles as the `spatial_extent` dimension
(service: the fake backend and the eurac PV farm UDP by its URL, GTiff) to a running
daemon, then waits until every sub-job's results are published in the results folder
(the daemon publishes a job's folder by one rename once its files are downloaded,
checked and its manifest written; results `ready`). Writes the round's figures as JSON:
wall time from sending the task to the last results folder, the time until the last
sub-job was finished in the daemon's view, the daemon's CPU seconds (own, and its GDAL
helper runs) and memory (from /proc), and what the fake saw.

What the driver asks the daemon while it waits is part of the daemon's CPU time, so it
asks little: every 0.25 s `GET /unit_jobs?status=finished&limit=1&offset=N-1` (one row;
until all are finished), every 10 s `GET /upscale_tasks/{id}` (counts, for progress).
Neither nudges the scheduler (only reading one active unit job does). Published folders
are counted in the results folder, without the daemon.

Standard library only.
"""

import argparse
import http.client
import json
import os
import time

import upscale_common as uc

TERMINAL = ("finished", "failed", "canceled")


class Api:
    """A keep-alive client of the daemon's local API."""

    def __init__(self, addr, token):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.token = token
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def published(results_dir):
    """Job folders published in the results folder (staging and hidden ones not)."""
    try:
        with os.scandir(results_dir) as it:
            return sum(1 for e in it if not e.name.startswith(".") and e.is_dir())
    except FileNotFoundError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemon", required=True, help="HOST:PORT of the daemon's API")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the daemon's pid")
    ap.add_argument("--results-dir", required=True, help="the daemon's results folder")
    ap.add_argument("--fake", required=True, help="the fake's base URL")
    ap.add_argument("--fake-pid", type=int, required=True)
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--job-secs", type=float, required=True, help="queued + running seconds per job")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the round")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    n = args.tiles
    with open(args.token_file, encoding="utf-8") as f:
        api = Api(args.daemon, f.read().strip())
    result = {"client": "eodispatch", "tiles": n, "round": args.round, "timed_out": False,
              "notes": []}
    body = {
        "title": "upscale-bench",
        "label": "openeo",
        "format": "gtiff",
        "service": {"endpoint": args.fake, "application": uc.udp_url(args.fake)},
        "parameters": {"temporal_extent": uc.TEMPORAL_EXTENT},
        "dimension": {"name": "spatial_extent", "values": uc.tiles(n)},
    }
    payload = json.dumps(body).encode()
    result["request_bytes"] = len(payload)

    api.request("GET", "/health")
    rss_before, _ = uc.proc_mem_mb(args.pid)
    result["rss_before_mb"] = rss_before
    result["load_start"] = uc.loadavg()
    fake_cpu0, _ = uc.proc_cpu_s(args.fake_pid)
    cpu0, kids0 = uc.proc_cpu_s(args.pid)
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    status, task = api.request("POST", "/upscale_tasks", body)
    result["post_s"] = time.monotonic() - t0
    if status != 201:
        raise SystemExit(f"POST /upscale_tasks answered {status}: {json.dumps(task)[:500]}")
    task_id = task["id"]
    uc.log(f"eodispatch: task {task_id} with {len(task['jobs'])} jobs accepted in "
           f"{result['post_s']:.2f} s")

    finished_s = None
    last_progress = t0
    last_count, last_change = -1, t0
    while True:
        now = time.monotonic()
        if now > deadline:
            result["timed_out"] = True
            break
        done = published(args.results_dir)
        if done != last_count:
            last_count, last_change = done, now
        if finished_s is None:
            status, page = api.request("GET", f"/unit_jobs?status=finished&limit=1&offset={n - 1}")
            if status == 200 and page:
                finished_s = now - t0
                uc.log(f"eodispatch: {finished_s:6.1f} s  all {n} finished, {done} published")
        if done >= n:
            break
        if now - last_progress >= 10:
            last_progress = now
            status, t = api.request("GET", f"/upscale_tasks/{task_id}")
            counts = {k: v for k, v in (t or {}).get("counts", {}).items() if v}
            uc.log(f"eodispatch: {now - t0:6.1f} s  {json.dumps(counts, sort_keys=True)}, "
                   f"{done} published")
            ended = sum(counts.get(k, 0) for k in TERMINAL)
            # Every job ended, some not finished, and nothing published for 30 s: stop.
            if ended >= n and counts.get("finished", 0) < n and now - last_change > 30:
                result["notes"].append("stopped waiting: jobs ended without results")
                break
        time.sleep(0.25)
    t_end = time.monotonic()
    cpu1, kids1 = uc.proc_cpu_s(args.pid)
    fake_cpu1, _ = uc.proc_cpu_s(args.fake_pid)
    _, hwm = uc.proc_mem_mb(args.pid)
    result["load_end"] = uc.loadavg()
    result["wall_s"] = t_end - t0
    result["finished_s"] = finished_s
    result["cpu_s"] = cpu1 - cpu0
    result["children_cpu_s"] = kids1 - kids0
    result["cpu_total_s"] = cpu1
    result["peak_rss_mb"] = hwm
    result["fake_cpu_s"] = fake_cpu1 - fake_cpu0

    # After the measurement: the daemon's and the fake's final view.
    status, t = api.request("GET", f"/upscale_tasks/{task_id}")
    result["task_status"] = (t or {}).get("status")
    result["client_statuses"] = {k: v for k, v in (t or {}).get("counts", {}).items() if v}
    titles = [j["title"] for j in (t or {}).get("jobs", [])]
    ids = {j["id"] for j in (t or {}).get("jobs", [])}
    status, jobs = api.request("GET", "/unit_jobs?limit=10000")
    states = {}
    ready_dirs = 0
    for j in jobs or []:
        if j["id"] not in ids:
            continue
        state = (j.get("results") or {}).get("state")
        states[state] = states.get(state, 0) + 1
        d = (j.get("results") or {}).get("dir")
        if state == "ready" and d and os.path.isdir(d):
            ready_dirs += 1
        if j.get("error") and len(result["notes"]) < 5:
            result["notes"].append(f"job {j['id']} {j['status']}: {j['error']}")
    result["results_states"] = states
    result["results_complete"] = ready_dirs
    result["published_folders"] = published(args.results_dir)
    files, size = uc.folder_size(args.results_dir)
    result["result_files"], result["result_bytes"] = files, size
    result["notes"].append(
        f"results states {json.dumps(states, sort_keys=True)}; {files} files, "
        f"{size / 1e6:.1f} MB in the results folder (results, manifests)")
    result["fake"] = uc.fake_report(args.fake, set(titles), args.job_secs)
    uc.write_json(args.out, result)
    uc.log(f"eodispatch: done in {result['wall_s']:.1f} s, {ready_dirs}/{n} results ready, "
           f"{result['fake']['requests_total']} backend requests, CPU {result['cpu_s']:.2f} s "
           f"+ {result['children_cpu_s']:.2f} s helpers")


if __name__ == "__main__":
    main()
