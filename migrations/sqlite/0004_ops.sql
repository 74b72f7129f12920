-- Operator actions on jobs. A cancel request on a running job is a
-- timestamp the worker reads at its checkpoints; a retry keeps the job's id
-- and history: how many times an operator retried it and the error it had
-- before the last retry.
ALTER TABLE jobs ADD COLUMN cancel_requested_at TEXT;
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN previous_error TEXT;
-- No new index on jobs: each one is maintained on every insert, claim and
-- finish, the hot path. The ops counts and retention read terminal rows by
-- (state, updated_at), which jobs_state_updated covers: a terminal row's
-- updated_at is its finished_at.
