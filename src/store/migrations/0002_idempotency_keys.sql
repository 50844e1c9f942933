-- 0002_idempotency_keys: `Idempotency-Key` of POST /unit_jobs (Stripe semantics): the
-- same key with the same body answers the job created the first time; the same key
-- with another body is refused. A client's retry or a double click never creates a
-- second job. Keys go with their job.

CREATE TABLE idempotency_keys (
    key       TEXT PRIMARY KEY NOT NULL,
    -- sha256 (hex) of the request body as parsed JSON, re-serialised.
    body_hash TEXT NOT NULL,
    job_id    INTEGER NOT NULL REFERENCES unit_jobs (id) ON DELETE CASCADE,
    created   TEXT NOT NULL
) WITHOUT ROWID;
