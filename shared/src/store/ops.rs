//! Operator queries over the jobs table: listing, retry, cancel, counts.
//!
//! Job ids are ULIDs, so ordering and paging by id is ordering by creation
//! time, exact to the millisecond on both databases (SQLite keeps times as
//! text, where comparing them is only nearly right).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::jobs::{RawJob, job_columns};
use super::{JobRow, Store, StoreError, parse};
use crate::jobs::{JobKind, JobState, QueueName};

/// A job as the operator sees it: the row plus what ops actions left on it.
#[derive(Debug, Clone, Serialize)]
pub struct OpsJob {
    #[serde(flatten)]
    pub job: JobRow,
    /// Times an operator retried this job.
    pub retries: i32,
    /// The error the job had before its last retry.
    pub previous_error: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RawOpsJob {
    #[sqlx(flatten)]
    job: RawJob,
    retries: i32,
    previous_error: Option<String>,
    cancel_requested_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawOpsJob> for OpsJob {
    type Error = StoreError;
    fn try_from(r: RawOpsJob) -> Result<Self, StoreError> {
        Ok(OpsJob {
            job: r.job.try_into()?,
            retries: r.retries,
            previous_error: r.previous_error,
            cancel_requested_at: r.cancel_requested_at,
        })
    }
}

macro_rules! ops_job_columns {
    () => {
        concat!(
            job_columns!(),
            ", retries, previous_error, cancel_requested_at"
        )
    };
}

/// Filters for [`Store::list_jobs`]; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub states: Vec<JobState>,
    pub kinds: Vec<JobKind>,
    /// Only ids at or after this one (a ULID made from a time).
    pub since_id: Option<String>,
    /// Only ids strictly before this one (the previous page's last id).
    pub before_id: Option<String>,
    pub limit: i64,
}

/// What a retry request did.
#[derive(Debug)]
pub enum RetryOutcome {
    Retried(Box<OpsJob>),
    NotFound,
    /// The job is not failed or dead.
    WrongState(JobState),
    /// An identical deduplicated job is already queued or running.
    Duplicate(JobState),
}

/// What a cancel request did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// It was queued: it is cancelled now and will never run.
    Cancelled(Box<OpsJob>),
    /// It is running: it stops at its next checkpoint.
    Requested(Box<OpsJob>),
    NotFound,
    /// It had already ended.
    Finished(JobState),
}

/// Per-queue counts from the jobs table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueCounts {
    /// Queued and due now.
    pub waiting: i64,
    /// Queued for later (retry back-off).
    pub scheduled: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub cancelled: i64,
    /// When the longest-waiting due job became due.
    pub oldest_waiting_since: Option<DateTime<Utc>>,
    /// Jobs that ended (any terminal state) in the last 5 minutes / hour.
    pub finished_5m: i64,
    pub finished_1h: i64,
    pub failed_1h: i64,
}

impl Store {
    /// One page of jobs, newest first.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<OpsJob>, StoreError> {
        // Only placeholders are appended; the values are bound.
        let mut sql = String::from(concat!(
            "SELECT ",
            ops_job_columns!(),
            " FROM jobs WHERE 1=1"
        ));
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !f.states.is_empty() {
            let ph: Vec<String> = f.states.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND state IN ({})", ph.join(",")));
        }
        if !f.kinds.is_empty() {
            let ph: Vec<String> = f.kinds.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND kind IN ({})", ph.join(",")));
        }
        if f.since_id.is_some() {
            sql.push_str(&format!(" AND id >= {}", next()));
        }
        if f.before_id.is_some() {
            sql.push_str(&format!(" AND id < {}", next()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
        let raws: Vec<RawOpsJob> = on_pool!(self, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
            for s in &f.states {
                q = q.bind(s.as_str());
            }
            for k in &f.kinds {
                q = q.bind(k.as_str());
            }
            if let Some(s) = &f.since_id {
                q = q.bind(s);
            }
            if let Some(b) = &f.before_id {
                q = q.bind(b);
            }
            q.bind(f.limit).fetch_all(p).await
        })?;
        raws.into_iter().map(OpsJob::try_from).collect()
    }

    pub async fn get_ops_job(&self, id: &str) -> Result<Option<OpsJob>, StoreError> {
        let sql = concat!("SELECT ", ops_job_columns!(), " FROM jobs WHERE id = $1");
        let raw: Option<RawOpsJob> = fetch!(self, fetch_optional, sql, id)?;
        raw.map(OpsJob::try_from).transpose()
    }

    /// Puts a failed or dead job back in the queue under the same id, with a
    /// fresh attempt budget, remembering its last error and counting the
    /// retry. `task_id` is the queue task the caller will push it under.
    pub async fn retry_job(&self, id: &str, task_id: &str) -> Result<RetryOutcome, StoreError> {
        let now = Utc::now();
        // A deduplicated job (a retrain) may not come back while an
        // identical one is active; the partial unique index backs this up.
        let sql = concat!(
            "UPDATE jobs SET state = 'queued', attempts = 0, retries = retries + 1, \
             previous_error = error, error = NULL, result = NULL, progress = 0, \
             stage = 'retry requested', worker = NULL, run_at = $2, updated_at = $2, \
             finished_at = NULL, cancel_requested_at = NULL, queue_task_id = $3, \
             pushed_at = $2, push_error = NULL \
             WHERE id = $1 AND state IN ('failed', 'dead') AND (dedup_key IS NULL OR NOT EXISTS \
             (SELECT 1 FROM jobs o WHERE o.dedup_key = jobs.dedup_key AND o.state IN ('queued', 'running'))) \
             RETURNING ",
            ops_job_columns!()
        );
        let raw: Option<RawOpsJob> = fetch!(self, fetch_optional, sql, id, now, task_id)?;
        if let Some(raw) = raw {
            return Ok(RetryOutcome::Retried(Box::new(raw.try_into()?)));
        }
        Ok(match self.get_job(id).await? {
            None => RetryOutcome::NotFound,
            Some(j) if matches!(j.state, JobState::Failed | JobState::Dead) => {
                RetryOutcome::Duplicate(j.state)
            }
            Some(j) => RetryOutcome::WrongState(j.state),
        })
    }

    /// Cancels a queued job outright (the worker's claim then finds nothing
    /// to take), or asks a running one to stop at its next checkpoint.
    pub async fn cancel_job(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        // A job can move from queued to running (or back, on a retry
        // back-off) between the two updates: try again a few times.
        for _ in 0..5 {
            let now = Utc::now();
            let sql = concat!(
                "UPDATE jobs SET state = 'cancelled', stage = 'cancelled', \
                 error = 'cancelled by an operator before it ran', cancel_requested_at = $2, \
                 finished_at = $2, updated_at = $2 WHERE id = $1 AND state = 'queued' RETURNING ",
                ops_job_columns!()
            );
            if let Some(job) = self.update_ops_job(sql, id, now).await? {
                return Ok(CancelOutcome::Cancelled(Box::new(job)));
            }
            // updated_at is left alone: the orphan check reads it.
            let sql = concat!(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, $2) \
                 WHERE id = $1 AND state = 'running' RETURNING ",
                ops_job_columns!()
            );
            if let Some(job) = self.update_ops_job(sql, id, now).await? {
                return Ok(CancelOutcome::Requested(Box::new(job)));
            }
            match self.get_job(id).await? {
                None => return Ok(CancelOutcome::NotFound),
                Some(j) if j.state.is_terminal() => return Ok(CancelOutcome::Finished(j.state)),
                Some(_) => continue,
            }
        }
        Err(StoreError::Query(format!(
            "job {id} kept changing state while being cancelled"
        )))
    }

