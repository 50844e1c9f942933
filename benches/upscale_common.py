"""Shared helpers of the upscale benchmark (`benches/upscale.sh`).

Standard library only, so both contenders' drivers (`upscale_eodispatch.py`,
`upscale_mbjm.py`) and the table (`python3 upscale_common.py table ...`) use it.

- The tiles: `tiles(n)`, n small bounding boxes (0.02 degrees a side, a grid of 40
  columns north of Vienna), the same list for both contenders.
- Process figures from /proc: CPU seconds (own, and of reaped children), resident and
  peak resident memory.
- The fake backend's view of a round: its request counters (`GET /_fake/stats`) per
  route, and its jobs (`GET /_fake/jobs`) checked for duplicates and status.
- The table.
"""

import datetime
import json
import os
import statistics
import sys
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The eurac PV farm detection UDP of the APEx catalogue, by URL as namespace, as the
# APEx notebook names it. The URL is the fake's own copy (`/udp/<name>.json`, the
# catalogue's file) rather than raw.githubusercontent.com, so that nothing leaves the
# machine: the daemon reads the UDP's parameters from that URL (once a minute at most;
# the fake does not count /udp/ requests), and the fake resolves any namespace URL to
# its bundled file of the same name.
UDP_ID = "eurac_pv_farm_detection"


def udp_url(fake_base):
    return f"{fake_base}/udp/{UDP_ID}.json"


TEMPORAL_EXTENT = ["2023-05-01", "2023-09-30"]

TILE_DEG = 0.02
TILE_COLUMNS = 40
TILE_ORIGIN = (16.0, 47.8)  # west, south of the first tile


def tiles(n):
    """n bounding boxes of TILE_DEG degrees, row by row (about 1.5 x 2.2 km each)."""
    out = []
    for i in range(n):
        row, col = divmod(i, TILE_COLUMNS)
        west = TILE_ORIGIN[0] + col * TILE_DEG
        south = TILE_ORIGIN[1] + row * TILE_DEG
        out.append({
            "west": round(west, 6),
            "south": round(south, 6),
            "east": round(west + TILE_DEG, 6),
            "north": round(south + TILE_DEG, 6),
        })
    return out


# ---------------------------------------------------------------------------
# Processes


def proc_cpu_s(pid):
    """(own, children) CPU seconds of a process, user + system, all threads.

    `children` is what the kernel added for children the process waited for
    (cutime + cstime), e.g. the daemon's GDAL helper runs.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    # The command name (field 2) may contain spaces: split after its closing ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


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


def folder_size(root):
    """(files, bytes) below root."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


# ---------------------------------------------------------------------------
# The fake backend


