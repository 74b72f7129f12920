//! The ML store: jobs, predictions, the model registry and the worker roster.
//!
//! One type over two databases. Every query is written once in the dialect
//! both SQLite and PostgreSQL accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, partial indexes) and run against whichever pool is open.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{PgPool, SqlitePool};

use crate::jobs::{JobKind, JobPayload, JobState, QueueName};
use crate::ml::Target;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection trouble, or a database busy for now (see
    /// `db_error::is_transient`).
    #[error("ML store unreachable: {0}")]
    Unreachable(String),
    #[error("ML store query failed: {0}")]
    Query(String),
    #[error("ML store migration failed: {0}")]
    Migrate(String),
    #[error("ML store row is malformed: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Trouble that may pass on its own.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db_error::is_transient(&e) {
            StoreError::Unreachable(e.to_string())
        } else {
            StoreError::Query(e.to_string())
        }
    }
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! bind_prediction {
    ($q:expr, $r:expr, $now:expr) => {
        $q.bind(&$r.job_id)
            .bind($r.project_id)
            .bind($r.target.as_str())
            .bind($r.model_version)
            .bind($r.value)
            .bind(&$r.class)
            .bind($r.output.as_ref().map(Json))
            .bind(&$r.error)
            .bind($now)
    };
}

/// Runs the same expression against whichever pool this store holds.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: String,
    pub kind: JobKind,
    pub queue: QueueName,
    pub payload: JobPayload,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress: f64,
    pub stage: Option<String>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub worker: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// An operator asked this job to stop (as of when the row was read).
    #[serde(skip)]
    pub cancel_requested: bool,
}

#[derive(sqlx::FromRow)]
struct RawJob {
    id: String,
    kind: String,
    queue: String,
    payload: Json<JobPayload>,
    state: String,
    attempts: i32,
    max_attempts: i32,
    progress: f64,
    stage: Option<String>,
    error: Option<String>,
    result: Option<Json<serde_json::Value>>,
    request_id: Option<String>,
    worker: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    run_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    cancel_requested_at: Option<DateTime<Utc>>,
}

macro_rules! job_columns {
    () => {
        "id, kind, queue, payload, state, attempts, max_attempts, progress, stage, \
         error, result, request_id, worker, created_at, updated_at, run_at, started_at, finished_at, \
         cancel_requested_at"
    };
}

impl TryFrom<RawJob> for JobRow {
    type Error = StoreError;
    fn try_from(r: RawJob) -> Result<Self, StoreError> {
        Ok(JobRow {
            kind: JobKind::from_str(&r.kind).map_err(StoreError::Corrupt)?,
            queue: QueueName::from_str(&r.queue).map_err(StoreError::Corrupt)?,
            state: JobState::from_str(&r.state).map_err(StoreError::Corrupt)?,
            id: r.id,
            payload: r.payload.0,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            progress: r.progress,
            stage: r.stage,
            error: r.error,
            result: r.result.map(|j| j.0),
            request_id: r.request_id,
            worker: r.worker,
            created_at: r.created_at,
            updated_at: r.updated_at,
            run_at: r.run_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            cancel_requested: r.cancel_requested_at.is_some(),
        })
    }
}

/// A job the API is about to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    /// The queue task id the message will be pushed under.
    pub queue_task_id: String,
    pub payload: JobPayload,
    pub max_attempts: i32,
    pub request_id: Option<String>,
}

#[derive(Debug)]
pub enum InsertOutcome {
    Created(JobRow),
    /// A deduplicated job that is already queued or running.
    Existing(JobRow),
}

/// Result of trying to take a queued job.
#[derive(Debug)]
pub enum Claim {
    Claimed(Box<JobRow>),
    /// Someone else holds it, it already ended, or it does not exist; the
    /// message that pointed here is a duplicate and can be dropped.
    NotClaimable(Option<JobState>),
}

/// One stored per-project answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictionRow {
    pub job_id: String,
    pub project_id: i64,
    pub target: Target,
    pub model_version: Option<i32>,
    pub value: Option<f64>,
    pub class: Option<String>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// A queued row the reconciler considers re-pushing.
#[derive(Debug, Clone)]
pub struct StaleJob {
    pub id: String,
    pub kind: JobKind,
    pub queue: QueueName,
    pub queue_task_id: Option<String>,
    pub request_id: Option<String>,
    pub run_at: DateTime<Utc>,
}

