# shellcheck shell=bash
# Helpers for the shell tests in tests/shell/ (source this file).
#   pass MSG / fail MSG      record and print a PASS / FAIL line
#   check MSG COMMAND...     pass when COMMAND succeeds, else fail
#   free_port                print a TCP port free on 127.0.0.1
#   finish                   print the counts; exit 1 when anything failed

TESTS_PASSED=0
TESTS_FAILED=0

pass() {
	TESTS_PASSED=$((TESTS_PASSED + 1))
	printf 'PASS: %s\n' "$*"
}

fail() {
	TESTS_FAILED=$((TESTS_FAILED + 1))
	printf 'FAIL: %s\n' "$*"
}

check() {
	local message=$1
	shift
	if "$@"; then pass "$message"; else fail "$message"; fi
}

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	local port
	if command -v python3 >/dev/null 2>&1 &&
		port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null); then
		printf '%s\n' "$port"
		return 0
	fi
	for _ in $(seq 1 100); do
		port=$((20000 + RANDOM % 40000))
		if ! port_in_use "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	return 1
}

finish() {
	printf '%s: %d passed, %d failed\n' "$(basename "$0")" "$TESTS_PASSED" "$TESTS_FAILED"
	[[ $TESTS_FAILED -eq 0 ]]
}
