#!/usr/bin/env bash
# End-to-end test in the real QGIS desktop under Xvfb: the plugin installed by
# `./install --plugin-only` into a throw-away HOME and loaded by QGIS itself, the real
# daemon and the fake openEO backend, a job submitted on the canvas extent, the result
# layer group appearing in the layer tree, and screenshots (E2E_OUT/first_run.png: the
# fresh profile's first look, at 1366 × 728; E2E_OUT/screenshot.png after the job);
# then an upscaling run over a drawn polygon: its cells (E2E_OUT/upscale_cells.png), one
# task, its tiles' footprints and the task's mosaic as one layer (E2E_OUT/upscale.png);
# E2E_KEEP=1 keeps the folder. Needs target/debug/{eodispatch,fake-openeo} (built when
# missing), qgis, xvfb-run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd -P)

for cmd in qgis xvfb-run; do
	command -v "$cmd" >/dev/null 2>&1 || {
		echo "desktop test: $cmd is not installed" >&2
		exit 1
	}
done
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug
packages=(-p eodispatch -p fake-openeo)
[[ -d crates/gdal-helper ]] && packages+=(-p eodispatch-gdal) # the daemon's GDAL helper (results branch)
cargo build -q "${packages[@]}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/eodispatch-desktop.XXXXXX")
OUT=${E2E_OUT:-$WORK/out}
mkdir -p "$OUT"
rm -f "$OUT/result.json" "$OUT/screenshot.png" "$OUT/form.png" "$OUT/first_run.png" \
	"$OUT/upscale_cells.png" "$OUT/upscale.png" # never read a previous run's
FAKE_PID=""
DAEMON_PID=""
cleanup() {
	local pid
	for pid in $DAEMON_PID $FAKE_PID; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $DAEMON_PID $FAKE_PID; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${E2E_KEEP:-0} == 1 ]]; then
		echo "kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export HOME=$WORK/home
mkdir -p "$HOME"
unset XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME XDG_CACHE_HOME
export EODISPATCH_CONFIG_DIR=$WORK/eod/config
export EODISPATCH_STATE_DIR=$WORK/eod/state
export EODISPATCH_RESULTS_DIR=$WORK/eod/results
EODISPATCH_LISTEN=127.0.0.1:$(free_port)
export EODISPATCH_LISTEN
export EODISPATCH_POLL_INTERVAL_MIN_S=0.5 EODISPATCH_POLL_INTERVAL_MAX_S=1

"$TARGET/fake-openeo" --port 0 --anonymous --queued-secs 1 --running-secs 2 >"$WORK/fake.out" 2>"$WORK/fake.log" &
FAKE_PID=$!
for _ in $(seq 1 100); do
	grep -q "listening on" "$WORK/fake.out" 2>/dev/null && break
	sleep 0.1
done
FAKE_URL=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$WORK/fake.out")
[[ -n $FAKE_URL ]] || {
	echo "fake-openeo did not start" >&2
	cat "$WORK/fake.log" >&2
	exit 1
}

"$TARGET/eodispatch" serve >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
	curl -sf "http://$EODISPATCH_LISTEN/health" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -sf "http://$EODISPATCH_LISTEN/health" >/dev/null || {
	echo "daemon did not start" >&2
	cat "$WORK/daemon.log" >&2
	exit 1
}

# The plugin as a user gets it: ./install into the (throw-away) QGIS profile.
"$REPO/install" --plugin-only

# The daemon downloads, inspects (GDAL) and publishes the result; QGIS must load it.
export E2E_OUT=$OUT E2E_FAKE=$FAKE_URL E2E_REPO=$REPO
export QT_QPA_PLATFORM=xcb
status=0
timeout 360 xvfb-run -a -s "-screen 0 1366x768x24" \
	qgis --nologo --noversioncheck --code "$REPO/tests/desktop/qgis_script.py" >"$WORK/qgis.log" 2>&1 || status=$?

if [[ ! -f $OUT/result.json ]]; then
	echo "desktop test: QGIS wrote no result (exit $status); its log:" >&2
	tail -n 60 "$WORK/qgis.log" >&2
	exit 1
fi
cat "$OUT/result.json"
python3 - "$OUT/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["checks"]
problems = []
if not r.get("ok"):
    problems.append(f"failed: {r.get('error')}")
