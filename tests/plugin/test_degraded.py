"""Graceful degradation (issue 13, point 8): without the daemon's GDAL helper (a daemon
built without libgdal-dev, or the helper missing next to the binary) job.json still lists
every file, marked ``error_code: "GeoHelperMissing"``, and the plugin opens them with
QGIS itself — but only after its own checks, so that a hostile file the helper would
have refused is not opened either. Two results with the same stem get distinct names."""

import json
import socket
import threading
import uuid as _uuid
from pathlib import Path

from conftest import pv_job, start_daemon, wait_until
from jobfolder import write_geotiff, write_job_folder


def _groups(project):
    from eodispatch.core.manifest import _all_groups

    return [g for g in _all_groups(project.layerTreeRoot()) if g.customProperty("eodispatch/job_uuid")]


def test_without_the_gdal_helper_a_finished_job_still_loads(qgis_app, qgis_new_project, tmp_path, fake_backend,
                                                          monkeypatch):
    from qgis.core import QgsProject, QgsRasterLayer

    from eodispatch.core.loaded import AutoLoader, LoadedRegistry

    root = tmp_path / "eod"
    root.mkdir()
    # The helper is configured where there is none: the daemon finds no GDAL.
    d = start_daemon(root, extra_env={"EODISPATCH_GDAL_BIN": str(tmp_path / "nowhere" / "eodispatch-gdal")})
    try:
        status, job = d.api("POST", "/unit_jobs", pv_job(fake_backend, "Without GDAL"))
        assert status == 201, job
        d.wait_status(job["id"], "finished", 30)
        wait_until(lambda: (d.api("GET", f"/unit_jobs/{job['id']}")[1].get("results") or {}).get("state") == "ready",
                   timeout=30, message="results published")
        folder = Path(d.api("GET", f"/unit_jobs/{job['id']}")[1]["results"]["dir"])
        manifest = json.loads((folder / "job.json").read_text())
        [entry] = manifest["layers"]
        assert entry["readable"] is False and entry["error_code"] == "GeoHelperMissing", entry

        loader = AutoLoader(d.results_dir, LoadedRegistry(tmp_path / "loaded.json"))
        loaded = loader.load_folder(folder)
        assert loaded is not None and loaded.skipped == [], loaded.skipped
        [group] = _groups(QgsProject.instance())
        assert group.name() == f"Without GDAL (#{job['id']})"
        [layer] = [n.layer() for n in group.findLayers()]
        assert isinstance(layer, QgsRasterLayer) and layer.isValid()
        assert layer.name() == entry["name"] == "Without GDAL"
        assert layer.crs().isValid() and layer.width() > 0
        assert loaded.unchecked == ["Without GDAL"]
    finally:
        d.proc.terminate()
        d.proc.wait(20)


class _Tripwire:
    """A loopback port that counts connections: a URL nothing may fetch."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def url(self, path):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/{path}"


def _missing(path, name, kind="other"):
    return {"name": name, "path": path, "kind": kind, "readable": False, "error": "GDAL helper not found",
            "error_code": "GeoHelperMissing", "driver": None, "crs": None, "bounds": None, "bounds_wgs84": None,
            "style": None}


def test_without_the_helper_the_plugin_checks_files_itself(qgis_app, qgis_new_project, tmp_path):
    """What the helper would have refused is not opened by QGIS either: a VRT reading
    a file outside the folder, a GeoJSON whose crs link GDAL would fetch, a side file,
    a symbolic link; the formats results come in are opened, raster or vector."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from eodispatch.core.manifest import create_layers, read_manifest

    trip = _Tripwire()
    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 5, str(_uuid.uuid4()), "Unchecked")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes([42]) * 64)
    (folder / "raw.tif").write_text(
        '<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="Byte" band="1" '
        f'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{secret}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>8</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    )
    (folder / "link.geojson").write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "link", "properties": {"href": trip.url("crs.wkt"), "type": "ogcwkt"}},
        "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [16.4, 48]}}],
    }))
    (folder / "openEO.tif.ovr.sidecar").write_bytes((folder / "openEO.tif").read_bytes())
    (folder / "elsewhere.tif").symlink_to(folder / "openEO.tif")
    data = json.loads((folder / "job.json").read_text())
    for entry in data["layers"]:
        entry.update(readable=False, error="GDAL helper not found", error_code="GeoHelperMissing", style=None)
    data["layers"] += [
        _missing("raw.tif", "Raw"),
        _missing("link.geojson", "Link"),
        _missing("openEO.tif.ovr.sidecar", "Side"),
        _missing("elsewhere.tif", "Link to a result"),
    ]
    (folder / "job.json").write_text(json.dumps(data))

    loaded = create_layers(read_manifest(folder))
    names = {layer.name(): layer for layer in loaded.layers}
    assert sorted(names) == ["Farm outlines", "PV farms (openEO.tif)"], (sorted(names), loaded.skipped)
    assert isinstance(names["PV farms (openEO.tif)"], QgsRasterLayer)
    assert isinstance(names["Farm outlines"], QgsVectorLayer) and names["Farm outlines"].featureCount() == 1
    skipped = "\n".join(loaded.skipped)
    assert "Raw: not opened without the daemon's GDAL helper: a VRT" in skipped, skipped
    assert "Link: not opened without the daemon's GDAL helper: a GeoJSON whose crs is a link" in skipped, skipped
    assert "Side: not opened without the daemon's GDAL helper: a side file" in skipped, skipped
    assert "Link to a result: not opened without the daemon's GDAL helper: not a regular file" in skipped, skipped
    assert trip.hits == 0


def test_results_with_one_stem_get_distinct_layer_names(qgis_app, qgis_new_project, tmp_path):
    """``output.tiff`` and ``output.nc``: a manifest that gives both one name (older
    daemons did) still gives two layer names that tell them apart."""
    from osgeo import gdal

    from eodispatch.core.manifest import create_layers, read_manifest

    results = tmp_path / "results"
    results.mkdir()
    folder = write_job_folder(results, 6, str(_uuid.uuid4()), "Stems", with_vector=False)
    tif = write_geotiff(folder / "output.tiff", (16.342, 47.962, 16.414, 48.008))
    gdal.Translate(str(folder / "output.nc"), str(folder / "output.tiff"), format="netCDF")
    data = json.loads((folder / "job.json").read_text())
    base = dict(data["layers"][0], width=tif["width"], height=tif["height"])
    data["layers"] = [
        dict(base, name="Stems – output", path="output.tiff", driver="GTiff"),
        dict(base, name="Stems – output", path="output.nc", driver="netCDF"),
    ]
    (folder / "job.json").write_text(json.dumps(data))
    loaded = create_layers(read_manifest(folder))
    assert [layer.name() for layer in loaded.layers] == [
        "Stems – output (output.tiff)", "Stems – output (output.nc)"], loaded.skipped
