//! Jobs as the API and the worker move them: accept, claim, report progress,
//! record the outcome (with a prediction job's per-project answers).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use super::lease::{Holder, held_by_worker, lease_end};
use super::text::{storable, storable_json, storable_opt};
use super::{Store, StoreError, parse};
use crate::jobs::{JobKind, JobPayload, JobState, QueueName};
use crate::ml::Target;

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
pub(super) struct RawJob {
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

/// The columns [`RawJob`] reads, for `concat!`.
macro_rules! job_columns {
    () => {
        "id, kind, queue, payload, state, attempts, max_attempts, progress, stage, \
         error, result, request_id, worker, created_at, updated_at, run_at, started_at, finished_at, \
         cancel_requested_at"
    };
}
pub(super) use job_columns;

/// Binds one row's nine values in the column order of `predictions_sql`.
macro_rules! bind_prediction {
    ($q:expr, $r:expr, $now:expr) => {
        $q.bind(&$r.job_id)
            .bind($r.project_id)
            .bind($r.target.as_str())
            .bind($r.model_version)
            .bind($r.value)
            .bind(storable_opt($r.class.as_deref()))
            .bind($r.output.as_ref().map(|o| Json(storable_json(o))))
            .bind(storable_opt($r.error.as_deref()))
            .bind($now)
    };
}

/// Writes one new queued job (binds: [`bind_new_job!`]); nothing when an
/// active job with its dedup key exists.
pub(super) const INSERT_JOB: &str = concat!(
    "INSERT INTO jobs (id, kind, queue, payload, state, attempts, max_attempts, progress, \
     dedup_key, request_id, created_at, updated_at, run_at, queue_task_id, pushed_at) \
     VALUES ($1, $2, $3, $4, 'queued', 0, $5, 0, $6, $7, $8, $8, $8, $9, $8) \
     ON CONFLICT DO NOTHING RETURNING ",
    job_columns!()
);

/// The active job holding a dedup key (`$1`).
pub(super) const ACTIVE_DUPLICATE: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE dedup_key = $1 AND state IN ('queued','running')"
);

/// Binds a [`NewJob`] (`$job`) and the time (`$now`) to [`INSERT_JOB`].
macro_rules! bind_new_job {
    ($q:expr, $job:expr, $now:expr) => {{
        let kind = $job.payload.kind();
        $q.bind(&$job.id)
            .bind(kind.as_str())
            .bind($job.payload.queue().as_str())
            .bind(sqlx::types::Json(&$job.payload))
            .bind($job.max_attempts)
            .bind($job.payload.dedup_key())
            .bind(super::text::storable_opt($job.request_id.as_deref()))
            .bind($now)
            .bind(&$job.queue_task_id)
    }};
}
pub(super) use bind_new_job;

/// A job that was not inserted yet has no active duplicate.
pub(super) fn no_duplicate(job: &NewJob) -> StoreError {
    StoreError::Query(format!(
        "job {} could not be inserted and has no active duplicate",
        job.id
    ))
}