else:
    if not c.get("plugin_loaded_by_qgis"):
        problems.append("plugin not loaded by QGIS")
    box = c.get("extent_sent") or {}
    if not (16.0 < box.get("west", 0) < box.get("east", 0) < 16.8):
        problems.append(f"extent not from the UTM canvas in degrees: {box}")
    if c.get("job_list_status") != "finished":
        problems.append(f"job list shows {c.get('job_list_status')}")
    if c.get("footprint_colour") != "#33a02c":
        problems.append(f"footprint colour {c.get('footprint_colour')}")
    if c.get("group") != f"{r['job']['title']} (#{r['job']['id']})":
        problems.append(f"group {c.get('group')}")
    if not c.get("layers") or not c.get("layers_valid"):
        problems.append(f"layers {c.get('layers')}")
    if "eodispatch:run_service" not in (c.get("processing_algorithms") or []):
        problems.append(f"no Processing provider: {c.get('processing_algorithms')}")
    if c.get("project_crs") != "EPSG:32633":
        problems.append(f"the project CRS changed to {c.get('project_crs')}")
    if (c.get("screenshot") or 0) < 10000:
        problems.append("no screenshot")
    # First run: the first catalogue service with its form, Submit in sight, the offer.
    if c.get("first_run_window") != [1366, 728]:
        problems.append(f"first run: main window {c.get('first_run_window')}, not 1366 x 728")
    if not c.get("first_run_service") or c.get("first_run_service") != c.get("first_run_first_catalogue_service"):
        problems.append(f"first run: service {c.get('first_run_service')}, not the first catalogue service "
                        f"{c.get('first_run_first_catalogue_service')}")
    if not c.get("first_run_form") or not c.get("first_run_extent") or not c.get("first_run_title"):
        problems.append(f"first run: form not ready: {c.get('first_run_form')} {c.get('first_run_extent')}")
    if not (c.get("first_run_submit_in_window") and c.get("first_run_submit_unclipped")):
        problems.append("first run: the Submit button is not fully in sight")
    if not c.get("first_run_osm_offered"):
        problems.append("first run: no OpenStreetMap offer for the empty project")
    states = {s for _, s in c.get("first_run_backends") or []}
    if not states or not states <= {"logged in", "login needed", "no login needed", "logging in…"} | {
            s for s in states if s.startswith("unreachable")}:
        problems.append(f"first run: backend states {c.get('first_run_backends')}")
    if (c.get("first_run_screenshot") or 0) < 10000:
        problems.append("no first-run screenshot")
    # Upscaling: a drawn polygon, its cells before submitting, one task, one mosaic layer.
    n = c.get("upscale_cells") or 0
    if c.get("upscale_area") != "a drawn polygon" or not 2 <= n <= 4:
        problems.append(f"upscale: {n} cells of {c.get('upscale_area')} (want 2 to 4 of a drawn polygon)")
    if c.get("upscale_preview_cells") != n or not str(c.get("upscale_status", "")).startswith(f"{n} cells of 20 km"):
        problems.append(f"upscale: preview {c.get('upscale_preview_cells')} cells, status {c.get('upscale_status')!r}")
    if not c.get("upscale_preview_on_top"):
        problems.append("upscale: the cells' preview is not on top of the layer tree")
    if c.get("upscale_submit_text") != f"Submit upscale task ({n} tiles)":
        problems.append(f"upscale: submit button {c.get('upscale_submit_text')!r}")
    if c.get("upscale_task_status") != "finished" or c.get("upscale_tiles") != n:
        problems.append(f"upscale: task {c.get('upscale_task_status')} with {c.get('upscale_tiles')} tiles")
    if c.get("upscale_row_children") != n or "finished" != (c.get("upscale_row") or ["", ""])[1]:
        problems.append(f"upscale: job list row {c.get('upscale_row')} with {c.get('upscale_row_children')} tiles")
    if c.get("upscale_footprint_colours") != ["#33a02c"]:
        problems.append(f"upscale: tile footprint colours {c.get('upscale_footprint_colours')}")
    task = r.get("task") or {}
    if c.get("upscale_group") != f"{task.get('title')} (task #{task.get('id')})":
        problems.append(f"upscale: group {c.get('upscale_group')}")
    if len(c.get("upscale_layers") or []) != 1 or not c.get("upscale_layers_valid"):
        problems.append(f"upscale: mosaic layers {c.get('upscale_layers')} (want one, valid)")
    if c.get("upscale_tile_groups"):
        problems.append(f"upscale: tiles loaded one by one: {c.get('upscale_tile_groups')}")
    width = (c.get("upscale_dock_size") or [9999])[0]
    if width > (c.get("first_run_dock_size") or [0])[0] + 8:
        problems.append(f"upscale: the task row's buttons {c.get('upscale_buttons')} widen the dock to {width} px "
                        f"(first run: {c.get('first_run_dock_size')})")
    for shot in ("upscale_cells_screenshot", "upscale_screenshot"):
        if (c.get(shot) or 0) < 10000:
            problems.append(f"no {shot}")
if problems:
    print("desktop test FAILED: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print("desktop test passed")
EOF
echo "screenshots: $OUT/first_run.png $OUT/form.png $OUT/screenshot.png $OUT/upscale_cells.png $OUT/upscale.png"
