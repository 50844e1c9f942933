#!/usr/bin/env bash
# Tests ./install end to end in a throw-away HOME: install (no system packages, no systemd:
# the daemon runs with nohup on a free port), use the API, install again (idempotent),
# uninstall (results, database and token stay), uninstall again. The daemon's discovery
# file (daemon.json) and `eodispatch paths` name the daemon the installer started.
# Safe as root in CI: nothing outside the temporary HOME is touched, except the shared
# cargo target/ folder (release build). INSTALL_TEST_KEEP=1 keeps the temporary HOME.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh

# The real Rust installation stays in use once HOME moves.
if [[ -d ${CARGO_HOME:-$HOME/.cargo} ]]; then
	export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
	case ":$PATH:" in *":$CARGO_HOME/bin:"*) ;; *) PATH=$PATH:$CARGO_HOME/bin ;; esac
fi
if [[ -d ${RUSTUP_HOME:-$HOME/.rustup} ]]; then
	export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
fi

TEST_HOME=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-install-test.XXXXXX")
TEST_HOME=$(cd "$TEST_HOME" && pwd -P)
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
BIN=$TEST_HOME/.local/bin/eodispatch
STATE_DIR=$TEST_HOME/.local/state/eodispatch
PID_FILE=$STATE_DIR/daemon.pid
DISCOVERY=$STATE_DIR/daemon.json
LOG_FILE=$STATE_DIR/daemon.log
RESULTS_DIR=$TEST_HOME/EODispatch
OUT=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-install-test-out.XXXXXX")

daemon_pid() { head -n 1 "$PID_FILE" 2>/dev/null || true; }

# True when $1 is a live (not zombie) eodispatch process.
alive() {
	[[ $1 =~ ^[0-9]+$ && -r /proc/$1/stat ]] || return 1
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q eodispatch
}

cleanup() {
	local pid
	pid=$(daemon_pid)
	if alive "$pid"; then
		echo "cleanup: stopping the test daemon (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
	fi
	if [[ ${INSTALL_TEST_KEEP:-0} == 1 ]]; then
		echo "kept: $TEST_HOME $OUT"
	else
		rm -rf "$TEST_HOME" "$OUT"
	fi
}
trap cleanup EXIT

# COMMAND in the test HOME: no XDG_* or EODISPATCH_* from outside, no session bus, the
# daemon on the free port.
in_test_home() {
	local unset_args=() name
	while IFS= read -r name; do
		case $name in
		XDG_* | EODISPATCH_* | DBUS_SESSION_BUS_ADDRESS) unset_args+=(-u "$name") ;;
		esac
	done < <(compgen -e)
	env ${unset_args[@]+"${unset_args[@]}"} HOME="$TEST_HOME" EODISPATCH_LISTEN="127.0.0.1:$PORT" "$@"
}

# run_install NAME ARGS...: runs ./install ARGS, output in $OUT/NAME.log; PASS/FAIL on its status.
run_install() {
	local name=$1 status=0
	shift
	echo "--- ./install $* (HOME=$TEST_HOME, port $PORT)"
	in_test_home ./install "$@" >"$OUT/$name.log" 2>&1 || status=$?
	if [[ $status -eq 0 ]]; then
		pass "./install $* exits 0"
		tail -n 8 "$OUT/$name.log" | sed 's/^/    | /'
	else
		fail "./install $* exits 0 (exit $status); its output:"
		tail -n 60 "$OUT/$name.log" | sed 's/^/    | /'
		if [[ -f $LOG_FILE ]]; then
			echo "    daemon.log:"
			tail -n 30 "$LOG_FILE" | sed 's/^/    | /'
		fi
	fi
	return "$status"
}

health() { curl -fsS -m 3 "$URL/health" >/dev/null 2>&1; }
# True when a line of `eodispatch paths` matches the regular expression $1 entirely.
paths_says() { in_test_home "$BIN" paths 2>/dev/null | grep -qx "$1"; }
mode_of() { stat -c %a "$1" 2>/dev/null || echo missing; }

abort() {
	fail "$*; stopping here"
	finish || exit 1
}

# --- install ----------------------------------------------------------------------------

run_install install1 --no-deps --no-systemd || abort "install failed"

check "the binary is in \$HOME/.local/bin" test -x "$BIN"
check "/health answers on port $PORT" health
check "the install output shows the curl line for port $PORT" \
	grep -q "curl -s -H \"Authorization: Bearer .* token)\" $URL/unit_jobs" "$OUT/install1.log"
