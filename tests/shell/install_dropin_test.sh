#!/usr/bin/env bash
# The installer's systemd drop-in carries the EODISPATCH_* values of its environment,
# which may be secrets (a backend's access token): it must be readable by the user only,
# whatever the umask, and say each value once, quoted for systemd.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-dropin-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

(
	# shellcheck source=install
	source ./install
	UNIT_DIR=$tmp/units
	umask 022
	export EODISPATCH_BACKENDS__GEP__ACCESS_TOKEN='AT-DROPIN-SENTINEL'
	export EODISPATCH_LISTEN=127.0.0.1:9999
	write_env_dropin >/dev/null
)
dropin=$tmp/units/eodispatch.service.d/install-env.conf
check "drop-in is 0600" test "$(stat -c %a "$dropin")" = 600
check "its folder is 0700" test "$(stat -c %a "$(dirname "$dropin")")" = 700
check "the token is passed once, quoted" \
	test "$(grep -c 'Environment="EODISPATCH_BACKENDS__GEP__ACCESS_TOKEN=AT-DROPIN-SENTINEL"' "$dropin")" = 1
check "the address is passed" test "$(grep -c 'Environment="EODISPATCH_LISTEN=127.0.0.1:9999"' "$dropin")" = 1
check "no temporary file is left" test -z "$(find "$tmp" -name '*.tmp')"
finish
