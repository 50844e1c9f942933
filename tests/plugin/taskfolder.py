"""Writes an upscale task's folder as the daemon publishes it (README "Upscale tasks: one
task folder, one mosaic"): ``results_dir/<date>_<slug>_task<id>/`` with a job folder per
tile (jobfolder.py), the mosaic ``openEO.vrt`` over the tiles' GeoTIFFs (sources relative
to it) and ``task.json``; the folder appears by one rename, and each republication
replaces the VRT and ``task.json`` through a hidden temporary file and a rename. Each
task.json is checked against docs/task.schema.json (docs/results-folder.md)."""

import json
import os
import uuid as _uuid
from pathlib import Path
from typing import List

from osgeo import gdal

from jobfolder import slug, write_job_folder
from results_schema import check_task_json

gdal.UseExceptions()


class TaskFolder:
    def __init__(self, results_dir: Path, task_id: int, uuid: str, title: str, date: str = "2026-12-02"):
        self.results_dir = Path(results_dir)
        self.task_id = task_id
        self.uuid = uuid
        self.title = title
        self.folder = self.results_dir / f"{date}_{slug(title)}_task{task_id}"
        self.tiles: List[dict] = []
        self.publications = 0

    def add_tile(self, job_id: int, bbox) -> Path:
        """A tile's job folder, published into the task folder."""
        staging = self.folder if self.folder.is_dir() else self.results_dir / ".incoming" / f"task-{self.uuid}"
        staging.mkdir(parents=True, exist_ok=True)
        tile_uuid = str(_uuid.uuid5(_uuid.UUID(self.uuid), str(job_id)))
        tile = write_job_folder(staging, job_id, tile_uuid, f"{self.title} - Processing Job {job_id}",
                                bbox=bbox, with_vector=False)
        self.tiles.append({"job": job_id, "folder": tile.name, "bbox": list(bbox)})
        return tile

    def publish(self, final: bool = False) -> Path:
        """The mosaic of every tile so far and task.json, each replaced by a rename; the
        task folder itself appears by a rename the first time."""
        staging = self.folder if self.folder.is_dir() else self.results_dir / ".incoming" / f"task-{self.uuid}"
        cwd = os.getcwd()
        os.chdir(staging)
        try:
            gdal.BuildVRT(".tmp-openEO.vrt", [f"{t['folder']}/openEO.tif" for t in self.tiles]).FlushCache()
        finally:
            os.chdir(cwd)
        os.replace(staging / ".tmp-openEO.vrt", staging / "openEO.vrt")
        ds = gdal.Open(str(staging / "openEO.vrt"))
        gt = ds.GetGeoTransform()
        bounds = [gt[0], gt[3] + gt[5] * ds.RasterYSize, gt[0] + gt[1] * ds.RasterXSize, gt[3]]
        width, height = ds.RasterXSize, ds.RasterYSize
        wgs84 = [min(t["bbox"][0] for t in self.tiles), min(t["bbox"][1] for t in self.tiles),
                 max(t["bbox"][2] for t in self.tiles), max(t["bbox"][3] for t in self.tiles)]
        ds = None
        self.publications += 1
        manifest = {
            "eodispatch_task_manifest": 1,
            "task": {"id": self.task_id, "uuid": self.uuid, "title": self.title,
                     "status": "finished" if final else "running", "label": "openeo", "format": "gtiff",
                     "created": "2026-12-02T10:00:00.000Z", "updated": f"2026-12-02T10:0{self.publications}:00.000Z",
                     "dimension": "spatial_extent"},
            "service": {"endpoint": "http://127.0.0.1:9", "namespace": None,
                        "application": "https://example.org/udp.json"},
            "parameters": {},
            "final": final,
            "counts": {"created": 0, "queued": 0, "running": 0, "finished": len(self.tiles), "canceled": 0,
                       "failed": 0},
            "tiles": [{"job": t["job"], "title": "", "status": "finished", "folder": t["folder"],
                       "crs": "EPSG:32633", "bounds": None, "bounds_wgs84": t["bbox"]} for t in self.tiles],
            "failed": [],
            "pending": [],
            "mosaic": {"kind": "vrt", "available": True, "error": None, "error_code": None},
            "layers": [{
                "name": self.title, "output": "openEO", "path": "openEO.vrt", "kind": "raster", "readable": True,
                "error": None, "error_code": None, "driver": "VRT", "crs": "EPSG:32633", "bounds": bounds,
                "bounds_wgs84": wgs84, "width": width, "height": height, "bands": [], "subdatasets": None,
                "tiles": len(self.tiles),
                "style": {"type": "minmax", "band": 1, "min": 0, "max": 255},
            }],
        }
        check_task_json(manifest)
        (staging / ".tmp-task.json").write_text(json.dumps(manifest, indent=1))
        os.replace(staging / ".tmp-task.json", staging / "task.json")
        if staging != self.folder:
            os.rename(staging, self.folder)
        return self.folder
