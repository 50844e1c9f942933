"""Submit from the dock to the real daemon and the fake backend, follow the job live over
SSE (job list and footprint colours), reconnect after a daemon restart, bypass a QGIS
proxy for loopback."""

import time

from conftest import pv_job, start_daemon, wait_until


def footprint_color_names():
    from eodispatch.core.footprints import STATUS_COLORS

    return {k: v.lower() for k, v in STATUS_COLORS.items()}


def test_submit_and_follow_live_with_footprints(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon,
                                                 fake_backend):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    import eodispatch

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    qgis_canvas.setExtent(QgsRectangle(600000, 5310000, 606000, 5316000))
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        dock = plugin.dock
        job = pv_job(fake_backend, "PV live")
        dock.select_service(job["service"]["endpoint"], job["service"]["application"])
        wait_until(lambda: "spatial_extent" in dock.form.editors, message="form")
        dock.form.editors["spatial_extent"].from_canvas()
        dock.title_edit.setText("PV live")
        statuses = []
        plugin.jobs.job_changed.connect(lambda j: statuses.append(j["status"]))
        colours = []
        plugin.jobs.job_changed.connect(lambda j: colours.append((j["status"], plugin.footprints.color_of(j["id"]))))
        from qgis.PyQt.QtCore import QTimer

        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start(20)
        dock.submit()
        wait_until(lambda: dock.last_job is not None, message="submitted")
        jid = dock.last_job["id"]
        sent = daemon.api("GET", f"/unit_jobs/{jid}")[1]
        box = sent["parameters"]["spatial_extent"]
        assert 16.0 < box["west"] < box["east"] < 16.6, box  # from the UTM canvas, in degrees
        wait_until(lambda: plugin.jobs.job(jid) and plugin.jobs.job(jid)["status"] == "finished", timeout=30,
                   message="finished over SSE")
        assert "queued" in statuses and "running" in statuses, statuses
        timer.stop()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        print(f"GUI thread while submitting and following: {len(ticks)} ticks, longest gap {max(gaps) * 1000:.0f} ms")
        assert max(gaps) < 0.25, max(gaps)
        item = dock.job_list.items[jid]
        assert item.text(1) == "finished" and "PV live" in item.text(0)
        assert item.text(4).endswith(" s")  # age
        # Download progress from `result` events (the results branch sends them).
        plugin.jobs.on_event("result", {"id": jid, "uuid": sent["uuid"], "state": "downloading",
                                        "bytes": 1_000_000, "total_bytes": 4_000_000})
        assert item.text(3) == "25 % of 4.0 MB"
        want = footprint_color_names()
        assert plugin.footprints.status_of(jid) == "finished"
        assert plugin.footprints.color_of(jid) == want["finished"]
        # Every status the footprint went through had its colour at that moment.
        for status, colour in colours:
            assert colour == want[status], (status, colour)
        layer = plugin.footprints.layer(create=False)
        assert layer is not None and layer.featureCount() == 1
        f = next(layer.getFeatures())
        bb = f.geometry().boundingBox()
        assert abs(bb.xMinimum() - box["west"]) < 1e-9 and abs(bb.yMaximum() - box["north"]) < 1e-9
        # The backend's log of the job, in a dialog.
        dock.job_action("logs", jid)
        wait_until(lambda: dock.logs_dialog is not None, message="logs dialog")
        from qgis.PyQt.QtWidgets import QPlainTextEdit

        text = dock.logs_dialog.findChild(QPlainTextEdit).toPlainText()
        assert text and text != "(no log entries)", text
        dock.logs_dialog.close()
        # The backend appears in the backends table.
        dock.client.get("/backends", dock._got_backends)
        # (The daemon may list other known backends too.)
        wait_until(lambda: dock.backend_row(fake_backend) >= 0, message="backends table")
        assert fake_backend.rstrip("/") in dock.backend_table.item(dock.backend_row(fake_backend), 0).toolTip()
        # Zoom to the job's extent: the canvas (UTM) now shows it.
        dock.job_action("zoom", jid)
        assert qgis_canvas.extent().contains(QgsRectangle(605000, 5311000, 605500, 5311500))
    finally:
        plugin.unload()


