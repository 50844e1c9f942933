#!/usr/bin/env bash
# Usage: tests/lib/secret_service.sh COMMAND [ARG]...
#
# Runs COMMAND inside a private D-Bus session bus with an unlocked gnome-keyring Secret
# Service, so that keyring tests work headless (CI, containers, ssh). The keyring files
# live in a temporary folder (not in ~/.local/share/keyrings) and are removed afterwards.
# Exits with COMMAND's status. Needs dbus-run-session (dbus), dbus-send and
# gnome-keyring-daemon (gnome-keyring).
set -euo pipefail

if [[ ${1:-} != --inside-session ]]; then
	[[ $# -gt 0 ]] || {
		echo "usage: $0 COMMAND [ARG]..." >&2
		exit 2
	}
	exec dbus-run-session -- bash "${BASH_SOURCE[0]}" --inside-session "$@"
fi
shift

keyring_home=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-keyring.XXXXXX")
trap 'rm -rf "$keyring_home"' EXIT

# The daemon keeps running until the session bus goes away with dbus-run-session.
echo pw | XDG_DATA_HOME=$keyring_home gnome-keyring-daemon --unlock --components=secrets >/dev/null

# --unlock returns before the daemon owns its bus name; a client that came earlier would
# make the bus activate a second daemon, with the real keyring folder.
owned=0
for ((i = 0; i < 50; i++)); do
	if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
		grep -q 'boolean true'; then
		owned=1
		break
	fi
	sleep 0.1
done
[[ $owned == 1 ]] || echo "warning: no Secret Service on the session bus after 5 s" >&2

# Tests that need the Secret Service fail (instead of skipping) inside this session.
export TESTS_REQUIRE_SECRET_SERVICE=1
status=0
"$@" || status=$?
exit "$status"
