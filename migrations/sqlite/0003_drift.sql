-- Drift monitoring: each model version's training reference (binned
-- feature and prediction distributions; NULL for versions fitted before
-- drift monitoring), and the reports of the drift job, one per target per
-- check.
ALTER TABLE models ADD COLUMN reference TEXT;

CREATE TABLE drift_reports (
    job_id          TEXT NOT NULL,
    target          TEXT NOT NULL,
    model_version   INTEGER,
    checked_at      TEXT NOT NULL,
    drift_score     REAL,
    drift_detected  BOOLEAN NOT NULL,
    retrain_job_id  TEXT,
    report          TEXT NOT NULL,
    PRIMARY KEY (job_id, target)
);
CREATE INDEX drift_reports_target_checked ON drift_reports (target, checked_at);
