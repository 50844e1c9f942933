#!/usr/bin/env bash
# Upscale benchmark: one N-tile upscale task through eodispatch vs the openEO Python
# client's MultiBackendJobManager on the same tiles, in one run.
#
#   benches/upscale.sh                     # 1000 tiles
#   TILES=50 benches/upscale.sh            # a quick check
#
# Builds the release binaries if needed (eodispatch, fake-openeo and the GDAL helper
# eodispatch-gdal), prepares a venv with pinned `openeo` and `pandas` from
# PyPI ($VENV, reused), makes the tiles (TILES bounding boxes of 0.02 degrees, the same
# list for both; benches/upscale_common.py), then per round, each contender against a
# FRESH anonymous fake-openeo (so the fake's request counters are the contender's own)
# and in fresh temporary folders:
#
#   eodispatch: the daemon (release) with max_running_jobs=PARALLEL and a poll interval
#     of POLL_S for the fake; ONE POST /upscale_tasks with the tiles as the
#     spatial_extent dimension; measured until every sub-job's results are published
#     in the results folder (downloaded, checked, manifest written: results `ready`)
#     (benches/upscale_eodispatch.py);
#   MultiBackendJobManager: the same tiles in a DataFrame, parallel_jobs=PARALLEL,
#     poll_sleep=POLL_S, a start_job callback creating the same UDP job (the eurac PV
#     farm UDP by its URL as namespace: the fake's copy at /udp/, so that nothing
#     leaves the machine), download_results=True; measured until run_jobs() returns
#     (benches/upscale_mbjm.py).
#
# The order of the contenders alternates from round to round. Prints a table:
# contender, wall s, backend requests, requests per tile, CPU s, peak MB (then requests
# per route, times, checks). Exit status 1 if a check fails (a job created twice or
# missing on the fake, a job not finished, results missing, a timeout).
#
# Settings (environment; defaults in brackets):
#   TILES [1000]        tiles (jobs) in the task
#   PARALLEL [20]       jobs active at once: daemon max_running_jobs = MBJM parallel_jobs
#   JOB_SECS [1]        the fake's running time per job (--running-secs)
#   QUEUED_SECS [0.2]   the fake's queued time per job (--queued-secs)
#   POLL_S [1]          daemon poll_interval_min_s = poll_interval_max_s = MBJM poll_sleep
#   RPS [100]           daemon requests_per_second towards the fake (MBJM has no limit)
#   GEO [1]             1: the daemon inspects each result with its GDAL helper as it
#                       does by default (its CPU time is counted); 0: no helper
#   ROUNDS [1]          rounds (each runs both contenders)
#   TIMEOUT_S [1800]    per contender and round
#   DAEMON_LOG [info]   the daemon's log filter, e.g. info,eodispatch::platform::http=debug
#                       (every backend request with its time, for a closer look)
#   VENV [$CARGO_TARGET_DIR or ./target, /bench-upscale-venv]  the Python venv
#   KEEP [0]            1: keep the temporary folder (logs, job DBs, results, JSON);
#                       0: removed at the end (after a failed check, all but the results
#                       stay), and when interrupted
#
# Network: loopback only, plus PyPI when the venv is made.

set -euo pipefail

OPENEO_VERSION=0.53.0
PANDAS_VERSION=2.3.3

