-- The callback outbox: a job accepted with a callback_url has one row here,
-- written in the transaction that writes the job, so an accepted callback
-- is never lost. Once the job ends a worker claims the row (lease_owner,
-- lease_until: two workers never deliver it at once, and a worker that dies
-- mid-delivery gives it up when the lease runs out), POSTs the signed job
-- view and records the attempt. `id` is the delivery id receivers use to
-- drop duplicates. The maintenance job deletes rows whose job is gone.
CREATE TABLE job_callbacks (
    id            TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL UNIQUE,
    url           TEXT NOT NULL,
    -- pending, delivered or failed (attempts exhausted, or the host is no
    -- longer allowed)
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_status   INTEGER,
    last_error    TEXT,
    -- Not delivered before this (back-off after a failed attempt).
    next_at       TIMESTAMPTZ NOT NULL,
    lease_owner   TEXT,
    lease_until   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    delivered_at  TIMESTAMPTZ
);
CREATE INDEX job_callbacks_due ON job_callbacks (state, next_at);
