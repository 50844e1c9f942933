#!/usr/bin/env bash
# Tracking benchmark: eodispatch vs the openEO Python client's MultiBackendJobManager.
#
#   benches/tracking.sh
#
# Builds the release binaries, prepares a venv with `openeo` and `pandas` from PyPI
# (target/bench-venv, reused), then runs two rounds in this one run, each against a
# FRESH fake-openeo with the same job plan:
#
#   1. eodispatch (release) with temporary folders: N jobs submitted through
#      POST /unit_jobs, tracked to completion by the daemon (benches/tracking_eodispatch.py);
#   2. MultiBackendJobManager: the same N jobs from a CSV job DB, run_jobs() with
#      download_results=False (benches/tracking_mbjm.py).
#
# and prints a side-by-side table: wall time, backend requests per job (by route),
# client CPU seconds, peak RSS, plus checks that exactly N jobs were created on the
# fake and all finished. Exit status 1 if a check fails.
#
# Settings (environment; defaults in brackets):
#   BENCH_JOBS [1000]          jobs per round
#   BENCH_PARALLEL [50]        jobs active at once: daemon max_running_jobs = MBJM parallel_jobs
#   BENCH_QUEUED_S [1]         the fake's queued time per job
#   BENCH_RUNNING_S [4]        the fake's running time per job
#   BENCH_POLL_MIN_S [1]       daemon poll_interval_min_s
#   BENCH_POLL_MAX_S [5]       daemon poll_interval_max_s
#   BENCH_RPS [20]             daemon requests_per_second towards the backend
#   BENCH_MBJM_POLL_S [1]      MBJM poll_sleep
#   BENCH_TIMEOUT_S [900]      per round
#   BENCH_KEEP [0]             1: keep the temporary folder (logs, job DB, JSON results)
#
# Network: loopback only, plus PyPI when the venv is created.

set -euo pipefail

JOBS=${BENCH_JOBS:-1000}
PARALLEL=${BENCH_PARALLEL:-50}
QUEUED_S=${BENCH_QUEUED_S:-1}
RUNNING_S=${BENCH_RUNNING_S:-4}
POLL_MIN_S=${BENCH_POLL_MIN_S:-1}
POLL_MAX_S=${BENCH_POLL_MAX_S:-5}
RPS=${BENCH_RPS:-20}
MBJM_POLL_S=${BENCH_MBJM_POLL_S:-1}
TIMEOUT_S=${BENCH_TIMEOUT_S:-900}
KEEP=${BENCH_KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES="$ROOT/benches"
VENV="$ROOT/target/bench-venv"
PY="$VENV/bin/python"
EODISPATCH="$ROOT/target/release/eodispatch"
FAKE="$ROOT/target/release/fake-openeo"
COMMAND="benches/tracking.sh"
for v in BENCH_JOBS BENCH_PARALLEL BENCH_QUEUED_S BENCH_RUNNING_S BENCH_POLL_MIN_S \
    BENCH_POLL_MAX_S BENCH_RPS BENCH_MBJM_POLL_S BENCH_TIMEOUT_S; do
    if [[ -n ${!v:-} ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

for v in "$JOBS" "$PARALLEL" "$TIMEOUT_S"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "tracking.sh: $v is not a positive integer" >&2; exit 2; }
done
for v in "$QUEUED_S" "$RUNNING_S" "$POLL_MIN_S" "$POLL_MAX_S" "$RPS" "$MBJM_POLL_S"; do
    [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "tracking.sh: $v is not a number" >&2; exit 2; }
done

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'tracking.sh: %s\n' "$*" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-tracking.XXXXXX")
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

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ $KEEP == 1 || $FAILED == 1 ]]; then
        say "kept $WORK (logs, job DB, results)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a fresh fake backend; sets FAKE_URL and FAKE_PID.