# The command line as given (settings from the environment), for the report.
COMMAND="benches/upscale.sh"
for v in DAEMON_LOG ROUNDS GEO RPS POLL_S QUEUED_SECS JOB_SECS PARALLEL TILES; do
    if [[ -n ${!v:-} ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

TILES=${TILES:-1000}
PARALLEL=${PARALLEL:-20}
JOB_SECS=${JOB_SECS:-1}
QUEUED_SECS=${QUEUED_SECS:-0.2}
POLL_S=${POLL_S:-1}
RPS=${RPS:-100}
GEO=${GEO:-1}
ROUNDS=${ROUNDS:-1}
TIMEOUT_S=${TIMEOUT_S:-1800}
KEEP=${KEEP:-0}
DAEMON_LOG=${DAEMON_LOG:-info}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES="$ROOT/benches"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${VENV:-$TARGET/bench-upscale-venv}
PY="$VENV/bin/python"
EODISPATCH="$TARGET/release/eodispatch"
FAKE="$TARGET/release/fake-openeo"
GEO_HELPER="$TARGET/release/eodispatch-gdal"


for v in TILES PARALLEL ROUNDS TIMEOUT_S; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "upscale.sh: $v=${!v} is not a positive integer" >&2; exit 2; }
done
for v in JOB_SECS QUEUED_SECS POLL_S RPS; do
    [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "upscale.sh: $v=${!v} is not a number" >&2; exit 2; }
done
[[ $GEO == 0 || $GEO == 1 ]] || { echo "upscale.sh: GEO must be 0 or 1" >&2; exit 2; }

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'upscale.sh: %s\n' "$*" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-upscale.XXXXXX")
PIDS=()
FAILED=1

# Stops one process we started: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops every process we started and removes the temporary folder; after a failed
# check (not an interrupt) its logs, job DBs and JSON stay for a look, without results.
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ $KEEP == 1 ]]; then
        say "kept $WORK (logs, job DBs, results, JSON)"
    elif [[ $FAILED == 1 && $INTERRUPTED == 0 ]]; then
        rm -rf "$WORK"/r*-eodispatch/results "$WORK"/r*-mbjm/results
        say "kept $WORK (logs, job DBs, JSON; results removed)"
    else
        rm -rf "$WORK"
    fi
}
INTERRUPTED=0
trap cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

# Starts a fresh anonymous fake backend; sets FAKE_URL and FAKE_PID.
start_fake() {
    local name=$1 out="$WORK/$1.out"
    "$FAKE" --port 0 --anonymous --queued-secs "$QUEUED_SECS" --running-secs "$JOB_SECS" \
        >"$out" 2>"$WORK/$name.log" </dev/null &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    FAKE_URL=
    for _ in $(seq 100); do
        FAKE_URL=$(grep -o 'listening on http://[0-9.:]*' "$out" 2>/dev/null | sed 's/listening on //' || true)
        [[ -n $FAKE_URL ]] && break
        kill -0 "$FAKE_PID" 2>/dev/null || die "fake-openeo exited; see $WORK/$name.log"
        sleep 0.1
    done
    [[ -n $FAKE_URL ]] || die "fake-openeo did not print its address within 10 s"
}

