"""eodispatch round of the tracking benchmark (run by `benches/tracking.sh`).

Submits N PV-farm jobs to a running daemon through `POST /unit_jobs` (service
endpoint = the fake backend, application = the fake's copy of the UDP), waits
until all have ended, and writes the round's figures as JSON: wall time from the
first submission to the last job finished, the daemon's CPU seconds and memory
(from /proc), and the fake's request counters and jobs.

Completion is checked every second with `GET
/unit_jobs?status=finished&limit=1&offset=N-1` (one row: non-empty once N jobs
are finished), and every 15 s with the full list (progress, and to stop when jobs
ended otherwise). List requests do not nudge the scheduler. These requests and the
submissions are part of the daemon's CPU time.

Standard library only.
"""

import argparse
import http.client
import json
import time

import tracking_common as tc

SPATIAL_EXTENT = {"west": 16.342, "south": 47.962, "east": 16.414, "north": 48.008}
TEMPORAL_EXTENT = ["2023-05-01", "2023-09-30"]
TERMINAL = {"finished", "failed", "canceled"}


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
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemon", required=True, help="HOST:PORT of the daemon's API")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the daemon's pid")
    ap.add_argument("--fake", required=True, help="the fake's base URL")
    ap.add_argument("--fake-pid", type=int, required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--queued-s", type=float, default=1.0, help="the fake's queued time per job")
    ap.add_argument("--running-s", type=float, default=4.0, help="the fake's running time per job")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the round")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    n = args.jobs
    with open(args.token_file, encoding="utf-8") as f:
        api = Api(args.daemon, f.read().strip())
    udp_url = f"{args.fake}/udp/eurac_pv_farm_detection.json"
    titles = [f"tracking-bench {i:04d}" for i in range(n)]
    result = {"client": "eodispatch", "jobs": n, "timed_out": False, "notes": []}

    status, health = api.request("GET", "/health")
    result["version"] = (health or {}).get("version")
    rss_before, _ = tc.proc_mem_mb(args.pid)
    result["rss_before_mb"] = rss_before
    result["load_start"] = tc.loadavg()
    fake_cpu0 = tc.proc_cpu_s(args.fake_pid)
    cpu0 = tc.proc_cpu_s(args.pid)
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    submitted = 0
    for title in titles:
        body = {
            "title": title,
            "label": "openeo",
            "format": "gtiff",
            "service": {"endpoint": args.fake, "application": udp_url},
            "parameters": {"spatial_extent": SPATIAL_EXTENT, "temporal_extent": TEMPORAL_EXTENT},
        }
        status, job = api.request("POST", "/unit_jobs", body)
        if status != 201:
            raise SystemExit(f"POST /unit_jobs answered {status}: {json.dumps(job)[:500]}")
        submitted += 1
    result["submitted"] = submitted
    result["submit_s"] = time.monotonic() - t0
    tc.log(f"eodispatch: {submitted} jobs submitted in {result['submit_s']:.1f} s")

    last_full = time.monotonic()
    counts = {}
    while True:
        now = time.monotonic()
        if now > deadline:
            result["timed_out"] = True
            break
        status, page = api.request("GET", f"/unit_jobs?status=finished&limit=1&offset={n - 1}")
        if status == 200 and page:
            break
        if now - last_full >= 15:
            last_full = now
            status, jobs = api.request("GET", "/unit_jobs?limit=10000")
            counts = {}
            for j in jobs or []:
                counts[j["status"]] = counts.get(j["status"], 0) + 1
            tc.log(f"eodispatch: {now - t0:6.0f} s  {json.dumps(counts, sort_keys=True)}")
            if sum(v for k, v in counts.items() if k in TERMINAL) >= n:
                break
        time.sleep(1.0)
    t_end = time.monotonic()
    cpu1 = tc.proc_cpu_s(args.pid)
    fake_cpu1 = tc.proc_cpu_s(args.fake_pid)
    _, hwm = tc.proc_mem_mb(args.pid)
    result["load_end"] = tc.loadavg()
    result["wall_s"] = t_end - t0
    result["cpu_s"] = cpu1 - cpu0
    result["cpu_total_s"] = cpu1
    result["peak_rss_mb"] = hwm
    result["fake_cpu_s"] = fake_cpu1 - fake_cpu0

    # After the measurement: the daemon's and the fake's final view.
    status, jobs = api.request("GET", "/unit_jobs?limit=10000")
    statuses = {}
    remote_ids = set()
    for j in jobs or []:
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
        if j.get("backend_job_id"):
            remote_ids.add(j["backend_job_id"])
        if j["status"] != "finished" and j.get("error"):
            if len(result["notes"]) < 5:
                result["notes"].append(f"job {j['id']} {j['status']}: {j['error']}")
    result["client_statuses"] = statuses
    result["finished"] = statuses.get("finished", 0)
    result["distinct_backend_ids"] = len(remote_ids)
    status, backends = api.request("GET", "/backends")
    result["backends"] = backends
    result["fake"] = tc.fake_report(args.fake, set(titles), args.queued_s, args.running_s)
    tc.write_json(args.out, result)
    tc.log(
        f"eodispatch: done in {result['wall_s']:.1f} s, {result['finished']}/{n} finished, "
        f"{result['fake']['requests_total']} backend requests, CPU {result['cpu_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