/// What the reconciler did with a running job whose worker disappeared.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub id: String,
    pub kind: JobKind,
    pub queue: QueueName,
    pub state: JobState,
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelStage {
    Candidate,
    Production,
    Archived,
    Rejected,
}

impl ModelStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStage::Candidate => "candidate",
            ModelStage::Production => "production",
            ModelStage::Archived => "archived",
            ModelStage::Rejected => "rejected",
        }
    }
}

impl FromStr for ModelStage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "candidate" => ModelStage::Candidate,
            "production" => ModelStage::Production,
            "archived" => ModelStage::Archived,
            "rejected" => ModelStage::Rejected,
            other => return Err(format!("unknown model stage {other:?}")),
        })
    }
}

/// A model version in the registry.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub target: Target,
    pub version: i32,
    pub learner: String,
    pub stage: ModelStage,
    pub stage_reason: Option<String>,
    pub feature_set_version: String,
    pub data_fingerprint: String,
    pub code_version: String,
    pub metrics: serde_json::Value,
    pub artifact_path: String,
    pub artifact_sha256: String,
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub promoted_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RawModel {
    target: String,
    version: i32,
    learner: String,
    stage: String,
    stage_reason: Option<String>,
    feature_set_version: String,
    data_fingerprint: String,
    code_version: String,
    metrics: Json<serde_json::Value>,
    artifact_path: String,
    artifact_sha256: String,
    job_id: Option<String>,
    created_at: DateTime<Utc>,
    promoted_at: Option<DateTime<Utc>>,
}

macro_rules! model_columns {
    () => {
        "target, version, learner, stage, stage_reason, feature_set_version, \
         data_fingerprint, code_version, metrics, artifact_path, artifact_sha256, job_id, created_at, promoted_at"
    };
}

impl TryFrom<RawModel> for ModelRow {
    type Error = StoreError;
    fn try_from(r: RawModel) -> Result<Self, StoreError> {
        Ok(ModelRow {
            target: Target::from_str(&r.target).map_err(StoreError::Corrupt)?,
            stage: ModelStage::from_str(&r.stage).map_err(StoreError::Corrupt)?,
            version: r.version,
            learner: r.learner,
            stage_reason: r.stage_reason,
            feature_set_version: r.feature_set_version,
            data_fingerprint: r.data_fingerprint,
            code_version: r.code_version,
            metrics: r.metrics.0,
            artifact_path: r.artifact_path,
            artifact_sha256: r.artifact_sha256,
            job_id: r.job_id,
            created_at: r.created_at,
            promoted_at: r.promoted_at,
        })
    }
}

/// A model version about to be registered.
#[derive(Debug, Clone)]
pub struct NewModel {
    pub target: Target,
    pub learner: String,
    pub feature_set_version: String,
    pub data_fingerprint: String,
    pub code_version: String,
    pub metrics: serde_json::Value,
    pub artifact_path: String,
    pub artifact_sha256: String,
    pub job_id: Option<String>,
}

