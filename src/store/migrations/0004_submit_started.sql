-- 0004_submit_started: when the current submission of a job went out.
--
-- Written together with submit_state = 'submitting', just before the request is sent.
-- Reconciliation of a submission whose answer was lost looks for a remote job created
-- after this moment (OGC API Processes has no field to carry the job's UUID).
ALTER TABLE unit_jobs ADD COLUMN submit_started TEXT;

-- The scheduler's work list is read per platform kind and endpoint.
CREATE INDEX unit_jobs_label_endpoint ON unit_jobs (label, endpoint);
