-- One row per scheduler tick that was enqueued: the primary key is the
-- idempotency key that lets any number of scheduler replicas run, and the
-- newest row tells a scheduler coming back which tick it missed. The
-- maintenance job deletes rows past their TTL (SCHEDULE_TICK_TTL_DAYS).
CREATE TABLE schedule_ticks (
    schedule    TEXT NOT NULL,
    tick_at     TIMESTAMPTZ NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    job_id      TEXT,
    PRIMARY KEY (schedule, tick_at)
);
