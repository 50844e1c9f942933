"""Writes job folders as the daemon publishes them (docs/results-folder.md; each job.json
is checked against docs/job.schema.json):
``results_dir/<YYYY-MM-DD>_<slug>_<id>/`` with a real GeoTIFF (GDAL), a GeoJSON,
``results.json`` and ``job.json``, staged in ``results_dir/.incoming`` and renamed into
place in one step.

Used by the manifest/auto-load tests (valid whatever the daemon does) and, until the
results branch merges, by the end-to-end tests in place of the daemon's download.
"""

import json
import os
import re
from pathlib import Path
from typing import Optional

from osgeo import gdal, osr

from results_schema import check_job_json

gdal.UseExceptions()


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "job"


def write_geotiff(path: Path, bbox, width=64, height=48, classes=False) -> dict:
    """A Byte GeoTIFF in EPSG:32633 (UTM 33N) covering ``bbox`` (lon/lat)."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(wgs, srs)
    x0, y0, _ = ct.TransformPoint(bbox[0], bbox[1])
    x1, y1, _ = ct.TransformPoint(bbox[2], bbox[3])
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 1, gdal.GDT_Byte)
    ds.SetProjection(srs.ExportToWkt())
    ds.SetGeoTransform([x0, (x1 - x0) / width, 0, y1, 0, -(y1 - y0) / height])
    band = ds.GetRasterBand(1)
    import array

    values = array.array(
        "B",
        [((x // 8 + y // 8) % 2) if classes else (x * 255 // (width - 1)) for y in range(height) for x in range(width)],
    )
    band.WriteRaster(0, 0, width, height, values.tobytes())
    band.ComputeStatistics(False)
    stats = band.GetStatistics(False, True)
    ds.FlushCache()
    ds = None
    return {
        "crs": "EPSG:32633",
        "bounds": [x0, y0, x1, y1],
        "width": width,
        "height": height,
        "stats": stats,
    }


def write_job_folder(
    results_dir: Path,
    job_id: int,
    uuid: str,
    title: str,
    bbox=(16.342, 47.962, 16.414, 48.008),
    endpoint: str = "http://127.0.0.1:9",
    application: str = "https://example.org/udp.json",
    style: Optional[dict] = None,
    with_vector: bool = True,
    date: str = "2026-11-25",
) -> Path:
    results_dir = Path(results_dir)
    incoming = results_dir / ".incoming" / f"{uuid}"
    incoming.mkdir(parents=True, exist_ok=True)
    tif = write_geotiff(incoming / "openEO.tif", bbox, classes=bool(style and style.get("type") == "palette"))
    mn, mx, mean, sd = tif["stats"]
    layers = [
        {
            "name": "PV farms (openEO.tif)",
            "path": "openEO.tif",
            "asset": "openEO.tif",
            "kind": "raster",
            "readable": True,
            "error": None,
            "error_code": None,
            "driver": "GTiff",
            "crs": tif["crs"],
            "bounds": tif["bounds"],
            "bounds_wgs84": list(bbox),
            "width": tif["width"],
            "height": tif["height"],
            "bands": [
                {"index": 1, "data_type": "Byte", "nodata": None, "min": mn, "max": mx,
                 "mean": mean, "stddev": sd, "description": "pv"}
            ],
            "subdatasets": None,
            "optimised": None,
            "style": style if style is not None else {"type": "minmax", "band": 1, "min": 10, "max": 200},
        }
    ]
    if with_vector:
        w, s, e, n = bbox
        fc = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"name": "farm"},
                 "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
            ],
        }
        (incoming / "farms.geojson").write_text(json.dumps(fc))
        layers.append(
            {
                "name": "Farm outlines",
                "path": "farms.geojson",
                "asset": "farms",
                "kind": "vector",
                "readable": True,
                "error": None,
                "error_code": None,
                "driver": "GeoJSON",
                "crs": "EPSG:4326",
                "bounds": list(bbox),
                "bounds_wgs84": list(bbox),
                "layers": [{"name": "farms", "geometry_type": "Polygon", "feature_count": 1,
                            "crs": "EPSG:4326", "extent": list(bbox), "extent_wgs84": list(bbox)}],
                "style": {"type": "single", "color": "#e31a1c"},
            }
        )
    (incoming / "results.json").write_text(json.dumps({"type": "Collection", "assets": {}}))
    manifest = {
        "eodispatch_manifest": 1,
        "job": {"id": job_id, "uuid": uuid, "title": title, "status": "finished",
                "created": date + "T10:00:00.000Z", "updated": date + "T10:05:00.000Z",
                "backend_job_id": "j-1", "label": "openeo", "format": "gtiff"},
        "service": {"endpoint": endpoint, "namespace": None, "application": application},
        "parameters": {"spatial_extent": dict(zip(("west", "south", "east", "north"), bbox))},
        "stac": "results.json",
        "layers": layers,
    }
    check_job_json(manifest)
    (incoming / "job.json").write_text(json.dumps(manifest, indent=1))
    final = results_dir / f"{date}_{slug(title)}_{job_id}"
    os.rename(incoming, final)
    return final