# Runs a contender's driver with a hard limit (its own --timeout plus 2 min), in the
# background so that a signal to this script is handled at once.
bounded() {
    local what=$1 pid rc=0
    shift
    timeout --kill-after=10 $((TIMEOUT_S + 120)) "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    [[ $rc == 0 ]] || say "$what failed (exit $rc)"
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

JOB_TOTAL_S=$("$(command -v python3)" -c "print($QUEUED_SECS + $JOB_SECS)")

round_eodispatch() {
    local r=$1 home="$WORK/r$1-eodispatch" port gdal_bin
    say "round $r/$ROUNDS: eodispatch, one task of $TILES tiles"
    start_fake "r$r-fake-eodispatch"
    mkdir -p "$home/home" "$home/config"
    port=$(free_port)
    if [[ $GEO == 1 ]]; then gdal_bin=$GEO_HELPER; else gdal_bin="$home/no-geo-helper"; fi
    env -u DBUS_SESSION_BUS_ADDRESS \
        HOME="$home/home" \
        XDG_CONFIG_HOME="$home/home/.config" \
        XDG_STATE_HOME="$home/home/.local/state" \
        EODISPATCH_CONFIG_DIR="$home/config" \
        EODISPATCH_STATE_DIR="$home/state" \
        EODISPATCH_RESULTS_DIR="$home/results" \
        EODISPATCH_GDAL_BIN="$gdal_bin" \
        EODISPATCH_LISTEN="127.0.0.1:$port" \
        EODISPATCH_LOG="$DAEMON_LOG" \
        EODISPATCH_POLL_INTERVAL_MIN_S="$POLL_S" \
        EODISPATCH_POLL_INTERVAL_MAX_S="$POLL_S" \
        EODISPATCH_BACKENDS__FAKE__URL="$FAKE_URL" \
        EODISPATCH_BACKENDS__FAKE__MAX_RUNNING_JOBS="$PARALLEL" \
        EODISPATCH_BACKENDS__FAKE__REQUESTS_PER_SECOND="$RPS" \
        "$EODISPATCH" serve >"$WORK/r$r-daemon.log" 2>&1 </dev/null &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    for _ in $(seq 200); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        kill -0 "$DAEMON_PID" 2>/dev/null || die "eodispatch exited; see $WORK/r$r-daemon.log"
        sleep 0.05
    done
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null || die "eodispatch not healthy within 10 s"
    bounded "eodispatch, round $r" "$PY" "$BENCHES/upscale_eodispatch.py" \
        --daemon "127.0.0.1:$port" --token-file "$home/state/api-token" --pid "$DAEMON_PID" \
        --results-dir "$home/results" --fake "$FAKE_URL" --fake-pid "$FAKE_PID" \
        --tiles "$TILES" --job-secs "$JOB_TOTAL_S" --timeout "$TIMEOUT_S" --round "$r" \
        --out "$WORK/eodispatch-r$r.json"
    stop_pid "$DAEMON_PID"
    stop_pid "$FAKE_PID"
    [[ $KEEP == 1 ]] || rm -rf "$home/results"
}

round_mbjm() {
    local r=$1
    say "round $r/$ROUNDS: MultiBackendJobManager, $TILES tiles"
    start_fake "r$r-fake-mbjm"
    bounded "MultiBackendJobManager, round $r" "$PY" "$BENCHES/upscale_mbjm.py" \
        --fake "$FAKE_URL" --fake-pid "$FAKE_PID" --tiles "$TILES" --job-secs "$JOB_TOTAL_S" \
        --parallel "$PARALLEL" --poll-sleep "$POLL_S" --workdir "$WORK/r$r-mbjm" \
        --timeout "$TIMEOUT_S" --round "$r" --out "$WORK/mbjm-r$r.json"
    stop_pid "$FAKE_PID"
    [[ $KEEP == 1 ]] || rm -rf "$WORK/r$r-mbjm/results"
}

# ---------------------------------------------------------------------------
# Always the same three packages, GEO or not: another set unifies features differently
# and rebuilds the daemon.
say "building release binaries (eodispatch, fake-openeo, eodispatch-gdal) if needed"
(cd "$ROOT" && cargo build --release -p eodispatch -p fake-openeo -p eodispatch-gdal)
[[ -x $EODISPATCH && -x $FAKE ]] || die "release binaries not found in $TARGET/release"
[[ $GEO == 0 || -x $GEO_HELPER ]] || die "$GEO_HELPER not found"

if ! { [[ -x $PY ]] && "$PY" -c "
import openeo, pandas, sys
sys.exit(openeo.client_version() != '$OPENEO_VERSION' or pandas.__version__ != '$PANDAS_VERSION')
" 2>/dev/null; }; then
    say "preparing $VENV with openeo==$OPENEO_VERSION and pandas==$PANDAS_VERSION from PyPI"
    [[ -x $PY ]] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "openeo==$OPENEO_VERSION" "pandas==$PANDAS_VERSION"
fi

export PYTHONDONTWRITEBYTECODE=1
# Loopback never goes through a proxy (curl, urllib and requests all honour these).
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
"$PY" - "$WORK/meta.json" "$COMMAND" "$EODISPATCH" "$TILES" "$PARALLEL" "$QUEUED_SECS" \
    "$JOB_SECS" "$POLL_S" "$RPS" "$GEO" "$ROUNDS" <<'EOF'
import json, os, platform, subprocess, sys, time
import openeo, pandas
out, command, binary = sys.argv[1:4]
tiles, parallel = (int(v) for v in sys.argv[4:6])
queued, job, poll, rps = (float(v) for v in sys.argv[6:10])
geo, rounds = int(sys.argv[10]), int(sys.argv[11])
model = "unknown CPU"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
json.dump({
    "command": command,
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.platform(),
    "eodispatch_version": version[-1] if version else "unknown",
    "openeo_version": openeo.client_version(), "pandas_version": pandas.__version__,
    "python_version": platform.python_version(),
    "tiles": tiles, "parallel": parallel, "queued_s": queued, "job_s": job,
    "poll_s": poll, "rps": rps, "geo": geo, "rounds": rounds,
}, open(out, "w"), indent=2)
EOF

say "load before the rounds: $(uptime)"
OUTS=()
for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then
        round_eodispatch "$r"
        round_mbjm "$r"
    else
        round_mbjm "$r"
        round_eodispatch "$r"
    fi
    OUTS+=("$WORK/eodispatch-r$r.json" "$WORK/mbjm-r$r.json")
done
say "load after the rounds: $(uptime)"

# ---------------------------------------------------------------------------
echo
rc=0
"$PY" "$BENCHES/upscale_common.py" table "$WORK/meta.json" "${OUTS[@]}" || rc=$?
echo
echo "load: $(uptime)"
FAILED=$rc
exit "$rc"
