"""Shared helpers of the tracking benchmark (`benches/tracking.sh`).

Standard library only, so both round drivers (`tracking_eodispatch.py`,
`tracking_mbjm.py`) and the table (`python3 tracking_common.py table ...`) use it.

- Process figures from /proc: CPU seconds (utime + stime), resident and peak
  resident memory (VmRSS, VmHWM).
- The fake backend's view of a round: its request counters (`GET /_fake/stats`)
  grouped by route, and its jobs (`GET /_fake/jobs`) checked for duplicates and
  status.
- The side-by-side table.
"""

import datetime
import json
import os
import sys
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Route groups of the fake's counters ("METHOD template", API routes relative to
# /openeo/1.2). Everything else except /udp/ and /_fake/ is "other".
ROUTES = [
    ("create", "POST /jobs"),
    ("start", "POST /jobs/{job_id}/results"),
    ("list", "GET /jobs"),
    ("status", "GET /jobs/{job_id}"),
]
ROUTE_LABELS = {
    "create": "POST /jobs",
    "start": "POST /jobs/{id}/results",
    "list": "GET /jobs (listing pages)",
    "status": "GET /jobs/{id}",
    "other": "other",
}


def proc_cpu_s(pid):
    """CPU seconds (user + system, all threads) of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    # The command name (field 2) may contain spaces: split after its closing ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def proc_mem_mb(pid):
    """(VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status."""
    rss = hwm = None
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def get_json(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _epoch(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fake_report(fake_base, expected_titles, queued_s, running_s):
    """What the fake saw: requests by route group, jobs created, duplicates, statuses.

    `expected_titles` is the set of job titles the round submitted: every one must
    appear exactly once among the fake's jobs. `queued_s` and `running_s` are the
    fake's job plan: a finished job's `updated` is its end, so it started (was queued)
    `queued_s + running_s` before; this gives the backend's makespan and how many jobs
    were queued or running on average (at most the concurrency limit). The fake's
    timestamps are whole seconds, so these figures are good to about a second.
    """
    stats = get_json(f"{fake_base}/_fake/stats")
    jobs = get_json(f"{fake_base}/_fake/jobs", timeout=120)
    groups = {name: 0 for name, _ in ROUTES}
    groups["other"] = 0
    other = {}
    excluded = {}
    for key, n in stats.get("requests", {}).items():
        _, _, path = key.partition(" ")
        if path.startswith("/udp/") or path.startswith("/_fake"):
            excluded[key] = n
            continue
        for name, route in ROUTES:
            if key == route:
                groups[name] += n
                break
        else:
            groups["other"] += n
            other[key] = n
    titles = {}
    statuses = {}
    spans = []  # (created, started, ended) of finished jobs, epoch seconds
    for j in jobs:
        if j.get("status") == "finished":
            try:
                created = _epoch(j["created"])
                ended = _epoch(j["updated"])
                spans.append((created, ended - queued_s - running_s, ended))
            except (KeyError, ValueError):
                pass
        titles[j.get("title")] = titles.get(j.get("title"), 0) + 1
        statuses[j.get("status")] = statuses.get(j.get("status"), 0) + 1
    duplicates = sum(n - 1 for n in titles.values() if n > 1)
    missing = len(set(expected_titles) - set(titles))
    unexpected = len(set(titles) - set(expected_titles))
    timeline = {}
    if spans:
        first = min(c for c, _, _ in spans)
        last = max(e for _, _, e in spans)
        timeline = {
            "makespan_s": last - first,
            "mean_active": sum(e - st for _, st, e in spans) / max(last - first, 1e-9),
            "mean_create_to_start_s": sum(st - c for c, st, _ in spans) / len(spans),
        }
    return {
        "timeline": timeline,
        "requests_total": sum(groups.values()),
        "requests": groups,
        "other_routes": dict(sorted(other.items(), key=lambda kv: -kv[1])),
        "excluded_routes": excluded,
        "jobs_created": stats.get("jobs_created"),
        "jobs_listed": len(jobs),
        "duplicate_titles": duplicates,
        "missing_titles": missing,
        "unexpected_titles": unexpected,
        "statuses": statuses,
        "faults_fired": stats.get("faults_fired"),
    }


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The table


def _fmt(v, spec):
    if v is None:
        return "n/a"
    return format(v, spec)


def _per_job(r, key=None):
    fake = r.get("fake") or {}
    n = r.get("jobs") or 0
    if not n:
        return None
    value = fake.get("requests_total") if key is None else (fake.get("requests") or {}).get(key)
    return None if value is None else value / n


def _timeline(r, key):
    return ((r.get("fake") or {}).get("timeline") or {}).get(key)


def checks(r):
    """Checks of one round: (label, ok, detail)."""
    n = r["jobs"]
    fake = r.get("fake") or {}
    out = [
        ("round completed before the timeout", not r.get("timed_out"),
         "timed out" if r.get("timed_out") else "yes"),
        (f"exactly {n} jobs created on the fake", fake.get("jobs_created") == n,
         f"jobs_created={fake.get('jobs_created')}, POST /jobs={fake.get('requests', {}).get('create')}"),
        ("no duplicate, missing or foreign job on the fake",
         fake.get("duplicate_titles") == 0 and fake.get("missing_titles") == 0
         and fake.get("unexpected_titles") == 0,
         f"duplicates={fake.get('duplicate_titles')}, missing={fake.get('missing_titles')}, "
         f"unexpected={fake.get('unexpected_titles')}"),
        (f"all {n} finished on the fake", (fake.get("statuses") or {}).get("finished") == n,
         json.dumps(fake.get("statuses"), sort_keys=True)),
        (f"all {n} finished in the client's own view", r.get("finished") == n,
         json.dumps(r.get("client_statuses"), sort_keys=True)),
    ]
    return out


def table(meta_path, eod_path, mbjm_path):
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    rounds = []
    for path, name in ((eod_path, "eodispatch"), (mbjm_path, "MultiBackendJobManager")):
        try:
            with open(path, encoding="utf-8") as f:
                rounds.append((name, json.load(f)))
        except (OSError, ValueError) as e:
            rounds.append((name, {"jobs": meta["jobs"], "error": f"no result ({e})"}))
    a, b = rounds[0][1], rounds[1][1]
    rows = [
        ("jobs submitted", lambda r: _fmt(r.get("submitted"), "d")),
        ("jobs created on the fake", lambda r: _fmt((r.get("fake") or {}).get("jobs_created"), "d")),
        ("finished (client's view)", lambda r: _fmt(r.get("finished"), "d")),
        ("finished (fake's view)", lambda r: _fmt(((r.get("fake") or {}).get("statuses") or {}).get("finished"), "d")),
        ("wall time, first submission -> all finished (s)", lambda r: _fmt(r.get("wall_s"), ".1f")),
        ("  of which POSTing the jobs to the daemon (s)", lambda r: _fmt(r.get("submit_s"), ".2f")),
        ("backend makespan, first create -> last finish (s)", lambda r: _fmt(_timeline(r, "makespan_s"), ".1f")),
        ("jobs queued or running on the backend, mean", lambda r: _fmt(_timeline(r, "mean_active"), ".1f")),
        ("job created -> started on the backend, mean (s)", lambda r: _fmt(_timeline(r, "mean_create_to_start_s"), ".1f")),
        ("backend requests, total", lambda r: _fmt((r.get("fake") or {}).get("requests_total"), "d")),
        ("backend requests per second (mean)", lambda r: _fmt(
            None if not r.get("wall_s") or not r.get("fake") else r["fake"]["requests_total"] / r["wall_s"], ".1f")),
        ("backend requests per job", lambda r: _fmt(_per_job(r), ".2f")),
    ]
    for key in ("create", "start", "list", "status", "other"):
        rows.append((f"  {ROUTE_LABELS[key]} per job", lambda r, k=key: _fmt(_per_job(r, k), ".2f")))
    rows += [
        ("client CPU s during the round", lambda r: _fmt(r.get("cpu_s"), ".2f")),
        ("  CPU ms per job", lambda r: _fmt(None if r.get("cpu_s") is None else 1000 * r["cpu_s"] / r["jobs"], ".1f")),
        ("client CPU s, whole process life", lambda r: _fmt(r.get("cpu_total_s"), ".2f")),
        ("client RSS before the round (MiB)", lambda r: _fmt(r.get("rss_before_mb"), ".1f")),
        ("client peak RSS, VmHWM (MiB)", lambda r: _fmt(r.get("peak_rss_mb"), ".1f")),
        ("fake backend CPU s during the round", lambda r: _fmt(r.get("fake_cpu_s"), ".2f")),
        ("load average at start", lambda r: r.get("load_start") or "n/a"),
        ("load average at end", lambda r: r.get("load_end") or "n/a"),
    ]
    w0 = max(len(label) for label, _ in rows)
    w1 = max(12, len(rounds[0][0]))
    w2 = max(12, len(rounds[1][0]))
    lines = []
    p = lines.append
    p("Tracking benchmark: eodispatch vs openEO MultiBackendJobManager on the same fake backend")
    p("")
    p(f"command:   {meta['command']}")
    p(f"date:      {meta['date']}")
    p(f"machine:   {meta['nproc']} CPUs, {meta['cpu_model']}; {meta['kernel']}")
    p(f"versions:  eodispatch {meta['eodispatch_version']} (release build), openeo {meta['openeo_version']}, "
      f"pandas {meta['pandas_version']}, Python {meta['python_version']}")
    p(f"settings:  {meta['jobs']} jobs per round, each on a fresh fake-openeo (queued {meta['queued_s']} s, "
      f"running {meta['running_s']} s),")
    p(f"           at most {meta['parallel']} jobs active on the backend in both rounds;")
    p(f"           eodispatch: max_running_jobs={meta['parallel']}, poll interval {meta['poll_min_s']}-"
      f"{meta['poll_max_s']} s (adaptive), requests_per_second={meta['rps']};")
    p(f"           MBJM: parallel_jobs={meta['parallel']}, poll_sleep={meta['mbjm_poll_s']} s, "
      f"download_results=False, internal queueing_limit=10, CSV job DB;")
    p("           requests counted by the fake: the openEO API and /.well-known/openeo, not /udp/ nor /_fake/")
    p("")
    p(f"{'':<{w0}}  {rounds[0][0]:>{w1}}  {rounds[1][0]:>{w2}}")
    for label, f in rows:
        p(f"{label:<{w0}}  {f(a):>{w1}}  {f(b):>{w2}}")
    p("")
    for name, r in rounds:
        if r.get("error"):
            p(f"{name}: {r['error']}")
        other = (r.get("fake") or {}).get("other_routes")
        if other:
            p(f"{name} 'other' requests: " + ", ".join(f"{k} {v}" for k, v in other.items()))
        if r.get("notes"):
            for note in r["notes"]:
                p(f"{name}: {note}")
    p("")
    p("checks:")
    failed = 0
    for name, r in rounds:
        if r.get("error"):
            p(f"  FAIL  {name}: {r['error']}")
            failed += 1
            continue
        for label, ok, detail in checks(r):
            failed += 0 if ok else 1
            p(f"  {'ok  ' if ok else 'FAIL'}  {name}: {label} ({detail})")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "table":
        sys.exit(table(*sys.argv[2:]))
    print("usage: tracking_common.py table META.json EODISPATCH.json MBJM.json", file=sys.stderr)
    sys.exit(2)