def test_footprint_colours_per_status(qgis_app, qgis_new_project):
    from eodispatch.core.footprints import Footprints

    fp = Footprints()
    want = footprint_color_names()
    assert list(want) == ["created", "queued", "running", "finished", "canceled", "failed"]
    assert want["created"] == "#1f78b4" and want["failed"] == "#e31a1c"
    for i, status in enumerate(want, start=1):
        fp.update_job({"id": i, "title": status, "status": status,
                       "parameters": {"spatial_extent": {"west": i, "south": 0, "east": i + 0.5, "north": 1}}})
    for i, status in enumerate(want, start=1):
        assert fp.color_of(i) == want[status], status
    fp.update_job({"id": 1, "status": "failed", "parameters": {"spatial_extent": {"west": 1, "south": 0, "east": 2, "north": 1}}})
    assert fp.color_of(1) == want["failed"]
    assert fp.layer().featureCount() == 6
    fp.update_job({"id": 2, "deleted": True})
    assert fp.layer().featureCount() == 5
    fp.remove_layer()


def test_cancel_from_the_job_list(qgis_app, qgis_iface, qgis_new_project, daemon, fake_backend):
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        status, job = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "to cancel"))
        assert status == 201, job
        wait_until(lambda: job["id"] in plugin.dock.job_list.items, message="job listed")
        plugin.dock.job_action("cancel", job["id"])
        try:
            wait_until(lambda: plugin.jobs.job(job["id"])["status"] == "canceled", timeout=20, message="canceled")
        except AssertionError:
            raise AssertionError(f"not canceled: {plugin.jobs.job(job['id'])}; daemon: {daemon.api('GET', '/unit_jobs/%d' % job['id'])}")
        assert plugin.footprints.color_of(job["id"]) == footprint_color_names()["canceled"]
    finally:
        plugin.unload()


def test_event_stream_reconnects_after_a_daemon_restart(qgis_app, daemon, fake_backend):
    from eodispatch.core.client import DaemonClient
    from eodispatch.core.jobs import JobModel
    from eodispatch.core.sse import EventStream

    client = DaemonClient()
    stream = EventStream(client)
    stream.MIN_DELAY_MS = 200
    stream._delay = 200
    model = JobModel(client, stream)
    connects = []
    stream.connected.connect(lambda: connects.append(time.time()))
    stream.start()
    try:
        wait_until(lambda: len(connects) == 1, message="connected")
        daemon.proc.terminate()
        daemon.proc.wait(20)
        wait_until(lambda: not stream.is_connected, message="disconnected")
        # A job appears while the plugin is disconnected...
        restarted = start_daemon(daemon.root, daemon.env["EODISPATCH_LISTEN"])
        daemon.proc = restarted.proc
        status, job = restarted.api("POST", "/unit_jobs", pv_job(fake_backend, "while away"))
        assert status == 201
        # ...and is there after the stream reconnected by itself.
        wait_until(lambda: len(connects) == 2, timeout=20, message="reconnected")
        wait_until(lambda: job["id"] in model.jobs, message="job list re-read")
    finally:
        stream.stop()