impl TryFrom<RawJob> for JobRow {
    type Error = StoreError;
    fn try_from(r: RawJob) -> Result<Self, StoreError> {
        Ok(JobRow {
            kind: parse(&r.kind)?,
            queue: parse(&r.queue)?,
            state: parse(&r.state)?,
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
    /// Where to POST the job view when the job ends: an outbox row written
    /// in the job's transaction. Only for kinds that are never
    /// deduplicated (a job collapsed onto another has no row of its own to
    /// hang it on); the caller has checked the URL.
    pub callback_url: Option<String>,
}

impl NewJob {
    /// A job with a new id and a new queue task id.
    pub fn fresh(
        payload: JobPayload,
        max_attempts: i32,
        request_id: Option<String>,
        callback_url: Option<String>,
    ) -> Self {
        NewJob {
            id: ulid::Ulid::new().to_string(),
            queue_task_id: crate::queue::new_task_id(),
            payload,
            max_attempts,
            request_id,
            callback_url,
        }
    }
}

impl NewJob {
    /// Refuses a callback on a deduplicated kind (see `callback_url`).
    pub(super) fn check_callback(&self) -> Result<(), StoreError> {
        if self.callback_url.is_some() && self.payload.dedup_key().is_some() {
            return Err(StoreError::Query(format!(
                "a {} job cannot carry a callback: its kind is deduplicated",
                self.payload.kind()
            )));
        }
        Ok(())
    }
}

/// Writes the outbox rows of the jobs in `jobs` that carry a callback, on
/// `$conn` (the transaction that wrote the jobs), at `$now`.
macro_rules! insert_callbacks {
    ($conn:expr, $jobs:expr, $now:expr) => {{
        let with: Vec<&NewJob> = $jobs.iter().filter(|j| j.callback_url.is_some()).collect();
        if !with.is_empty() {
            let mut sql = String::from(super::callbacks::INSERT_CALLBACKS);
            sql.push_str(&values_rows(
                with.len(),
                4,
                super::callbacks::CALLBACK_VALUES,
            ));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for j in &with {
                q = q
                    .bind(ulid::Ulid::new().to_string())
                    .bind(&j.id)
                    .bind(j.callback_url.as_deref().map(storable))
                    .bind($now);
            }
            q.execute($conn).await?;
        }
    }};
}
pub(super) use insert_callbacks;

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

/// How a running job ended, as its worker reports it to
/// [`Store::set_outcome`].
#[derive(Debug, Clone, Copy)]
pub enum JobOutcome<'a> {
    /// Done; a prediction job's per-project answers are stored with it
    /// (and its answers become the latest forecasts).
    Succeeded {
        result: &'a serde_json::Value,
        predictions: &'a [PredictionRow],
    },
    /// Done; a scoring run's answers only become the latest forecasts (the
    /// `predictions` table keeps the answers of jobs someone asked for).
    Scored {
        result: &'a serde_json::Value,
        forecasts: &'a [PredictionRow],
    },
    /// It can never succeed (bad input, no model, a bug).
    Failed { error: &'a str },
    /// It ran out of attempts.
    Dead { error: &'a str },
    /// An operator stopped it.
    Cancelled { error: &'a str },
    /// Back to the queue, due again at `run_at`; the caller pushes its
    /// message.
    Retry {
        error: &'a str,
        run_at: DateTime<Utc>,
    },
    /// Back to the queue to wait for something (`stage` says what), due
    /// again at `run_at`; the attempt it took is given back. The caller
    /// pushes its message.
    Deferred {
        stage: &'a str,
        run_at: DateTime<Utc>,
    },
}

impl JobOutcome<'_> {
    /// The state the row moves to.
    pub fn state(&self) -> JobState {
        match self {
            JobOutcome::Succeeded { .. } | JobOutcome::Scored { .. } => JobState::Succeeded,
            JobOutcome::Failed { .. } => JobState::Failed,
            JobOutcome::Dead { .. } => JobState::Dead,
            JobOutcome::Cancelled { .. } => JobState::Cancelled,
            JobOutcome::Retry { .. } | JobOutcome::Deferred { .. } => JobState::Queued,
        }
    }

    /// The write, `$4` being now; [`Store::set_outcome`] binds the rest in
    /// the order noted here. An ended row keeps its worker (who ran it) and,
    /// unless it succeeded, the progress it reached; a retried row loses its
    /// worker and queue task so the next claim can take it. Either way the
    /// lease is gone.
    fn sql(&self) -> &'static str {
        match self {
            JobOutcome::Succeeded { .. } | JobOutcome::Scored { .. } => concat!(
                // $5 result
                "UPDATE jobs SET state = 'succeeded', stage = 'succeeded', result = $5, \
                 error = NULL, progress = 1, finished_at = $4, updated_at = $4, lease_until = NULL",
                held_by_worker!()
            ),
            JobOutcome::Failed { .. } | JobOutcome::Dead { .. } | JobOutcome::Cancelled { .. } => {
                concat!(
                    // $5 error, $6 state
                    "UPDATE jobs SET state = $6, stage = $6, result = NULL, error = $5, \
                     finished_at = $4, updated_at = $4, lease_until = NULL",
                    held_by_worker!()
                )
            }
            JobOutcome::Retry { .. } => concat!(
                // $5 error, $6 run_at
                "UPDATE jobs SET state = 'queued', stage = 'retry scheduled', worker = NULL, \
                 queue_task_id = NULL, lease_until = NULL, error = $5, run_at = $6, updated_at = $4",
                held_by_worker!()
            ),
            JobOutcome::Deferred { .. } => concat!(
                // $5 stage, $6 run_at
                "UPDATE jobs SET state = 'queued', stage = $5, worker = NULL, queue_task_id = NULL, \
                 lease_until = NULL, attempts = attempts - 1, run_at = $6, updated_at = $4",
                held_by_worker!()
            ),
        }
    }
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
    /// The cut-off the features were computed as of. A row that has it, a
    /// model version and no error also becomes its project's latest
    /// forecast for the target (`latest_predictions`), unless a newer one
    /// is kept.
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
}

impl PredictionRow {
    /// The latest-forecast row this answer makes, if it is an answer.
    fn latest(&self) -> Option<(i32, DateTime<Utc>)> {
        match (self.error.is_none(), self.model_version, self.as_of) {
            (true, Some(v), Some(at)) => Some((v, at)),
            _ => None,
        }
    }
}

impl Store {
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
            for j in chunk {
                j.check_callback()?;
            }
            let with_callbacks = chunk.iter().any(|j| j.callback_url.is_some());
            let raws: Vec<RawJob> = on_pool!(self, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
                for j in chunk {
                    let kind = j.payload.kind();
                    q = q
                        .bind(&j.id)
                        .bind(kind.as_str())
                        .bind(j.payload.queue().as_str())
                        .bind(Json(&j.payload))
                        .bind(j.max_attempts)
                        .bind(storable_opt(j.request_id.as_deref()))
                        .bind(now)
                        .bind(&j.queue_task_id);
                }
                if with_callbacks {
                    // Jobs and their callbacks commit together: an accepted
                    // callback is never lost.
                    let mut tx = p.begin().await?;
                    let raws = q.fetch_all(&mut *tx).await?;
                    insert_callbacks!(&mut *tx, chunk, now);
                    tx.commit().await?;
                    Ok::<Vec<RawJob>, sqlx::Error>(raws)
                } else {
                    q.fetch_all(p).await
                }
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
        // An insert can lose to an active duplicate that ends before it is
        // read: then neither is found, and the slot is free again. Each
        // round lost that way means another job ended, so a few suffice.
        for _ in 0..INSERT_ROUNDS {
            if let Some(outcome) = self.try_insert_job(&job).await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::Query(format!(
            "job {} could not be inserted and has no active duplicate",
            job.id
        )))
    }

    /// One round of [`Store::insert_job`]: `None` when the insert lost to a
    /// duplicate that is no longer active.
    async fn try_insert_job(&self, job: &NewJob) -> Result<Option<InsertOutcome>, StoreError> {
        job.check_callback()?;
        let now = Utc::now();
        let inserted: Option<RawJob> = on_pool!(self, p => {
            let q = bind_new_job!(sqlx::query_as(INSERT_JOB), job, now);
            if job.callback_url.is_some() {
                let mut tx = p.begin().await?;
                let raw: Option<RawJob> = q.fetch_optional(&mut *tx).await?;
                if raw.is_some() {
                    insert_callbacks!(&mut *tx, std::slice::from_ref(job), now);
                }
                tx.commit().await?;
                Ok::<Option<RawJob>, sqlx::Error>(raw)
            } else {
                q.fetch_optional(p).await
            }
        })?;
        if let Some(raw) = inserted {
            return Ok(Some(InsertOutcome::Created(raw.try_into()?)));
        }
        // The insert lost to an active duplicate (or, astronomically, an id clash).
        if let Some(key) = job.payload.dedup_key() {
            let existing: Option<RawJob> = fetch!(self, fetch_optional, ACTIVE_DUPLICATE, &key)?;
            return match existing {
                Some(raw) => Ok(Some(InsertOutcome::Existing(raw.try_into()?))),
                None => Ok(None),
            };
        }
        Err(StoreError::Query(format!(
            "job {} could not be inserted: its id is taken",
            job.id
        )))
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let sql = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let raw: Option<RawJob> = fetch!(self, fetch_optional, sql, id)?;
        raw.map(JobRow::try_from).transpose()
    }

    /// Active retrain jobs (queued or running), for overlap checks.
    pub async fn active_jobs_of_kind(&self, kind: JobKind) -> Result<Vec<JobRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND state IN ('queued','running') ORDER BY created_at"
        );
        let raws: Vec<RawJob> = fetch!(self, fetch_all, sql, kind.as_str())?;
        raws.into_iter().map(JobRow::try_from).collect()
    }

    /// Records that the job's message is on the queue under `task_id`.
    pub async fn mark_pushed(&self, id: &str, task_id: &str) -> Result<(), StoreError> {
        exec!(
            self,
            "UPDATE jobs SET queue_task_id = $2, pushed_at = $3, push_error = NULL WHERE id = $1",
            id,
            task_id,
            Utc::now(),
        )?;
        Ok(())
    }

    /// Records a failed push; the row stays `queued` for the reconciler.
    pub async fn mark_push_failed(&self, id: &str, error: &str) -> Result<(), StoreError> {
        exec!(
            self,
            "UPDATE jobs SET push_error = $2 WHERE id = $1",
            id,
            storable(error)
        )?;
        Ok(())
    }

    /// Moves a queued job to running for `worker`, counting the attempt, with
    /// a lease of `lease` from now (which the worker renews while the job
    /// runs, see [`Store::renew_lease`]).
    pub async fn claim_job(
        &self,
        id: &str,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let sql = concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $2, \
             started_at = COALESCE(started_at, $3), updated_at = $3, error = NULL, lease_until = $4 \
             WHERE id = $1 AND state = 'queued' AND run_at <= $3 RETURNING ",
            job_columns!()
        );
        let now = Utc::now();
        let raw: Option<RawJob> = fetch!(
            self,
            fetch_optional,
            sql,
            id,
            worker,
            now,
            lease_end(now, lease)
        )?;
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
        holder: Holder<'_>,
        stage: &str,
        progress: f64,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            concat!(
                "UPDATE jobs SET stage = $4, progress = $5, updated_at = $6",
                held_by_worker!()
            ),
            id,
            holder.worker,
            holder.attempt,
            storable(stage),
            progress.clamp(0.0, 1.0),
            Utc::now(),
        )?;
        Ok(())
    }

    /// Records how a running job held by `holder` ended (or that it goes
    /// back to the queue). Returns false when the job was taken away
    /// meanwhile (its lease ran out and the reconciler took it back, or an
    /// operator acted): the caller's outcome is then dropped, no row
    /// changes, and the other holder's outcome stands. A success and its
    /// predictions and latest forecasts are written in one transaction:
    /// all or nothing.
    pub async fn set_outcome(
        &self,
        id: &str,
        holder: Holder<'_>,
        outcome: JobOutcome<'_>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let (predictions, forecasts) = match outcome {
            JobOutcome::Succeeded { predictions, .. } => (predictions, predictions),
            JobOutcome::Scored { forecasts, .. } => (&[][..], forecasts),
            _ => (&[][..], &[][..]),
        };
        let state = outcome.state();
        let kept = on_pool!(self, p => {
            let q = sqlx::query(outcome.sql())
                .bind(id)
                .bind(holder.worker)
                .bind(holder.attempt)
                .bind(now);
            let q = match outcome {
                JobOutcome::Succeeded { result, .. } | JobOutcome::Scored { result, .. } => {
                    q.bind(Json(storable_json(result)))
                }
                JobOutcome::Failed { error }
                | JobOutcome::Dead { error }
                | JobOutcome::Cancelled { error } => q.bind(storable(error)).bind(state.as_str()),
                JobOutcome::Retry { error, run_at } => q.bind(storable(error)).bind(run_at),
                JobOutcome::Deferred { stage, run_at } => q.bind(storable(stage)).bind(run_at),
            };
            if predictions.is_empty() && forecasts.is_empty() {
                q.execute(p).await.map(|r| r.rows_affected() == 1)
            } else {
                let mut tx = p.begin().await?;
                if q.execute(&mut *tx).await?.rows_affected() == 1 {
                    for chunk in predictions.chunks(PREDICTION_CHUNK) {
                        let sql = predictions_sql(chunk.len());
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                        for r in chunk {
                            q = bind_prediction!(q, r, now);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    // One row per (project, target): PostgreSQL refuses an
                    // upsert that touches a row twice.
                    let latest: Vec<(&PredictionRow, i32, DateTime<Utc>)> = forecasts
                        .iter()
                        .filter_map(|r| {
                            r.latest()
                                .map(|(version, as_of)| ((r.project_id, r.target), (r, version, as_of)))
                        })
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_values()
                        .collect();
                    for chunk in latest.chunks(PREDICTION_CHUNK) {
                        let sql = latest_sql(chunk.len());
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                        for &(r, version, as_of) in chunk {
                            q = q
                                .bind(r.project_id)
                                .bind(r.target.as_str())
                                .bind(version)
                                .bind(as_of)
                                .bind(r.value)
                                .bind(storable_opt(r.class.as_deref()))
                                .bind(r.output.as_ref().map(|o| Json(storable_json(o))))
                                .bind(&r.job_id)
                                .bind(now);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok::<bool, sqlx::Error>(true)
                } else {
                    tx.rollback().await?;
                    Ok(false)
                }
            }
        })?;
        Ok(kept)
    }
}

/// Rounds of [`Store::insert_job`] before it gives up.
const INSERT_ROUNDS: usize = 10;

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

/// Upserts latest forecasts (9 binds a row); an older forecast (a job that
/// started before the one already kept) leaves the newer one in place.
fn latest_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO latest_predictions (project_id, target, model_version, as_of, value, class, output, job_id, updated_at) VALUES ",
    );
    sql.push_str(&values_rows(n, 9, "($1, $2, $3, $4, $5, $6, $7, $8, $9)"));
    sql.push_str(
        " ON CONFLICT (project_id, target) DO UPDATE SET model_version = excluded.model_version, \
         as_of = excluded.as_of, value = excluded.value, class = excluded.class, output = excluded.output, \
         job_id = excluded.job_id, updated_at = excluded.updated_at \
         WHERE latest_predictions.as_of <= excluded.as_of",
    );
    sql
}

/// `n` comma-separated copies of `row`, whose `$k` placeholders are
/// renumbered for each copy (copy i uses `$(i * per_row + k)`): the VALUES
/// list of a multi-row INSERT.
pub(super) fn values_rows(n: usize, per_row: usize, row: &str) -> String {
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
