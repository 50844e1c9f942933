-- 0005_task_mosaic: the mosaic of an upscale task (results::mosaic).
--
-- mosaic:       how rasters are put together, as the request asked ('vrt' or 'cog');
--               NULL: as config.toml says at the time of building.
-- results_dir:  the task folder in the results folder, once it was published.
-- mosaic_state: JSON of what the published mosaic and task.json hold
--               ({"tiles": [job ids], "failed": [job ids], "final": bool, "crs": ...}),
--               written after they were published; a restart rebuilds when the tiles
--               that are in differ from it.
ALTER TABLE upscale_tasks ADD COLUMN mosaic TEXT CHECK (mosaic IN ('vrt', 'cog'));
ALTER TABLE upscale_tasks ADD COLUMN results_dir TEXT;
ALTER TABLE upscale_tasks ADD COLUMN mosaic_state TEXT;
