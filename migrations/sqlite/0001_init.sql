-- The ML store: jobs (the truth about every accepted job), per-project
-- predictions, the model registry and the worker roster.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    progress         REAL NOT NULL DEFAULT 0,
    stage            TEXT,
    error            TEXT,
    result           TEXT,
    dedup_key        TEXT,
    request_id       TEXT,
    worker           TEXT,
    queue_task_id    TEXT,
    push_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    run_at           TEXT NOT NULL,
    pushed_at        TEXT,
    started_at       TEXT,
    finished_at      TEXT
);
-- Two retrains of the same targets cannot both be active.
CREATE UNIQUE INDEX jobs_dedup_active ON jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX jobs_state_updated ON jobs (state, updated_at);
CREATE INDEX jobs_created ON jobs (created_at);

CREATE TABLE predictions (
    job_id         TEXT NOT NULL,
    project_id     INTEGER NOT NULL,
    target         TEXT NOT NULL,
    model_version  INTEGER,
    value          REAL,
    class          TEXT,
    output         TEXT,
    error          TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (job_id, project_id, target)
);
CREATE INDEX predictions_project ON predictions (project_id, target, created_at);

CREATE TABLE models (
    target               TEXT NOT NULL,
    version              INTEGER NOT NULL,
    learner              TEXT NOT NULL,
    stage                TEXT NOT NULL,
    stage_reason         TEXT,
    feature_set_version  TEXT NOT NULL,
    data_fingerprint     TEXT NOT NULL,
    code_version         TEXT NOT NULL,
    metrics              TEXT NOT NULL,
    artifact_path        TEXT NOT NULL,
    artifact_sha256      TEXT NOT NULL,
    job_id               TEXT,
    created_at           TEXT NOT NULL,
    promoted_at          TEXT,
    PRIMARY KEY (target, version)
);
CREATE UNIQUE INDEX models_one_production ON models (target) WHERE stage = 'production';

CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT NOT NULL,
    concurrency  INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    stopped_at   TEXT
);
