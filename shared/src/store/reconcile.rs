//! What the reconciler reads and takes back: queued rows whose message may
//! be gone from the queue, and running rows whose lease ran out.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, parse};
use crate::jobs::{JobKind, JobState, QueueName};

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

/// What the reconciler did with a running job whose lease ran out.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub id: String,
    pub kind: JobKind,
    pub queue: QueueName,
    pub state: JobState,
    pub worker: Option<String>,
}

impl Store {
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
        let rows: Vec<Raw> = fetch!(
            self,
            fetch_all,
            "SELECT id, kind, queue, queue_task_id, request_id, run_at FROM jobs \
             WHERE state = 'queued' AND COALESCE(pushed_at, created_at) < $1 \
             ORDER BY created_at LIMIT $2",
            before,
            limit,
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(StaleJob {
                    kind: parse(&r.kind)?,
                    queue: parse(&r.queue)?,
                    id: r.id,
                    queue_task_id: r.queue_task_id,
                    request_id: r.request_id,
                    run_at: r.run_at,
                })
            })
            .collect()
    }

    /// Running jobs whose lease ended before now: back to `queued`, or
    /// `dead` once the attempt limit is reached, so a job that kills its
    /// worker cannot loop. The lease alone decides: a job whose worker still
    /// heart-beats in the roster but stopped renewing it is taken back, and
    /// a job whose lease is live never is. Rows claimed before leases
    /// existed (no lease) are judged as before: their worker has not been
    /// seen since `dead_before`, or left the roster.
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
        // Decide per row in SQL so two reconcilers cannot both act on a row,
        // nor act on a row whose worker renewed its lease meanwhile: each
        // UPDATE only matches the same attempt, still running, lease still
        // over.
        let orphans: Vec<(String, Option<String>, i32, i32)> = fetch!(
            self,
            fetch_all,
            "SELECT j.id, j.worker, j.attempts, j.max_attempts FROM jobs j \
             LEFT JOIN workers w ON w.name = j.worker \
             WHERE j.state = 'running' AND (j.lease_until < $1 OR (j.lease_until IS NULL \
             AND j.updated_at < $2 \
             AND (w.name IS NULL OR w.last_seen < $2 OR w.stopped_at IS NOT NULL)))",
            now,
            dead_before,
        )?;
        let mut out = Vec::new();
        for (id, worker, attempts, max_attempts) in orphans {
            let who = worker.as_deref().unwrap_or("?");
            let (state, error, finished) = if attempts >= max_attempts {
                (
                    JobState::Dead,
                    format!(
                        "worker {who} stopped confirming the job during attempt {attempts} of {max_attempts}; attempt limit reached"
                    ),
                    Some(now),
                )
            } else {
                (
                    JobState::Queued,
                    format!(
                        "worker {who} stopped confirming the job during attempt {attempts} of {max_attempts}; requeued"
                    ),
                    None,
                )
            };
            let raw: Option<Raw> = fetch!(
                self,
                fetch_optional,
                "UPDATE jobs SET state = $2, error = $3, worker = NULL, queue_task_id = NULL, \
                 lease_until = NULL, updated_at = $4, finished_at = $5, stage = $2 \
                 WHERE id = $1 AND state = 'running' AND worker IS NOT DISTINCT FROM $6 \
                 AND attempts = $7 AND (lease_until IS NULL OR lease_until < $4) \
                 RETURNING id, kind, queue, state",
                &id,
                state.as_str(),
                &error,
                now,
                finished,
                &worker,
                attempts,
            )?;
            if let Some(r) = raw {
                out.push(Recovered {
                    kind: parse(&r.kind)?,
                    queue: parse(&r.queue)?,
                    state: parse(&r.state)?,
                    id: r.id,
                    worker,
                });
            }
        }
        Ok(out)
    }
}