def get_json(url, timeout=120):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _epoch(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def route_group(key):
    """A readable group for one of the fake's counters ("METHOD template")."""
    method, _, path = key.partition(" ")
    if "/results/assets/" in path:
        return f"{method} asset"
    return key


def fake_report(fake_base, expected_titles, job_secs):
    """What the fake saw: requests per route, jobs created, duplicates, statuses.

    Every title of `expected_titles` must appear exactly once among the fake's jobs.
    `job_secs` (queued + running) dates a finished job's start from its `updated`, which
    gives the backend's makespan and the mean number of jobs active on it (the fake's
    timestamps have whole seconds: good to about a second).
    """
    stats = get_json(f"{fake_base}/_fake/stats")
    jobs = get_json(f"{fake_base}/_fake/jobs")
    routes = {}
    excluded = {}
    for key, n in stats.get("requests", {}).items():
        _, _, path = key.partition(" ")
        if path.startswith("/udp/") or path.startswith("/_fake"):
            excluded[key] = n
            continue
        group = route_group(key)
        routes[group] = routes.get(group, 0) + n
    titles = {}
    statuses = {}
    spans = []
    for j in jobs:
        titles[j.get("title")] = titles.get(j.get("title"), 0) + 1
        statuses[j.get("status")] = statuses.get(j.get("status"), 0) + 1
        if j.get("status") == "finished":
            try:
                created, ended = _epoch(j["created"]), _epoch(j["updated"])
                spans.append((created, ended - job_secs, ended))
            except (KeyError, ValueError):
                pass
    timeline = {}
    if spans:
        first = min(c for c, _, _ in spans)
        last = max(e for _, _, e in spans)
        timeline = {
            "makespan_s": last - first,
            "mean_active": sum(e - s for _, s, e in spans) / max(last - first, 1e-9),
        }
    return {
        "requests_total": sum(routes.values()),
        "routes": dict(sorted(routes.items(), key=lambda kv: -kv[1])),
        "excluded_routes": excluded,
        "http_statuses": stats.get("statuses"),
        "jobs_created": stats.get("jobs_created"),
        "duplicate_titles": sum(n - 1 for n in titles.values() if n > 1),
        "missing_titles": len(set(expected_titles) - set(titles)),
        "unexpected_titles": len(set(titles) - set(expected_titles)),
        "statuses": statuses,
        "timeline": timeline,
    }


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The table


def _f(v, spec):
    return "n/a" if v is None else format(v, spec)


def checks(r):
    """(label, ok, detail) of one contender's round."""
    n = r["tiles"]
    fake = r.get("fake") or {}
    return [
        ("completed before the timeout", not r.get("timed_out"),
         "timed out" if r.get("timed_out") else "yes"),
        (f"exactly {n} jobs created on the fake, none twice",
         fake.get("jobs_created") == n and fake.get("duplicate_titles") == 0
         and fake.get("missing_titles") == 0 and fake.get("unexpected_titles") == 0,
         f"created={fake.get('jobs_created')}, duplicates={fake.get('duplicate_titles')}, "
         f"missing={fake.get('missing_titles')}, unexpected={fake.get('unexpected_titles')}"),
        (f"all {n} finished on the fake", (fake.get("statuses") or {}).get("finished") == n,
         json.dumps(fake.get("statuses"), sort_keys=True)),
        (f"all {n} results on disk", r.get("results_complete") == n,
         f"{r.get('results_complete')} complete; {r.get('result_files')} files, "
         f"{(r.get('result_bytes') or 0) / 1e6:.1f} MB"),
    ]


def table(meta_path, *round_paths):
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    rounds = []
    for path in round_paths:
        base = os.path.basename(path)
        name = "eodispatch" if base.startswith("eodispatch") else "MultiBackendJobManager"
        try:
            with open(path, encoding="utf-8") as f:
                rounds.append((name, json.load(f)))
        except (OSError, ValueError) as e:
            rounds.append((name, {"tiles": meta["tiles"], "error": f"no result ({e})"}))
    n = meta["tiles"]
    p = print
    p(f"Upscale benchmark: one {n}-tile task, eodispatch vs openEO MultiBackendJobManager")
    p(f"command:   {meta['command']}")
    p(f"date:      {meta['date']}")
    p(f"machine:   {meta['nproc']} CPUs, {meta['cpu_model']}; {meta['kernel']}")
    p(f"versions:  eodispatch {meta['eodispatch_version']} (release), openeo {meta['openeo_version']}, "
      f"pandas {meta['pandas_version']}, Python {meta['python_version']}")
    p(f"fake:      a fresh fake-openeo per contender and round, --anonymous, queued {meta['queued_s']} s "
      f"+ running {meta['job_s']} s per job, one small GTiff per job")
    p(f"both:      at most {meta['parallel']} jobs on the backend, polled every {meta['poll_s']} s, "
      f"results downloaded (2 jobs at a time each)")
    p(f"           eodispatch: max_running_jobs={meta['parallel']}, poll_interval_min_s = "
      f"poll_interval_max_s = {meta['poll_s']} (+-20 % jitter), requests_per_second={meta['rps']}, "
      f"GDAL helper {'on' if meta['geo'] else 'off'}")
    p(f"           MBJM: parallel_jobs={meta['parallel']}, poll_sleep={meta['poll_s']}, "
      f"download_results=True, CSV job DB, its fixed queueing_limit=10")
    p("wall:      eodispatch: POST /upscale_tasks sent -> all results published (ready); "
      "MBJM: connect -> run_jobs() returned (all downloaded)")
    p("requests:  counted by the fake: openEO API, /.well-known and asset downloads "
      "(not /udp/ nor /_fake/)")
    p("CPU:       user+sys of the contender's process, all threads (eodispatch: + its GDAL "
      "helper runs); peak: VmHWM of the process")
    p("")
    head = (f"{'contender':<24}{'round':>6}{'wall s':>9}{'requests':>10}{'req/tile':>10}"
            f"{'CPU s':>8}{'peak MB':>9}{'finished s':>12}")
    p(head)
    p("-" * len(head))
    by = {}
    for name, r in rounds:
        fake = r.get("fake") or {}
        req = fake.get("requests_total")
        cpu = r.get("cpu_s")
        if cpu is not None:
            cpu += r.get("children_cpu_s") or 0.0
        row = (r.get("wall_s"), req, None if req is None else req / n, cpu, r.get("peak_rss_mb"),
               r.get("finished_s"))
        by.setdefault(name, []).append(row)
        p(f"{name:<24}{_f(r.get('round'), 'd'):>6}{_f(row[0], '.1f'):>9}{_f(row[1], 'd'):>10}"
          f"{_f(row[2], '.2f'):>10}{_f(row[3], '.2f'):>8}{_f(row[4], '.1f'):>9}{_f(row[5], '.1f'):>12}")
    if max(len(v) for v in by.values()) > 1:
        for name, rows in by.items():
            med = []
            for k in range(6):
                vals = [row[k] for row in rows if row[k] is not None]
                med.append(statistics.median(vals) if vals else None)
            p(f"{name:<24}{'median':>6}{_f(med[0], '.1f'):>9}{_f(med[1], '.0f'):>10}"
              f"{_f(med[2], '.2f'):>10}{_f(med[3], '.2f'):>8}{_f(med[4], '.1f'):>9}"
              f"{_f(med[5], '.1f'):>12}")
    p("(wall s: until all results are on disk; finished s: until the client saw every job "
      "finished; peak MB: MiB)")
    p("")
    for name, r in rounds:
        fake = r.get("fake") or {}
        tl = fake.get("timeline") or {}
        p(f"{name}, round {_f(r.get('round'), 'd')}:")
        if r.get("error"):
            p(f"  {r['error']}")
            continue
        p(f"  all {n} finished in the client's view after {_f(r.get('finished_s'), '.1f')} s, "
          f"results complete after {_f(r.get('wall_s'), '.1f')} s; backend makespan "
          f"{_f(tl.get('makespan_s'), '.0f')} s, jobs active on it {_f(tl.get('mean_active'), '.1f')} "
          f"on average")
        own, kids = r.get("cpu_s"), r.get("children_cpu_s")
        p(f"  CPU {_f(own, '.2f')} s own" + (f" + {kids:.2f} s GDAL helper runs" if kids else "")
          + f"; resident before {_f(r.get('rss_before_mb'), '.1f')} MiB, peak "
          f"{_f(r.get('peak_rss_mb'), '.1f')} MiB; the fake's CPU {_f(r.get('fake_cpu_s'), '.2f')} s; "
          f"load {r.get('load_start')} -> {r.get('load_end')}")
        p("  requests per tile: " + ", ".join(
            f"{k} {v / n:.2f}" for k, v in (fake.get("routes") or {}).items()))
        if fake.get("excluded_routes"):
            p("  not counted: " + ", ".join(f"{k} {v}" for k, v in fake["excluded_routes"].items()))
        if fake.get("http_statuses"):
            p("  answers by HTTP status: " + ", ".join(
                f"{k}: {v}" for k, v in sorted(fake["http_statuses"].items())))
        for note in r.get("notes") or []:
            p(f"  note: {note}")
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
            p(f"  {'ok  ' if ok else 'FAIL'}  {name} round {_f(r.get('round'), 'd')}: {label} ({detail})")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        sys.exit(table(*sys.argv[2:]))
    print("usage: upscale_common.py table META.json ROUND.json...", file=sys.stderr)
    sys.exit(2)
