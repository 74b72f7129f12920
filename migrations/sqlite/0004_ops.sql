-- Operator actions on jobs. A cancel request on a running job is a
-- timestamp the worker reads at its checkpoints; a retry keeps the job's id
-- and history: how many times an operator retried it and the error it had
-- before the last retry.
ALTER TABLE jobs ADD COLUMN cancel_requested_at TEXT;
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN previous_error TEXT;
CREATE INDEX jobs_queue_state ON jobs (queue, state);
CREATE INDEX jobs_finished ON jobs (finished_at);