    /// Runs a conditional `UPDATE … RETURNING` of one job (`$1` its id,
    /// `$2` now); `None` when the condition did not hold.
    async fn update_ops_job(
        &self,
        sql: &'static str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OpsJob>, StoreError> {
        let raw: Option<RawOpsJob> = fetch!(self, fetch_optional, sql, id, now)?;
        raw.map(TryInto::try_into).transpose()
    }

    /// Counts per queue from the jobs table; every queue is present.
    pub async fn queue_counts(&self) -> Result<BTreeMap<QueueName, QueueCounts>, StoreError> {
        let now = Utc::now();
        let mut out: BTreeMap<QueueName, QueueCounts> = QueueName::ALL
            .iter()
            .map(|q| (*q, QueueCounts::default()))
            .collect();
        let by_state: Vec<(String, String, i64)> = fetch!(
            self,
            fetch_all,
            "SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state",
        )?;
        for (queue, state, n) in by_state {
            let c = out.entry(parse(&queue)?).or_default();
            match parse(&state)? {
                // Split below into due and later.
                JobState::Queued => c.waiting += n,
                JobState::Running => c.running += n,
                JobState::Succeeded => c.succeeded += n,
                JobState::Failed => c.failed += n,
                JobState::Dead => c.dead += n,
                JobState::Cancelled => c.cancelled += n,
            }
        }
        let later: Vec<(String, i64)> = fetch!(
            self,
            fetch_all,
            "SELECT queue, COUNT(*) FROM jobs WHERE state = 'queued' AND run_at > $1 GROUP BY queue",
            now,
        )?;
        for (queue, n) in later {
            let c = out.entry(parse(&queue)?).or_default();
            c.scheduled = n;
            c.waiting -= n;
        }
        for (q, c) in out.iter_mut() {
            if c.waiting > 0 {
                let oldest: Option<(DateTime<Utc>,)> = fetch!(
                    self,
                    fetch_optional,
                    "SELECT run_at FROM jobs WHERE queue = $1 AND state = 'queued' AND run_at <= $2 \
                     ORDER BY run_at LIMIT 1",
                    q.as_str(),
                    now,
                )?;
                c.oldest_waiting_since = oldest.map(|o| o.0);
            }
        }
        for (window, secs) in [("5m", 300), ("1h", 3600)] {
            let from = now - chrono::Duration::seconds(secs);
            let done: Vec<(String, String, i64)> = fetch!(
                self,
                fetch_all,
                "SELECT queue, state, COUNT(*) FROM jobs WHERE updated_at >= $1 \
                 AND state IN ('succeeded', 'failed', 'dead', 'cancelled') GROUP BY queue, state",
                from,
            )?;
            for (queue, state, n) in done {
                let c = out.entry(parse(&queue)?).or_default();
                if window == "5m" {
                    c.finished_5m += n;
                } else {
                    c.finished_1h += n;
                    if state == "failed" || state == "dead" {
                        c.failed_1h += n;
                    }
                }
            }
        }
        Ok(out)
    }
}
