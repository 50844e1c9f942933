"""Auto-loading of published job folders (written here per docs/results-folder.md, so these tests
hold whatever the daemon does): a group named after the job, layers named and styled
from job.json, a message bar notice; no duplicates after a simulated restart, and
folders that arrived while QGIS was closed are offered, then loaded."""

import uuid as _uuid

from conftest import wait_until
from jobfolder import write_job_folder


def groups(project):
    from eodispatch.core.manifest import _all_groups

    return [g for g in _all_groups(project.layerTreeRoot()) if g.customProperty("eodispatch/job_uuid")]


def test_new_folder_loads_as_a_styled_group_with_a_notice(qgis_app, qgis_iface, qgis_new_project, tmp_path):
    from qgis.core import (QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer,
                           QgsSingleBandGrayRenderer, QgsVectorLayer)

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry
    from eodispatch.plugin import EoDispatchPlugin

    results = tmp_path / "results"
    results.mkdir()
    loader = AutoLoader(results, LoadedRegistry(tmp_path / "loaded.json"))
    plugin = EoDispatchPlugin(qgis_iface)  # only its message-bar notice is used here
    loader.job_loaded.connect(plugin._job_loaded)
    loader.start()
    assert loader.missed == []
    import time

    t0 = time.monotonic()
    write_job_folder(results, 7, str(_uuid.uuid4()), "PV farms Vienna")
    wait_until(lambda: len(groups(QgsProject.instance())) == 1, message="group loaded")
    took = time.monotonic() - t0
    print(f"folder published -> group in the layer tree: {took * 1000:.0f} ms")
    assert took < 2.0  # target: finished -> visible within poll + download + 2 s
    group = groups(QgsProject.instance())[0]
    assert group.name() == "PV farms Vienna (#7)"
    layers = [n.layer() for n in group.findLayers()]
    assert [l.name() for l in layers] == ["PV farms (openEO.tif)", "Farm outlines"]
    raster, vector = layers
    assert isinstance(raster, QgsRasterLayer) and raster.isValid() and raster.crs().authid() == "EPSG:32633"
    r = raster.renderer()
    assert isinstance(r, QgsSingleBandGrayRenderer)
    ce = r.contrastEnhancement()
    assert (ce.minimumValue(), ce.maximumValue()) == (10, 200)
    assert isinstance(vector, QgsVectorLayer) and vector.featureCount() == 1
    assert vector.renderer().symbol().color().name() == "#e31a1c"
    from qgis.core import Qgis

    notices = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Success)
    assert any("PV farms Vienna (#7)" in m and "Farm outlines" in m for m in notices), notices

    # Palette and RGB hints.
    write_job_folder(results, 8, str(_uuid.uuid4()), "Classes", style={
        "type": "palette", "band": 1, "classes": [{"value": 0, "color": "#000000", "label": "none"},
                                                  {"value": 1, "color": "#ffcc00", "label": "PV farm"}]})
    wait_until(lambda: len(groups(QgsProject.instance())) == 2, message="second group")
    pal = [g for g in groups(QgsProject.instance()) if g.name() == "Classes (#8)"][0].findLayers()[0].layer().renderer()
    assert isinstance(pal, QgsPalettedRasterRenderer)
    assert [(c.value, c.color.name(), c.label) for c in pal.classes()] == [
        (0, "#000000", "none"), (1, "#ffcc00", "PV farm")]
    from eodispatch.core.manifest import apply_raster_style

    rgb_layer = QgsRasterLayer(str(next(results.glob("*_7")) / "openEO.tif"), "rgb")
    assert apply_raster_style(rgb_layer, {"type": "rgb", "bands": [1, 1, 1], "min": [0, 0, 0], "max": [255, 200, 100]})
    assert isinstance(rgb_layer.renderer(), QgsMultiBandColorRenderer)
    assert rgb_layer.renderer().blueContrastEnhancement().maximumValue() == 100
    # A band without statistics: the helper writes min/max null, QGIS keeps its own stretch.
    assert not apply_raster_style(rgb_layer, {"type": "minmax", "band": 1, "min": None, "max": None})
    assert isinstance(rgb_layer.renderer(), QgsMultiBandColorRenderer)
    loader.stop()