start_fake() {
    local name=$1 out="$WORK/$1.out"
    "$FAKE" --port 0 --queued-secs "$QUEUED_S" --running-secs "$RUNNING_S" \
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

# Runs a round's driver with a hard limit (its own --timeout plus 2 min), in the
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

# ---------------------------------------------------------------------------
say "building release binaries"
(cd "$ROOT" && cargo build --release -p eodispatch -p fake-openeo)

if ! { [[ -x $PY ]] && "$PY" -c 'import openeo, pandas' 2>/dev/null; }; then
    say "creating $VENV with openeo and pandas from PyPI"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check openeo pandas
fi

export PYTHONDONTWRITEBYTECODE=1
# Loopback never goes through a proxy (curl, urllib and requests all honour these).
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
"$PY" - "$WORK/meta.json" "$COMMAND" "$EODISPATCH" "$JOBS" "$PARALLEL" "$QUEUED_S" \
    "$RUNNING_S" "$POLL_MIN_S" "$POLL_MAX_S" "$RPS" "$MBJM_POLL_S" <<'EOF'
import json, os, platform, subprocess, sys, time
import openeo, pandas
out, command, binary = sys.argv[1:4]
jobs, parallel = (int(v) for v in sys.argv[4:6])
queued, running, poll_min, poll_max, rps, mbjm_poll = (float(v) for v in sys.argv[6:12])
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
    "jobs": jobs, "parallel": parallel, "queued_s": queued, "running_s": running,
    "poll_min_s": poll_min, "poll_max_s": poll_max, "rps": rps, "mbjm_poll_s": mbjm_poll,
}, open(out, "w"), indent=2)
EOF

say "load average before the rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
say "round 1/2: eodispatch, $JOBS jobs"
start_fake fake-eodispatch
EOD_HOME="$WORK/eodispatch"
mkdir -p "$EOD_HOME/home" "$EOD_HOME/config"
PORT=$(free_port)
env -u DBUS_SESSION_BUS_ADDRESS \
    HOME="$EOD_HOME/home" \
    XDG_CONFIG_HOME="$EOD_HOME/home/.config" \
    XDG_STATE_HOME="$EOD_HOME/home/.local/state" \
    EODISPATCH_CONFIG_DIR="$EOD_HOME/config" \
    EODISPATCH_STATE_DIR="$EOD_HOME/state" \
    EODISPATCH_RESULTS_DIR="$EOD_HOME/results" \
    EODISPATCH_LISTEN="127.0.0.1:$PORT" \
    EODISPATCH_LOG=info \
    EODISPATCH_POLL_INTERVAL_MIN_S="$POLL_MIN_S" \
    EODISPATCH_POLL_INTERVAL_MAX_S="$POLL_MAX_S" \
    EODISPATCH_BACKENDS__FAKE__URL="$FAKE_URL" \
    EODISPATCH_BACKENDS__FAKE__MAX_RUNNING_JOBS="$PARALLEL" \
    EODISPATCH_BACKENDS__FAKE__REQUESTS_PER_SECOND="$RPS" \
    EODISPATCH_BACKENDS__FAKE__ACCESS_TOKEN=tracking-bench-token \
    EODISPATCH_BACKENDS__FAKE__PROVIDER_ID=fake \
    "$EODISPATCH" serve >"$WORK/daemon.log" 2>&1 </dev/null &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
for _ in $(seq 200); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "eodispatch exited; see $WORK/daemon.log"
    sleep 0.05
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || die "eodispatch not healthy within 10 s"
bounded "the eodispatch round" "$PY" "$BENCHES/tracking_eodispatch.py" \
    --daemon "127.0.0.1:$PORT" --token-file "$EOD_HOME/state/api-token" \
    --pid "$DAEMON_PID" --fake "$FAKE_URL" --fake-pid "$FAKE_PID" \
    --jobs "$JOBS" --queued-s "$QUEUED_S" --running-s "$RUNNING_S" --timeout "$TIMEOUT_S" \
    --out "$WORK/eodispatch.json"
stop_pid "$DAEMON_PID"
stop_pid "$FAKE_PID"

# ---------------------------------------------------------------------------
say "round 2/2: MultiBackendJobManager, $JOBS jobs"
start_fake fake-mbjm
bounded "the MultiBackendJobManager round" "$PY" "$BENCHES/tracking_mbjm.py" \
    --fake "$FAKE_URL" --fake-pid "$FAKE_PID" --jobs "$JOBS" --parallel "$PARALLEL" \
    --queued-s "$QUEUED_S" --running-s "$RUNNING_S" \
    --poll-sleep "$MBJM_POLL_S" --workdir "$WORK/mbjm" --timeout "$TIMEOUT_S" \
    --out "$WORK/mbjm.json"
stop_pid "$FAKE_PID"

# ---------------------------------------------------------------------------
echo
rc=0
"$PY" "$BENCHES/tracking_common.py" table "$WORK/meta.json" "$WORK/eodispatch.json" \
    "$WORK/mbjm.json" || rc=$?
FAILED=$rc
exit "$rc"
