-- The latest forecast of each project for each target, so the backend can
-- read it without a job: written in the transaction that records the
-- succeeded predict or score job that made it, replaced only by a newer one.
CREATE TABLE latest_predictions (
    project_id     INTEGER NOT NULL,
    target         TEXT NOT NULL,
    model_version  INTEGER NOT NULL,
    as_of          TEXT NOT NULL,
    value          REAL,
    class          TEXT,
    output         TEXT,
    job_id         TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (project_id, target)
);
CREATE INDEX latest_predictions_target_as_of ON latest_predictions (target, as_of);
