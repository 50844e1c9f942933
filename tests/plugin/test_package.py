"""The plugin package: metadata, Qt5/Qt6-neutral imports, lazy classFactory, core without
widgets, and a clean load/unload in QGIS (pytest-qgis iface) against the real daemon."""

import configparser
import re
import subprocess
import sys

from conftest import REPO, wait_until

PKG = REPO / "qgis_plugin" / "eodispatch"


def test_metadata_declares_qgis_322_and_qt6():
    meta = configparser.ConfigParser()
    meta.read(PKG / "metadata.txt")
    general = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository"):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["supportsQt6"] == "True"
    assert general["hasProcessingProvider"] == "yes"
    assert (PKG / general["icon"]).is_file()


def test_sources_use_qgis_pyqt_only_and_core_has_no_widgets():
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+PyQt[56]", text, re.M), path
        if path.parent.name == "core":
            assert "QtWidgets" not in text and "qgis.gui" not in text, path


def test_class_factory_is_lazy():
    code = (
        "import sys; sys.path.insert(0, %r); import eodispatch; "
        "assert 'eodispatch.plugin' not in sys.modules; "
        "assert not any(m.startswith('qgis') for m in sys.modules), 'qgis imported eagerly'; print('ok')"
    ) % str(REPO / "qgis_plugin")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_plugin_loads_starts_and_unloads_cleanly(qgis_app, qgis_iface, qgis_new_project, daemon):
    from qgis.core import QgsApplication, QgsProject

    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert QgsApplication.processingRegistry().providerById("eodispatch") is not None
        assert plugin.dock is not None
        plugin.start()
        wait_until(lambda: plugin.stream.is_connected, message="event stream")
        wait_until(lambda: "eodispatch" in plugin.dock.daemon_label.text() and "live" in plugin.dock.daemon_label.text(),
                   message="daemon state in the dock")
        assert "API token read" in plugin.dock.daemon_label.text()
        assert plugin.dock.start_button.isHidden()
        # The PV farm service of the APEx catalogue is offered out of the box.
        wait_until(lambda: any(isinstance(plugin.dock.service_combo.itemData(i), dict)
                               and plugin.dock.service_combo.itemData(i).get("id") == "eurac_pv_farm_detection"
                               for i in range(plugin.dock.service_combo.count())), message="services")
        algs = [a.id() for a in QgsApplication.processingRegistry().providerById("eodispatch").algorithms()]
        assert "eodispatch:run_service" in algs
        wait_until(lambda: "eodispatch:eurac_pv_farm_detection" in
                   [a.id() for a in QgsApplication.processingRegistry().providerById("eodispatch").algorithms()],
                   message="service algorithm")
    finally:
        plugin.unload()
    assert QgsApplication.processingRegistry().providerById("eodispatch") is None
    assert plugin.dock is None
    assert not [l for l in QgsProject.instance().mapLayers().values() if l.name() == "Job footprints"]


def test_dock_starts_a_stopped_daemon(qgis_app, qgis_iface, qgis_new_project, monkeypatch, tmp_path):
    import os
    import signal

    from conftest import TARGET, _binaries, free_port

    _binaries()
    monkeypatch.setenv("PATH", f"{TARGET}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EODISPATCH_LISTEN", f"127.0.0.1:{free_port()}")
    for name in ("CONFIG", "STATE", "RESULTS"):
        monkeypatch.setenv(f"EODISPATCH_{name}_DIR", str(tmp_path / name.lower()))
    import eodispatch

    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    pid = None
    try:
        plugin.dock.check_health()
        wait_until(lambda: "Not running" in plugin.dock.daemon_label.text(), message="not running")
        assert not plugin.dock.start_button.isHidden()
        plugin.dock.start_button.click()
        pid = plugin.dock.started_pid
        assert pid
        wait_until(lambda: " at http://" in plugin.dock.daemon_label.text(), timeout=20, message="daemon started")
        assert plugin.dock.start_button.isHidden()
        assert "API token read" in plugin.dock.daemon_label.text()
        assert (tmp_path / "state" / "daemon.log").exists()
    finally:
        plugin.unload()
        if pid:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


