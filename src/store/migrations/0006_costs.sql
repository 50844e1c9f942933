-- 0006_costs: what jobs may cost, are estimated to cost and did cost (job::cost).
--
-- unit_jobs.max_cost:        the client's limit for this job (sent as openEO `budget`).
-- unit_jobs.estimate:        JSON of the estimate made when the job was accepted.
-- unit_jobs.estimate_amount: its amount (NULL when unknown), for budget sums.
-- unit_jobs.costs:           what the platform reported the job cost, once it did.
-- unit_jobs.usage:           JSON of the platform's `usage` report (CPU, memory, ...).
-- upscale_tasks.max_cost:    the client's limit for the whole task: tiles wait once it
--                            is spent.
ALTER TABLE unit_jobs ADD COLUMN max_cost REAL;
ALTER TABLE unit_jobs ADD COLUMN estimate TEXT;
ALTER TABLE unit_jobs ADD COLUMN estimate_amount REAL;
ALTER TABLE unit_jobs ADD COLUMN costs REAL;
ALTER TABLE unit_jobs ADD COLUMN usage TEXT;
ALTER TABLE upscale_tasks ADD COLUMN max_cost REAL;
