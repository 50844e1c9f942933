"""Runs inside the real QGIS desktop (``qgis --code tests/desktop/qgis_script.py``),
started by tests/desktop/run.sh with the plugin installed by ./install and enabled in
the profile. Drives the plugin as a user would, without blocking the event loop:

0. first run of a fresh profile, the main window at 1366 × 728 (a 1366 × 768 screen less
   a taskbar): the dock opens on the first catalogue service with its form ready, the
   Submit button is in sight, the empty project is offered an OpenStreetMap background;
   screenshot first_run.png;
1. the plugin was loaded by QGIS itself (qgis.utils.plugins["eodispatch"]);
2. the canvas shows Vienna in a projected CRS (EPSG:32633); the dock's form takes the
   canvas extent and the job is submitted to the fake openEO backend;
3. the job is followed live to "finished" (SSE);
4. the job's folder appears in results_dir and the plugin loads it by itself: a group
   named after the job with the manifest's layers appears in the layer tree;
5. a screenshot of the main window is saved; the outcome is written as JSON.

Environment: E2E_OUT (folder for result.json, first_run.png, form.png and screenshot.png), E2E_FAKE (the fake
backend's URL), E2E_REPO.
"""

import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

OUT = Path(os.environ["E2E_OUT"])
FAKE = os.environ["E2E_FAKE"]
REPO = Path(os.environ["E2E_REPO"])
PV_UDP = (
    "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/refs/heads/main/"
    "algorithm_catalog/eurac/eurac_pv_farm_detection/openeo_udp/eurac_pv_farm_detection.json"
)
TITLE = "PV farms desktop e2e"
SCREEN = (1366, 728)  # 1366 × 768 less a 40 px taskbar
state = {"step": "first_run", "started": time.time(), "checks": {}, "job": None, "step_started": time.time()}
timer = QTimer()


def finish(ok, error=None):
    timer.stop()
    state["ok"] = ok
    state["error"] = error
    try:
        iface.mapCanvas().refreshAllLayers()
        QgsApplication.processEvents()
        time.sleep(0.5)
        QgsApplication.processEvents()
        iface.mainWindow().grab().save(str(OUT / "screenshot.png"))
        state["checks"]["screenshot"] = (OUT / "screenshot.png").stat().st_size
    except Exception as e:  # still write the result
        state["checks"]["screenshot_error"] = str(e)
    (OUT / "result.json").write_text(json.dumps({k: v for k, v in state.items() if k != "job"} | {"job": state["job"]},
                                                indent=1, default=str))
    QgsProject.instance().setDirty(False)
    # A modal dialog (e.g. a Python error at start-up) would keep QGIS from exiting.
    from qgis.PyQt.QtWidgets import QApplication

    for _ in range(5):
        modal = QApplication.activeModalWidget()
        if modal is None:
            break
        state.setdefault("modal_dialogs", []).append(modal.windowTitle())
        modal.close()
    QTimer.singleShot(200, QgsApplication.exit)


def go(step):
    state["step"] = step
    state["step_started"] = time.time()


def groups():
    from eodispatch.core.manifest import _all_groups

    return [g for g in _all_groups(QgsProject.instance().layerTreeRoot()) if g.customProperty("eodispatch/job_uuid")]