/// A worker process's entry in the roster.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub queues: String,
    pub concurrency: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Opens the store named by `url` (`sqlite:`/path or `postgres://`),
    /// creating a SQLite file and its folder if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            let path = sqlite_path(url);
            if let Some(parent) = Path::new(&path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unreachable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match self {
            Store::Sqlite(p) => Some(p),
            Store::Postgres(_) => None,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            // PostgreSQL migrations hold an advisory lock, so processes
            // starting together take turns.
            Store::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
            // SQLite has no such lock: two processes starting on one file
            // (api and worker of the embedded setup) can both try the same
            // migration, and the later one fails on what the earlier one
            // just did. Running again then finds it recorded and goes on.
            Store::Sqlite(p) => {
                let mut attempt = 0;
                loop {
                    match SQLITE_MIGRATIONS.run(p).await {
                        Err(e) if attempt < 10 => {
                            attempt += 1;
                            tracing::debug!(error = %e, attempt, "SQLite migration raced another process; again");
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                        }
                        other => break other,
                    }
                }
            }
        }
        .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    // ---- jobs -------------------------------------------------------------

    /// Writes several new queued jobs that carry no dedup key in one
    /// statement (the API batches concurrent requests this way: one commit
    /// for many jobs). Returns the rows in the order given.
    pub async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<Vec<JobRow>, StoreError> {
        let now = Utc::now();
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO jobs (id, kind, queue, payload, state, attempts, max_attempts, progress, \
                 request_id, created_at, updated_at, run_at, queue_task_id, pushed_at) VALUES ",
            );
            sql.push_str(&values_rows(
                chunk.len(),
                8,
                "($1, $2, $3, $4, 'queued', 0, $5, 0, $6, $7, $7, $7, $8, $7)",
            ));
            sql.push_str(concat!(" RETURNING ", job_columns!()));
            let raws: Vec<RawJob> = on_pool!(self, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
                for j in chunk {
                    let kind = j.payload.kind();
                    q = q
                        .bind(&j.id)
                        .bind(kind.as_str())
                        .bind(kind.queue().as_str())
                        .bind(Json(&j.payload))
                        .bind(j.max_attempts)
                        .bind(&j.request_id)
                        .bind(now)
                        .bind(&j.queue_task_id);
                }
                q.fetch_all(p).await
            })?;
            let mut by_id: std::collections::HashMap<String, JobRow> = raws
                .into_iter()
                .map(|r| JobRow::try_from(r).map(|j| (j.id.clone(), j)))
                .collect::<Result<_, _>>()?;
            for j in chunk {
                let row = by_id
                    .remove(&j.id)
                    .ok_or_else(|| StoreError::Query(format!("job {} was not inserted", j.id)))?;
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Records a failed push for several jobs at once.
    pub async fn mark_push_failed_many(
        &self,
        ids: &[String],
        error: &str,
    ) -> Result<(), StoreError> {
        for id in ids {
            self.mark_push_failed(id, error).await?;
        }
        Ok(())
    }

    /// Writes a new queued job, or returns the active job it duplicates.
    pub async fn insert_job(&self, job: NewJob) -> Result<InsertOutcome, StoreError> {
        let now = Utc::now();
        let kind = job.payload.kind();
        let dedup = job.payload.dedup_key();
        let sql = concat!(
            "INSERT INTO jobs (id, kind, queue, payload, state, attempts, max_attempts, progress, \
             dedup_key, request_id, created_at, updated_at, run_at, queue_task_id, pushed_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, 0, $6, $7, $8, $8, $8, $9, $8) \
             ON CONFLICT DO NOTHING RETURNING ",
            job_columns!()
        );
        let inserted: Option<RawJob> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(&job.id)
            .bind(kind.as_str())
            .bind(kind.queue().as_str())
            .bind(Json(&job.payload))
            .bind(job.max_attempts)
            .bind(&dedup)
            .bind(&job.request_id)
            .bind(now)
            .bind(&job.queue_task_id)
            .fetch_optional(p)
            .await)?;
        if let Some(raw) = inserted {
            return Ok(InsertOutcome::Created(raw.try_into()?));
        }
        // The insert lost to an active duplicate (or, astronomically, an id clash).
        if let Some(key) = dedup {
            let sql = concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE dedup_key = $1 AND state IN ('queued','running')"
            );
            let existing: Option<RawJob> =
                on_pool!(self, p => sqlx::query_as(sql).bind(&key).fetch_optional(p).await)?;
            if let Some(raw) = existing {
                return Ok(InsertOutcome::Existing(raw.try_into()?));
            }
        }
        Err(StoreError::Query(format!(
            "job {} could not be inserted and has no active duplicate",
            job.id
        )))
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let sql = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let raw: Option<RawJob> =
            on_pool!(self, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        raw.map(JobRow::try_from).transpose()
    }

    /// Active retrain jobs (queued or running), for overlap checks.
    pub async fn active_jobs_of_kind(&self, kind: JobKind) -> Result<Vec<JobRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND state IN ('queued','running') ORDER BY created_at"
        );
        let raws: Vec<RawJob> =
            on_pool!(self, p => sqlx::query_as(sql).bind(kind.as_str()).fetch_all(p).await)?;
        raws.into_iter().map(JobRow::try_from).collect()
    }

    /// Records that the job's message is on the queue under `task_id`.
    pub async fn mark_pushed(&self, id: &str, task_id: &str) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET queue_task_id = $2, pushed_at = $3, push_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(task_id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records a failed push; the row stays `queued` for the reconciler.
    pub async fn mark_push_failed(&self, id: &str, error: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE jobs SET push_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Moves a queued job to running for `worker`, counting the attempt.
    pub async fn claim_job(&self, id: &str, worker: &str) -> Result<Claim, StoreError> {
        let now = Utc::now();
        let sql = concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $2, \
             started_at = COALESCE(started_at, $3), updated_at = $3, error = NULL \
             WHERE id = $1 AND state = 'queued' AND run_at <= $3 RETURNING ",
            job_columns!()
        );
        let raw: Option<RawJob> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(id)
            .bind(worker)
            .bind(now)
            .fetch_optional(p)
            .await)?;
        match raw {
            Some(raw) => Ok(Claim::Claimed(Box::new(raw.try_into()?))),
            None => {
                let state = self.get_job(id).await?.map(|j| j.state);
                Ok(Claim::NotClaimable(state))
            }
        }
    }

    /// Progress of a running job: a stage name and a fraction in 0..=1.
    pub async fn set_progress(
        &self,
        id: &str,
        worker: &str,
        stage: &str,
        progress: f64,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET stage = $3, progress = $4, updated_at = $5 \
             WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(stage)
        .bind(progress.clamp(0.0, 1.0))
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends a running job held by `worker`. Returns false when the job was
    /// taken away meanwhile (its worker was presumed dead): the caller's
    /// outcome is then dropped, the other holder's stands.
    pub async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        state: JobState,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let progress = if state == JobState::Succeeded {
            1.0
        } else {
            0.0
        };
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET state = $3, result = $4, error = $5, finished_at = $6, updated_at = $6, \
             progress = CASE WHEN $7 > 0 THEN $7 ELSE progress END, stage = $8 \
             WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(state.as_str())
        .bind(result.map(Json))
        .bind(error)
        .bind(now)
        .bind(progress)
        .bind(state.as_str())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Hands a running job back to the queue after a transient failure.
    pub async fn requeue_job(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        run_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET state = 'queued', worker = NULL, error = $3, run_at = $4, updated_at = $5, \
             queue_task_id = NULL, stage = 'retry scheduled' \
             WHERE id = $1 AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(run_at)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Queued jobs last pushed (or created) before `before`: candidates for a
    /// re-push if their message is no longer on the queue.
    pub async fn stale_queued_jobs(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StaleJob>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Raw {
            id: String,
            kind: String,
            queue: String,
            queue_task_id: Option<String>,
            request_id: Option<String>,
            run_at: DateTime<Utc>,
        }
        let rows: Vec<Raw> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, kind, queue, queue_task_id, request_id, run_at FROM jobs \
             WHERE state = 'queued' AND COALESCE(pushed_at, created_at) < $1 \
             ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(StaleJob {
                    kind: JobKind::from_str(&r.kind).map_err(StoreError::Corrupt)?,
                    queue: QueueName::from_str(&r.queue).map_err(StoreError::Corrupt)?,
                    id: r.id,
                    queue_task_id: r.queue_task_id,
                    request_id: r.request_id,
                    run_at: r.run_at,
                })
            })
            .collect()
    }

    /// Running jobs whose worker has not been seen since `dead_before` (or is
    /// not in the roster): back to `queued`, or `dead` once the attempt limit
    /// is reached, so a job that kills its worker cannot loop.
    pub async fn recover_orphans(
        &self,
        dead_before: DateTime<Utc>,
    ) -> Result<Vec<Recovered>, StoreError> {
        let now = Utc::now();
        #[derive(sqlx::FromRow)]
        struct Raw {
            id: String,
            kind: String,
            queue: String,
            state: String,
        }
        // Decide per row in SQL so two reconcilers cannot both act on a row:
        // each UPDATE only matches rows still running under the dead worker.
        let orphans: Vec<(String, Option<String>, i32, i32)> = on_pool!(self, p => sqlx::query_as(
            "SELECT j.id, j.worker, j.attempts, j.max_attempts FROM jobs j \
             LEFT JOIN workers w ON w.name = j.worker \
             WHERE j.state = 'running' AND j.updated_at < $1 \
             AND (w.name IS NULL OR w.last_seen < $1 OR w.stopped_at IS NOT NULL)",
        )
        .bind(dead_before)
        .fetch_all(p)
        .await)?;
        let mut out = Vec::new();
        for (id, worker, attempts, max_attempts) in orphans {
            let (state, error) = if attempts >= max_attempts {
                (
                    JobState::Dead,
                    format!(
                        "worker {} stopped responding during attempt {attempts} of {max_attempts}; attempt limit reached",
                        worker.as_deref().unwrap_or("?")
                    ),
                )
            } else {
                (
                    JobState::Queued,
                    format!(
                        "worker {} stopped responding during attempt {attempts} of {max_attempts}; requeued",
                        worker.as_deref().unwrap_or("?")
                    ),
                )
            };
            let finished = if state == JobState::Dead {
                Some(now)
            } else {
                None
            };
            let raw: Option<Raw> = on_pool!(self, p => sqlx::query_as(
                "UPDATE jobs SET state = $2, error = $3, worker = NULL, queue_task_id = NULL, \
                 updated_at = $4, finished_at = $5, stage = $2 \
                 WHERE id = $1 AND state = 'running' AND worker IS NOT DISTINCT FROM $6 \
                 RETURNING id, kind, queue, state",
            )
            .bind(&id)
            .bind(state.as_str())
            .bind(&error)
            .bind(now)
            .bind(finished)
            .bind(&worker)
            .fetch_optional(p)
            .await)?;
            if let Some(r) = raw {
                out.push(Recovered {
                    kind: JobKind::from_str(&r.kind).map_err(StoreError::Corrupt)?,
                    queue: QueueName::from_str(&r.queue).map_err(StoreError::Corrupt)?,
                    state: JobState::from_str(&r.state).map_err(StoreError::Corrupt)?,
                    id: r.id,
                    worker,
                });
            }
        }
        Ok(out)
    }

    // ---- predictions ------------------------------------------------------

    /// Marks a running job held by `worker` succeeded and stores its
    /// per-project answers, in one transaction: either both happen or, if
    /// the job was taken away meanwhile, neither (returns false).
    pub async fn succeed_job(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        rows: &[PredictionRow],
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let kept = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET state = 'succeeded', result = $3, error = NULL, finished_at = $4, \
                 updated_at = $4, progress = 1, stage = 'succeeded' \
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(worker)
            .bind(Json(result))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                for chunk in rows.chunks(PREDICTION_CHUNK) {
                    let sql = predictions_sql(chunk.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                    for r in chunk {
                        q = bind_prediction!(q, r, now);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<bool, sqlx::Error>(true)
            } else {
                tx.rollback().await?;
                Ok(false)
            }
        })?;
        Ok(kept)
    }

    // ---- models -----------------------------------------------------------

    /// Registers a new version as a candidate and returns it.
    pub async fn insert_model(&self, m: NewModel) -> Result<ModelRow, StoreError> {
        let now = Utc::now();
        let sql = concat!(
            "INSERT INTO models (target, version, learner, stage, feature_set_version, data_fingerprint, \
             code_version, metrics, artifact_path, artifact_sha256, job_id, created_at) \
             VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE target = $1), $2, 'candidate', \
             $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            model_columns!()
        );
        let raw: RawModel = on_pool!(self, p => sqlx::query_as(sql)
            .bind(m.target.as_str())
            .bind(&m.learner)
            .bind(&m.feature_set_version)
            .bind(&m.data_fingerprint)
            .bind(&m.code_version)
            .bind(Json(&m.metrics))
            .bind(&m.artifact_path)
            .bind(&m.artifact_sha256)
            .bind(&m.job_id)
            .bind(now)
            .fetch_one(p)
            .await)?;
        raw.try_into()
    }

    /// Sets a version's stage. Promoting archives the current production
    /// version first (one production model per target).
    pub async fn set_model_stage(
        &self,
        target: Target,
        version: i32,
        stage: ModelStage,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            if stage == ModelStage::Production {
                sqlx::query(
                    "UPDATE models SET stage = 'archived', stage_reason = $3 \
                     WHERE target = $1 AND stage = 'production' AND version <> $2",
                )
                .bind(target.as_str())
                .bind(version)
                .bind(format!("replaced by version {version}"))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE models SET stage = $3, stage_reason = $4, \
                 promoted_at = CASE WHEN $3 = 'production' THEN $5 ELSE promoted_at END \
                 WHERE target = $1 AND version = $2",
            )
            .bind(target.as_str())
            .bind(version)
            .bind(stage.as_str())
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Records where this version was exported to MLflow.
    pub async fn set_model_mlflow(
        &self,
        target: Target,
        version: i32,
        mlflow: &serde_json::Value,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("UPDATE models SET mlflow = $3 WHERE target = $1 AND version = $2")
            .bind(target.as_str())
            .bind(version)
            .bind(Json(mlflow))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The MLflow export record of a version, if it was exported.
    pub async fn model_mlflow(
        &self,
        target: Target,
        version: i32,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row: Option<(Option<Json<serde_json::Value>>,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT mlflow FROM models WHERE target = $1 AND version = $2",
        )
        .bind(target.as_str())
        .bind(version)
        .fetch_optional(p)
        .await)?;
        Ok(row.and_then(|r| r.0).map(|j| j.0))
    }

    pub async fn production_model(&self, target: Target) -> Result<Option<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE target = $1 AND stage = 'production'"
        );
        let raw: Option<RawModel> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(target.as_str())
            .fetch_optional(p)
            .await)?;
        raw.map(ModelRow::try_from).transpose()
    }

    pub async fn get_model(
        &self,
        target: Target,
        version: i32,
    ) -> Result<Option<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE target = $1 AND version = $2"
        );
        let raw: Option<RawModel> = on_pool!(self, p => sqlx::query_as(sql)
            .bind(target.as_str())
            .bind(version)
            .fetch_optional(p)
            .await)?;
        raw.map(ModelRow::try_from).transpose()
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models ORDER BY target, version DESC"
        );
        let raws: Vec<RawModel> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        raws.into_iter().map(ModelRow::try_from).collect()
    }

    /// Keeps the newest `keep` versions of `target` (and always the
    /// production one); deletes the other rows and returns them so the
    /// caller can remove their artifacts.
    pub async fn prune_models(
        &self,
        target: Target,
        keep: usize,
    ) -> Result<Vec<ModelRow>, StoreError> {
        let all: Vec<ModelRow> = self
            .list_models()
            .await?
            .into_iter()
            .filter(|m| m.target == target)
            .collect();
        // list_models is newest first.
        let doomed: Vec<ModelRow> = all
            .into_iter()
            .enumerate()
            .filter(|(i, m)| *i >= keep && m.stage != ModelStage::Production)
            .map(|(_, m)| m)
            .collect();
        for m in &doomed {
            on_pool!(self, p => sqlx::query(
                "DELETE FROM models WHERE target = $1 AND version = $2 AND stage <> 'production'",
            )
            .bind(target.as_str())
            .bind(m.version)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(doomed)
    }

    pub async fn model_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) =
            on_pool!(self, p => sqlx::query_as("SELECT COUNT(*) FROM models").fetch_one(p).await)?;
        Ok(n)
    }

    // ---- workers ----------------------------------------------------------

    pub async fn heartbeat_worker(&self, w: &WorkerRow) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => sqlx::query(
            "INSERT INTO workers (name, host, pid, queues, concurrency, version, started_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(&w.name)
        .bind(&w.host)
        .bind(w.pid)
        .bind(&w.queues)
        .bind(w.concurrency)
        .bind(&w.version)
        .bind(w.started_at)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn mark_worker_stopped(&self, name: &str) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => sqlx::query("UPDATE workers SET stopped_at = $2, last_seen = $2 WHERE name = $1")
            .bind(name)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// Rows per INSERT: 9 binds each, under SQLite's 32766-variable limit.
const PREDICTION_CHUNK: usize = 1000;

fn predictions_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO predictions (job_id, project_id, target, model_version, value, class, output, error, created_at) VALUES ",
    );
    sql.push_str(&values_rows(n, 9, "($1, $2, $3, $4, $5, $6, $7, $8, $9)"));
    sql.push_str(
        " ON CONFLICT (job_id, project_id, target) DO UPDATE SET model_version = excluded.model_version, \
         value = excluded.value, class = excluded.class, output = excluded.output, error = excluded.error, \
         created_at = excluded.created_at",
    );
    sql
}

