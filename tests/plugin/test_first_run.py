"""A first-time user's dock (issue: "a ready form, readable backends"): it opens on the
first catalogue service with its form ready, also when the services arrive after the dock
was built; the user's own pick is remembered across restarts; the Submit button stays in
sight on a 1366 × 768 screen. Against the real daemon and the fake backend (the
``fresh_settings`` fixture is in conftest.py)."""

from conftest import wait_until

PV_ID = "eurac_pv_farm_detection"


def _canvas_on(canvas, west, south, east, north):
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(QgsRectangle(west, south, east, north))


def _selected_id(dock):
    data = dock.service_combo.currentData()
    return data.get("id") if isinstance(data, dict) else data


def test_first_catalogue_service_is_selected_when_services_arrive_after_the_dock(
        qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon, fresh_settings):
    from qgis.core import QgsRectangle

    import eodispatch
    from eodispatch.core.params import params_body
    from eodispatch.gui.dock import CUSTOM

    _canvas_on(qgis_canvas, 10.5, 47.5, 11.5, 48.5)
    services = daemon.api("GET", "/services")[1]
    first = services[0]
    status, descriptors = daemon.api("POST", "/params", params_body(first["label"], first["endpoint"],
                                                                     first["application"], first.get("namespace")))
    assert status == 200, descriptors
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        # Built before the daemon answered: only "Other", shown but chosen by nobody.
        assert dock.service_combo.count() == 1 and _selected_id(dock) == CUSTOM
        plugin.start()
        wait_until(lambda: _selected_id(dock) == first["id"], message="the first catalogue service selected")
        wait_until(lambda: {d["name"] for d in descriptors} <= set(dock.form.editors), message="its form")
        assert dock.service_combo.count() == len(services) + 1
        assert dock.endpoint_edit.text() == first["endpoint"]
        assert dock.application_edit.text() == first["application"]
        assert dock.title_edit.text() == first["title"]
        # The address of a catalogue service is folded away.
        assert dock.address_box.isCollapsed()
        # The extent comes from the canvas...
        extent = dock.form.extent_widget().value()
        shown = qgis_canvas.extent()
        assert shown.contains(QgsRectangle(10.6, 47.6, 11.4, 48.4)), shown.toString()
        assert extent == {"west": round(shown.xMinimum(), 6), "south": round(shown.yMinimum(), 6),
                          "east": round(shown.xMaximum(), 6), "north": round(shown.yMaximum(), 6)}, extent
        # ...and every other parameter with a default has it.
        values, errors = dock.form.values()
        assert errors == []
        for d in descriptors:
            if d.get("default") is not None and d["type"] in ("integer", "number", "float", "double", "boolean"):
                assert values[d["name"]] == d["default"], (d["name"], values.get(d["name"]), d["default"])
        # A later refresh of the catalogue (parameters arriving) keeps the selection and the form.
        editor = dock.form.editors[descriptors[0]["name"]]
        plugin.catalog.set_data(plugin.catalog.services, plugin.catalog.params)
        assert _selected_id(dock) == first["id"] and dock.form.editors[descriptors[0]["name"]] is editor
        # Nothing was remembered: nobody picked anything.
        from qgis.core import QgsSettings

        from eodispatch.gui.dock import SERVICE_CHOICE_KEY

        assert QgsSettings().value(SERVICE_CHOICE_KEY, "", type=str) == ""
    finally:
        plugin.unload()


