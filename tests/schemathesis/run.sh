#!/usr/bin/env bash
# Usage: tests/schemathesis/run.sh [ST ARG]...
#
# Starts the real daemon (`eodispatch serve`, every folder under a temporary root, the
# bundled catalogue only) on a free loopback port and runs Schemathesis against its own
# /openapi.json with every check (turned on in schemathesis.toml), a fixed seed and a bounded number of cases per
# operation: each answer must be one the document states (status, media type, headers,
# body), valid data must be accepted, invalid data refused, and nothing may be a 500.
# The few checks that cannot hold for a daemon without backends are set aside in
# tests/schemathesis/schemathesis.toml, each with its reason. Exits with Schemathesis's
# status (0: no failure). Extra arguments go to `st run`.
#
# Needs: the debug build of the workspace (cargo build --workspace), the venv
# .venv-schemathesis (tests/run makes it from tests/schemathesis/requirements.txt) and a
# Secret Service for the login routes (run it under tests/lib/secret_service.sh).
#
# Environment: ST_SEED (default 14), ST_MAX_EXAMPLES (cases per operation, default 25),
# CARGO_TARGET_DIR (where the daemon was built), ST_KEEP=1 keeps the temporary root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd -P)
readonly REPO
readonly BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/eodispatch
readonly ST=$REPO/.venv-schemathesis/bin/st

[[ -x $BIN ]] || {
	echo "no $BIN: run cargo build --workspace first" >&2
	exit 2
}
[[ -x $ST ]] || {
	echo "no $ST: pip install -r tests/schemathesis/requirements.txt into .venv-schemathesis" >&2
	exit 2
}

root=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-schemathesis.XXXXXX")
daemon_pid=""
cleanup() {
	if [[ -n $daemon_pid ]]; then
		kill "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	if [[ ${ST_KEEP:-0} == 1 ]]; then
		echo "kept $root" >&2
	else
		rm -rf "$root"
	fi
}
trap cleanup EXIT

port=$("$REPO/.venv-schemathesis/bin/python" -c \
	'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

# No network but 127.0.0.1: the bundled catalogue only. Jobs for the made-up backends
# Schemathesis writes are accepted and then wait for an unreachable backend.
HOME=$root \
	EODISPATCH_CONFIG_DIR=$root/config \
	EODISPATCH_STATE_DIR=$root/state \
	EODISPATCH_RESULTS_DIR=$root/results \
	EODISPATCH_LISTEN=127.0.0.1:$port \
	EODISPATCH_CATALOGUES=bundled \
	EODISPATCH_LOG=warn \
	"$BIN" serve >"$root/daemon.log" 2>&1 &
daemon_pid=$!

for ((i = 0; i < 200; i++)); do
	if curl -fsS -o /dev/null "$base/health" 2>/dev/null; then
		break
	fi
	kill -0 "$daemon_pid" 2>/dev/null || {
		echo "the daemon exited:" >&2
		cat "$root/daemon.log" >&2
		exit 1
	}
	sleep 0.1
done
token=$(cat "$root/state/api-token")

status=0
# From the temporary root: Schemathesis keeps a cache folder where it runs.
cd "$root"
"$ST" --config-file "$REPO/tests/schemathesis/schemathesis.toml" run "$base/openapi.json" \
	--header "Authorization: Bearer $token" \
	--seed "${ST_SEED:-14}" \
	--max-examples "${ST_MAX_EXAMPLES:-25}" \
	--generation-database none \
	--no-color \
	"$@" || status=$?
if [[ $status -ne 0 ]]; then
	echo "--- daemon log (last 40 lines) ---" >&2
	tail -n 40 "$root/daemon.log" >&2
fi
exit "$status"