def test_a_job_list_answer_does_not_undo_newer_events(qgis_app, daemon, fake_backend):
    """The list answers what was true when it was asked: a job created (and a waiting
    reason told) by an event while the reload was on its way stays as the event said."""
    from eodispatch.core.client import DaemonClient
    from eodispatch.core.jobs import JobModel
    from eodispatch.core.sse import EventStream

    client = DaemonClient()
    model = JobModel(client, EventStream(client))
    status, known = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "listed"))
    assert status == 201, known
    reloads = []
    model.reloaded.connect(lambda: reloads.append(1))
    model.reload()  # the request is on its way; no event loop has run yet
    newer = dict(known, id=known["id"] + 1000, title="created meanwhile")
    waiting = {"reason": "backend_limit", "message": "limit", "backend": fake_backend, "since": None,
               "next_try": None}
    model.on_event("job", newer)
    model.on_event("job", dict(known, waiting=waiting))
    wait_until(lambda: reloads, message="the list answered")
    assert newer["id"] in model.jobs, "a job the list did not know yet is kept"
    assert model.job(known["id"])["waiting"] == waiting, "the newer waiting reason is kept"
    # Once no reload is on its way, the list is the truth again.
    model.reload()
    wait_until(lambda: len(reloads) == 2, message="the list answered again")
    assert newer["id"] not in model.jobs
    assert known["id"] in model.jobs


def test_loopback_bypasses_a_qgis_proxy(qgis_app, daemon):
    from qgis.core import QgsNetworkAccessManager
    from qgis.PyQt.QtNetwork import QNetworkProxy

    from eodispatch.core.client import DaemonClient

    nam = QgsNetworkAccessManager.instance()
    old = nam.fallbackProxy(), nam.excludeList(), nam.noProxyList()
    # A proxy that refuses everything (nothing listens on port 9).
    nam.setFallbackProxyAndExcludes(QNetworkProxy(QNetworkProxy.ProxyType.HttpProxy, "127.0.0.1", 9), [], [])
    QNetworkProxy.setApplicationProxy(QNetworkProxy(QNetworkProxy.ProxyType.HttpProxy, "127.0.0.1", 9))
    try:
        got = {}
        DaemonClient().get("/unit_jobs", lambda r: got.update(r=r))
        wait_until(lambda: "r" in got, message="answer")
        assert got["r"].ok, got["r"].error and got["r"].error.message
        assert got["r"].data == []
        # The blocking variant too.
        assert DaemonClient().blocking("GET", "/unit_jobs") == []
    finally:
        QNetworkProxy.setApplicationProxy(QNetworkProxy(QNetworkProxy.ProxyType.NoProxy))
        nam.setFallbackProxyAndExcludes(*old)



def test_result_actions_find_the_folder_and_load_again(qgis_app, qgis_iface, qgis_new_project, daemon,
                                                       fake_backend):
    from conftest import manifest_layer_names, publish_when_finished
    from eodispatch.core.manifest import _all_groups

    import eodispatch
    from qgis.core import QgsProject

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        status, job = daemon.api("POST", "/unit_jobs", pv_job(fake_backend, "with results"))
        assert status == 201
        publisher = publish_when_finished(daemon, job["id"])
        publisher.join(30)
        assert publisher.folder is not None
        wait_until(lambda: plugin.jobs.job(job["id"])["status"] == "finished", message="finished")

        def groups():
            return [g for g in _all_groups(QgsProject.instance().layerTreeRoot())
                    if g.customProperty("eodispatch/job_uuid") == job["uuid"]]

        wait_until(lambda: len(groups()) == 1, message="auto-loaded")
        dock = plugin.dock
        assert dock.job_folder(plugin.jobs.job(job["id"])) == publisher.folder
        dock.job_list.tree.setCurrentItem(dock.job_list.items[job["id"]])
        assert dock.job_list.buttons["folder"].isEnabled() and dock.job_list.buttons["reload"].isEnabled()
        assert not dock.job_list.buttons["cancel"].isEnabled()
        # The user removes the group; "Load again" brings it back, once.
        group = groups()[0]
        ids = [n.layerId() for n in group.findLayers()]
        group.parent().removeChildNode(group)
        QgsProject.instance().removeMapLayers(ids)
        assert groups() == []
        dock.job_list.buttons["reload"].click()
        assert len(groups()) == 1
        dock.job_list.buttons["reload"].click()
        assert len(groups()) == 1
        names = [n.layer().name() for n in groups()[0].findLayers()]
        assert names == manifest_layer_names(publisher.folder) and names
    finally:
        plugin.unload()