def test_the_users_service_choice_is_remembered_across_restarts(qgis_app, qgis_iface, qgis_canvas, qgis_new_project,
                                                                daemon, fresh_settings):
    import eodispatch
    from eodispatch.core.services import SETTINGS_KEY
    from eodispatch.gui.dock import CUSTOM, SERVICE_CHOICE_KEY

    _canvas_on(qgis_canvas, 16.3, 47.9, 16.5, 48.1)
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        dock = plugin.dock
        wait_until(lambda: dock.service_combo.count() > 1, message="services")
        pv = dock._index_of(PV_ID)
        assert pv > 0, "the PV service is not the first one: this test would prove nothing"
        # The user picks the PV service in the list (Qt: index changed, then activated).
        dock.service_combo.setCurrentIndex(pv)
        dock.service_combo.activated.emit(pv)
        wait_until(lambda: "spatial_extent" in dock.form.editors, message="the PV form")
        assert fresh_settings.value(SERVICE_CHOICE_KEY, "", type=str) == PV_ID
    finally:
        plugin.unload()

    # QGIS restarts: the catalogue comes from the cache, the choice from QgsSettings.
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        assert _selected_id(dock) == PV_ID
        wait_until(lambda: "spatial_extent" in dock.form.editors, message="the PV form at once")
        # Code filling "Other" (tests, "submit again") is no choice of the user's.
        dock.select_service("http://127.0.0.1:9", "http://127.0.0.1:9/udp.json")
        assert _selected_id(dock) == CUSTOM
        plugin.catalog.set_data(plugin.catalog.services, plugin.catalog.params)
        assert _selected_id(dock) == CUSTOM, "a refreshed catalogue keeps what this session selected"
    finally:
        plugin.unload()

    # Without the cache, the remembered choice wins when the services arrive.
    fresh_settings.remove(SETTINGS_KEY)
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        assert _selected_id(dock) == CUSTOM and dock.service_combo.count() == 1
        plugin.start()
        wait_until(lambda: _selected_id(dock) == PV_ID, message="the remembered service")
        wait_until(lambda: "spatial_extent" in dock.form.editors, message="its form")
    finally:
        plugin.unload()


def test_submit_is_in_sight_on_a_1366x768_screen(qgis_app, qgis_iface, qgis_canvas, qgis_new_project, daemon,
                                                 fresh_settings):
    """The dock as QGIS docks it on a 1366 × 768 screen (menus, two toolbar rows and the
    status bar leave it about 380 × 590 pixels): the form of the first service is there,
    the Submit button is fully visible without scrolling, and nothing but the form scrolls."""
    from qgis.PyQt.QtCore import QPoint, QRect
    from qgis.PyQt.QtWidgets import QMainWindow, QScrollArea

    import eodispatch

    _canvas_on(qgis_canvas, 10.5, 47.5, 11.5, 48.5)
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    window = QMainWindow()
    try:
        plugin.start()
        dock = plugin.dock
        wait_until(lambda: dock.form.extent_widget() is not None, message="the first service's form")
        wait_until(lambda: dock.backend_table.rowCount() > 0, message="backends listed")
        dock.setParent(None)
        window.setCentralWidget(dock)
        window.resize(380, 590)
        window.show()
        wait_until(lambda: dock.isVisible() and dock.submit_button.isVisible(), message="shown")
        qgis_app.processEvents()
        button = dock.submit_button
        top_left = button.mapTo(window, QPoint(0, 0))
        area = QRect(top_left, button.size())
        assert window.rect().contains(area), (area, window.rect())
        assert button.visibleRegion().boundingRect().size() == button.size()
        # Submit is not inside the scrolling part: no scrolling reaches it or hides it.
        assert not any(isinstance(p, QScrollArea) for p in _ancestors(button))
        # The service and its first parameters are in sight too (not pushed down by empty space).
        scroll = dock.scroll
        combo_y = dock.service_combo.mapTo(scroll.viewport(), QPoint(0, 0)).y()
        assert 0 <= combo_y < scroll.viewport().height() // 2, combo_y
        first_editor = next(iter(dock.form.editors.values()))
        editor_y = first_editor.mapTo(scroll.viewport(), QPoint(0, 0)).y()
        assert editor_y < scroll.viewport().height(), (editor_y, scroll.viewport().height())
    finally:
        window.hide()
        plugin.unload()


def _ancestors(widget):
    p = widget.parentWidget()
    while p is not None:
        yield p
        p = p.parentWidget()
