-- 0001_initial: the first schema of the eodispatch job store.
--
-- Append-only: once released, this file never changes; later changes are new files
-- (0002_..., 0003_...) listed in src/store/schema.rs. Each migration runs in one
-- BEGIN IMMEDIATE transaction that also sets PRAGMA user_version.
--
-- Conventions: timestamps are RFC 3339 text in UTC with millisecond precision and a
-- `Z` (crate::job::rfc3339_z::format), so they sort as text; enums are stored by
-- their wire names; JSON is stored as text written by serde_json.

-- Marks the file as ours ('EODS'), so that the daemon refuses to migrate another
-- program's database.
PRAGMA application_id = 1162822739;

-- Small key/value facts about the store itself (e.g. the last health check).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Upscale tasks: a fan-out of unit jobs over one parameter dimension. The row holds
-- the client's request (the shared part and the dimension); the status is derived
-- from the sub-jobs and is not stored.
CREATE TABLE upscale_tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid        TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    label       TEXT NOT NULL CHECK (label IN ('openeo', 'ogc_api_process')),
    endpoint    TEXT NOT NULL,
    namespace   TEXT,
    application TEXT NOT NULL,
    parameters  TEXT NOT NULL,            -- JSON object shared by every sub-job
    format      TEXT NOT NULL CHECK (format IN ('gtiff', 'netcdf', 'geojson', 'json')),
    dimension   TEXT NOT NULL,            -- JSON {name, values[]}
    created     TEXT NOT NULL,
    updated     TEXT NOT NULL
);

-- Unit jobs, standalone or belonging to an upscale task.
CREATE TABLE unit_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Random UUID v4: sent to the backend in the job description (crash-safe
    -- submission) and the capability in /files/<uuid>/...
    uuid                TEXT NOT NULL UNIQUE,
    title               TEXT NOT NULL,
    label               TEXT NOT NULL CHECK (label IN ('openeo', 'ogc_api_process')),
    status              TEXT NOT NULL DEFAULT 'created'
                        CHECK (status IN ('created', 'queued', 'running', 'finished',
                                          'canceled', 'failed')),
    endpoint            TEXT NOT NULL,
    namespace           TEXT,
    application         TEXT NOT NULL,
    -- JSON object: the parameters as sent (or to be sent) to the backend.
    parameters          TEXT NOT NULL,
    -- JSON: the client's original request, for audit. NULL for the sub-jobs of an
    -- upscale task, whose request is the task row.
    request             TEXT,
    format              TEXT NOT NULL CHECK (format IN ('gtiff', 'netcdf', 'geojson', 'json')),
    backend_job_id      TEXT,
    -- The backend's own status word, as last seen (e.g. openEO 'error', OGC 'accepted').
    backend_status      TEXT,
    progress            REAL,
    error_code          TEXT,
    error_message       TEXT,
    -- Crash-safe submission: 'submitting' is written before the request goes out,
    -- 'submitted' together with backend_job_id.
    submit_state        TEXT NOT NULL DEFAULT 'pending'
                        CHECK (submit_state IN ('pending', 'submitting', 'submitted')),
    submit_attempts     INTEGER NOT NULL DEFAULT 0,
    next_poll_at        TEXT,
    results_state       TEXT NOT NULL DEFAULT 'pending'
                        CHECK (results_state IN ('pending', 'downloading', 'ready', 'failed',
                                                 'removed')),
    results_dir         TEXT,
    results_bytes       INTEGER NOT NULL DEFAULT 0 CHECK (results_bytes >= 0),
    results_total_bytes INTEGER CHECK (results_total_bytes IS NULL OR results_total_bytes >= 0),
    results_error       TEXT,
    upscale_task_id     INTEGER REFERENCES upscale_tasks (id) ON DELETE CASCADE,
    -- Index of this sub-job's value in the task's dimension.values (0-based).
    task_index          INTEGER,
    created             TEXT NOT NULL,
    updated             TEXT NOT NULL,
    CHECK ((error_code IS NULL) = (error_message IS NULL)),
    CHECK ((upscale_task_id IS NULL) = (task_index IS NULL))
);

CREATE INDEX unit_jobs_status ON unit_jobs (status);
-- Serves both "jobs of a task" and their order.
CREATE INDEX unit_jobs_task ON unit_jobs (upscale_task_id, task_index);
CREATE INDEX unit_jobs_endpoint ON unit_jobs (endpoint);
CREATE INDEX unit_jobs_backend_job_id ON unit_jobs (backend_job_id);