/// `n` comma-separated copies of `row`, whose `$k` placeholders are
/// renumbered for each copy (copy i uses `$(i * per_row + k)`): the VALUES
/// list of a multi-row INSERT.
fn values_rows(n: usize, per_row: usize, row: &str) -> String {
    let mut out = String::with_capacity(n * (row.len() + 8));
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let mut chars = row.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            let mut k = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                k = k * 10 + d as usize;
                chars.next();
            }
            out.push('$');
            out.push_str(&(i * per_row + k).to_string());
        }
    }
    out
}

/// The file path inside a `sqlite:` URL (or a bare path).
pub fn sqlite_path(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest).to_string()
}

mod drift;
mod maintenance;
mod ops;

pub use drift::{DriftReportRow, PredictionCount, StoredPrediction};
pub use maintenance::{Purged, RetentionCutoffs};
pub use ops::{CancelOutcome, JobFilter, OpsJob, QueueCounts, RetryOutcome};

#[cfg(test)]
mod tests {
    use super::values_rows;

    #[test]
    fn values_rows_renumbers_each_copy() {
        assert_eq!(
            values_rows(2, 3, "($1, 'x', $2, $3, $2)"),
            "($1, 'x', $2, $3, $2),($4, 'x', $5, $6, $5)"
        );
    }
}