def test_no_duplicates_after_restart_and_missed_results_are_offered(qgis_app, qgis_new_project, tmp_path):
    from qgis.core import QgsProject

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    results.mkdir()
    registry_file = tmp_path / "profile" / "loaded.json"
    first = AutoLoader(results, LoadedRegistry(registry_file))
    first.start()
    write_job_folder(results, 1, str(_uuid.uuid4()), "First")
    wait_until(lambda: len(groups(QgsProject.instance())) == 1, message="loaded")
    first.stop()
    # "QGIS closes": a new, empty project; while it is closed another job arrives.
    QgsProject.instance().clear()
    write_job_folder(results, 2, str(_uuid.uuid4()), "While closed")
    # "QGIS starts again": a new loader with the registry from the profile.
    second = AutoLoader(results, LoadedRegistry(registry_file))
    offered = []
    second.missed_found.connect(offered.append)
    second.start()
    assert len(offered) == 1 and offered[0][0].endswith("_2"), offered
    assert groups(QgsProject.instance()) == []  # offered, not loaded without asking
    for _ in range(3):
        second.scan()
    assert groups(QgsProject.instance()) == []
    loaded = second.load_missed()
    assert [j.manifest.title for j in loaded] == ["While closed"]
    assert [g.name() for g in groups(QgsProject.instance())] == ["While closed (#2)"]
    # A third start: nothing new is offered or loaded twice.
    second.stop()
    third = AutoLoader(results, LoadedRegistry(registry_file))
    again = []
    third.missed_found.connect(again.append)
    third.start()
    third.scan()
    assert again == [] and len(groups(QgsProject.instance())) == 1
    # "Load again" replaces the group instead of adding a second one.
    third.load_folder(next(results.glob("*_2")), replace=True)
    assert [g.name() for g in groups(QgsProject.instance())] == ["While closed (#2)"]
    third.stop()


def test_a_saved_project_holding_the_group_is_not_loaded_twice(qgis_app, qgis_new_project, tmp_path):
    from qgis.core import QgsProject

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 3, str(_uuid.uuid4()), "Saved")
    loader = AutoLoader(results, LoadedRegistry(tmp_path / "a.json"))
    loader.load_folder(folder)
    path = tmp_path / "p.qgz"
    assert QgsProject.instance().write(str(path))
    QgsProject.instance().clear()
    assert QgsProject.instance().read(str(path))
    # Another profile (empty registry) opening the saved project does not add it again.
    other = AutoLoader(results, LoadedRegistry(tmp_path / "b.json"))
    offered = []
    other.missed_found.connect(offered.append)
    other.start()
    assert offered == [] and len(groups(QgsProject.instance())) == 1
    other.stop()


def test_broken_manifest_is_reported_not_loaded(qgis_app, qgis_new_project, tmp_path):
    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    results = tmp_path / "results"
    (results / "2026-11-25_bad_9").mkdir(parents=True)
    (results / "2026-11-25_bad_9" / "job.json").write_text("{not json")
    loader = AutoLoader(results, LoadedRegistry(tmp_path / "r.json"))
    failures = []
    loader.load_failed.connect(lambda f, m: failures.append((f, m)))
    loader.start()
    loader.scan()
    assert len(failures) == 1 and failures[0][0].endswith("_9")
    loader.stop()


def test_missed_results_are_offered_in_the_message_bar(qgis_app, qgis_iface, qgis_new_project, daemon):
    """What arrived while QGIS was closed: a message bar offer whose button loads them."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtWidgets import QPushButton

    import eodispatch

    write_job_folder(daemon.results_dir, 41, str(_uuid.uuid4()), "Arrived while closed")
    plugin = eodispatch.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.start()
        bar = qgis_iface.messageBar()
        widget = plugin._missed_bar
        assert widget is not None and "1 result(s) arrived while QGIS was closed" in widget.text()
        assert groups(QgsProject.instance()) == []
        button = [b for b in widget.findChildren(QPushButton) if b.text() == "Load them"][0]
        button.click()
        assert [g.name() for g in groups(QgsProject.instance())] == ["Arrived while closed (#41)"]
        assert bar.currentItem() is not widget
    finally:
        plugin.unload()