def tick():
    try:
        if time.time() - state["step_started"] > 60:
            return finish(False, f"timed out at step {state['step']}")
        step = state["step"]
        if step == "first_run":
            p = plugins.get("eodispatch")
            if p is None or p.dock is None or not p._started:
                return
            win = iface.mainWindow()
            if win.size().width() != SCREEN[0]:
                win.showNormal()
                win.move(0, 0)
                win.resize(*SCREEN)
                p.dock.show()
                p.dock.raise_()
                return
            dock = p.dock
            service = dock.service_combo.currentData()
            if not isinstance(service, dict) or dock.form.extent_widget() is None or dock.backend_table.rowCount() == 0:
                return
            if time.time() - state["step_started"] < 2.0:
                return  # let the layout settle
            c = state["checks"]
            c["first_run_window"] = [win.width(), win.height()]
            c["first_run_service"] = service.get("id")
            c["first_run_first_catalogue_service"] = p.catalog.services[0].get("id") if p.catalog.services else None
            c["first_run_form"] = sorted(dock.form.editors)
            c["first_run_extent"] = dock.form.extent_widget().value()
            c["first_run_title"] = dock.title_edit.text()
            button = dock.submit_button
            from qgis.PyQt.QtCore import QPoint, QRect

            rect = QRect(button.mapTo(win, QPoint(0, 0)), button.size())
            c["first_run_submit_in_window"] = win.rect().contains(rect) and button.isVisible()
            c["first_run_submit_unclipped"] = button.visibleRegion().boundingRect().size() == button.size()
            c["first_run_dock_size"] = [dock.width(), dock.height()]
            c["first_run_backends"] = [[dock.backend_table.item(r, i).text() for i in (0, 1)]
                                       for r in range(dock.backend_table.rowCount())]
            c["first_run_osm_offered"] = p._osm_bar is not None and "OpenStreetMap" in p._osm_bar.text()
            win.grab().save(str(OUT / "first_run.png"))
            c["first_run_screenshot"] = (OUT / "first_run.png").stat().st_size
            go("wait_plugin")
        elif step == "wait_plugin":
            p = plugins.get("eodispatch")
            if p is None or p.dock is None or not p._started:
                return
            state["checks"]["plugin_loaded_by_qgis"] = True
            provider = QgsApplication.processingRegistry().providerById("eodispatch")
            state["checks"]["processing_algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []
            crs = QgsCoordinateReferenceSystem("EPSG:32633")
            QgsProject.instance().setCrs(crs)
            iface.mapCanvas().setDestinationCrs(crs)
            iface.mapCanvas().setExtent(QgsRectangle(596000, 5308000, 612000, 5320000))
            iface.mapCanvas().refresh()
            p.dock.show()
            p.dock.raise_()
            p.dock.select_service(FAKE, PV_UDP)
            go("wait_form")
        elif step == "wait_form":
            p = plugins["eodispatch"]
            if not p.stream.is_connected or "spatial_extent" not in p.dock.form.editors:
                return
            p.dock.form.editors["spatial_extent"].from_canvas()
            state["checks"]["extent_sent"] = p.dock.form.editors["spatial_extent"].value()
            p.dock.title_edit.setText(TITLE)
            iface.mainWindow().grab().save(str(OUT / "form.png"))  # the Submit tab, to look at
            p.dock.submit()
            go("wait_submitted")
        elif step == "wait_submitted":
            p = plugins["eodispatch"]
            if p.dock.last_job is None:
                if not p.dock.general_error.isHidden():
                    return finish(False, "submit refused: " + p.dock.general_error.text())
                return
            state["job"] = p.dock.last_job
            go("wait_finished")
        elif step == "wait_finished":
            p = plugins["eodispatch"]
            job = p.jobs.job(state["job"]["id"])
            if job is None or job["status"] != "finished":
                if job is not None and job["status"] in ("failed", "canceled"):
                    return finish(False, f"job {job['status']}: {job.get('error')}")
                return
            state["job"] = job
            state["checks"]["footprint_colour"] = p.footprints.color_of(job["id"])
            state["checks"]["job_list_status"] = p.dock.job_list.items[job["id"]].text(1)
            go("maybe_publish")
        elif step == "maybe_publish":
            p = plugins["eodispatch"]
            job = p.jobs.job(state["job"]["id"])
            results_state = (job.get("results") or {}).get("state")
            if results_state in ("downloading", "ready"):
                state["checks"]["published_by_daemon"] = True
                go("wait_layers")
            elif time.time() - state["step_started"] > 10.0:
                return finish(False, f"the daemon did not publish the results: {job.get('results')}")
        elif step == "wait_layers":
            found = [g for g in groups() if g.customProperty("eodispatch/job_uuid") == state["job"]["uuid"]]
            if not found:
                return
            group = found[0]
            layers = [n.layer() for n in group.findLayers()]
            state["checks"]["group"] = group.name()
            state["checks"]["layers"] = [l.name() for l in layers]
            state["checks"]["layers_valid"] = all(l.isValid() for l in layers)
            state["checks"]["layer_tree_visible"] = all(n.isVisible() for n in group.findLayers())
            p = plugins["eodispatch"]
            p.dock.tabs.setCurrentWidget(p.dock.job_list)
            iface.mapCanvas().setExtent(iface.mapCanvas().extent())
            go("settle")
        elif step == "settle":
            if time.time() - state["step_started"] > 2.0:
                state["checks"]["project_crs"] = QgsProject.instance().crs().authid()
                finish(True)
    except Exception:
        finish(False, traceback.format_exc())


timer.timeout.connect(tick)
timer.start(100)
