-- The Idempotency-Key of each POST that created a job, with a hash of its
-- method, path and canonical body: a retry with the same key and body gets
-- the same job, one with another body is refused. The primary key makes
-- two concurrent requests with one key create one job. The maintenance job
-- deletes keys older than IDEMPOTENCY_RETENTION_HOURS. One API key guards
-- the service, so keys are not scoped further.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