QGIS_PROFILE=$TEST_HOME/.local/share/QGIS/QGIS3/profiles/default
check "the QGIS plugin is in the default QGIS profile" test -f "$QGIS_PROFILE/python/plugins/eodispatch/metadata.txt"
check "the QGIS plugin is enabled in QGIS3.ini" grep -qx "eodispatch=true" "$QGIS_PROFILE/QGIS/QGIS3.ini"
FIRST_PID=$(daemon_pid)
check "the background daemon's pid file names a live process" alive "$FIRST_PID"
check "the daemon wrote its discovery file" test -f "$DISCOVERY"
m=$(mode_of "$DISCOVERY")
if [[ $m == 600 ]]; then pass "discovery file mode is 600"; else fail "discovery file mode is 600 (got $m)"; fi
check "the discovery file names the daemon's pid" grep -q "\"pid\": $FIRST_PID," "$DISCOVERY"
check "eodispatch paths: the daemon runs, with that pid" paths_says "pid  *$FIRST_PID"
check "eodispatch paths: the API at $URL" paths_says "api_url  *$URL"
check "eodispatch paths: the results folder" paths_says "results_dir  *$RESULTS_DIR"
check "the install output names the address of the discovery file" grep -q "healthy at $URL (pid $FIRST_PID)" "$OUT/install1.log"

TOKEN=$(in_test_home "$BIN" token 2>"$OUT/token.err" || true)
if [[ $TOKEN =~ ^[0-9a-fA-F]{64}$ ]]; then
	pass "eodispatch token prints a 64-hex-character token"
else
	fail "eodispatch token prints a 64-hex-character token (got '$TOKEN', stderr: $(cat "$OUT/token.err"))"
fi
m=$(mode_of "$STATE_DIR/api-token")
if [[ $m == 600 ]]; then pass "token file mode is 600"; else fail "token file mode is 600 (got $m)"; fi
m=$(mode_of "$STATE_DIR")
if [[ $m == 700 ]]; then pass "state folder mode is 700"; else fail "state folder mode is 700 (got $m)"; fi

JOB='{"title":"t","label":"openeo","service":{"endpoint":"https://openeo.example","application":"https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"},"parameters":{},"format":"gtiff"}'
code=$(curl -sS -m 10 -o "$OUT/job.json" -w '%{http_code}' -X POST \
	-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
	--data "$JOB" "$URL/unit_jobs" 2>"$OUT/curl.err" || true)
if [[ $code == 201 ]]; then
	pass "POST /unit_jobs answers 201"
else
	fail "POST /unit_jobs answers 201 (got '$code': $(head -c 500 "$OUT/job.json" 2>/dev/null) $(cat "$OUT/curl.err"))"
fi

# --- install again: same token, new daemon ----------------------------------------------

run_install install2 --no-deps --no-systemd || abort "second install failed"
check "/health answers after the second install" health
SECOND_PID=$(daemon_pid)
if alive "$SECOND_PID" && [[ $SECOND_PID != "$FIRST_PID" ]] && ! alive "$FIRST_PID"; then
	pass "the second install replaced the daemon (pid $FIRST_PID -> $SECOND_PID)"
else
	fail "the second install replaced the daemon (pids: first $FIRST_PID, now $SECOND_PID)"
fi
check "the discovery file names the new daemon" grep -q "\"pid\": $SECOND_PID," "$DISCOVERY"
TOKEN2=$(in_test_home "$BIN" token 2>/dev/null || true)
if [[ -n $TOKEN && $TOKEN2 == "$TOKEN" ]]; then
	pass "the API token survives a re-install"
else
	fail "the API token survives a re-install"
fi

# --- uninstall --------------------------------------------------------------------------

run_install uninstall1 --uninstall --no-systemd || true
check "the binary is gone" test ! -e "$BIN"
check "the QGIS plugin is gone" test ! -e "$QGIS_PROFILE/python/plugins/eodispatch"
if grep -q "eodispatch=" "$QGIS_PROFILE/QGIS/QGIS3.ini" 2>/dev/null; then
	fail "QGIS3.ini no longer enables the plugin"
else
	pass "QGIS3.ini no longer enables the plugin"
fi
if health; then
	fail "the daemon is stopped (/health still answers)"
else
	pass "the daemon is stopped (/health no longer answers)"
fi
if alive "$SECOND_PID"; then
	fail "the daemon process is gone (pid $SECOND_PID still runs)"
else
	pass "the daemon process is gone"
fi
check "the results folder is kept" test -d "$RESULTS_DIR"
check "the database is kept" test -f "$STATE_DIR/eodispatch.db"
check "the API token is kept" test -f "$STATE_DIR/api-token"
check "the stopped daemon removed its discovery file" test ! -e "$DISCOVERY"
check "the uninstall output says what it kept" grep -q "Kept" "$OUT/uninstall1.log"

run_install uninstall2 --uninstall --no-systemd || true

finish
