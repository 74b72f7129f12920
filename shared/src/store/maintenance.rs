//! Retention and schedule bookkeeping: what the `maintenance` job deletes
//! and how scheduler replicas agree on who enqueues a tick.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// Rows removed by one retention pass.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Purged {
    pub jobs: u64,
    pub failed_jobs: u64,
    pub predictions: u64,
    pub schedule_ticks: u64,
    pub workers: u64,
    pub idempotency_keys: u64,
    /// Callback outbox rows whose job is gone.
    pub callbacks: u64,
}

/// Where each cut-off falls; everything finished before it goes.
#[derive(Debug, Clone, Copy)]
pub struct RetentionCutoffs {
    /// Succeeded and cancelled jobs.
    pub finished: DateTime<Utc>,
    /// Failed and dead jobs (kept longer: someone may still investigate).
    pub failed: DateTime<Utc>,
    /// Stored predictions (the record realised performance is measured on).
    pub predictions: DateTime<Utc>,
    /// Scheduler tick keys.
    pub ticks: DateTime<Utc>,
    /// Workers that stopped (or vanished) before this.
    pub workers: DateTime<Utc>,
    /// Idempotency keys (IDEMPOTENCY_RETENTION_HOURS).
    pub idempotency_keys: DateTime<Utc>,
}

impl Store {
    /// Deletes what has outlived its retention. Queued and running jobs are
    /// never touched, whatever their age. A terminal job's `updated_at` is
    /// when it finished (nothing updates it afterwards but a retry, which
    /// makes it queued again), and `(state, updated_at)` is indexed.
    pub async fn purge_expired(&self, c: &RetentionCutoffs) -> Result<Purged, StoreError> {
        let deletes: [(&'static str, DateTime<Utc>); 6] = [
            (
                "DELETE FROM jobs WHERE state IN ('succeeded', 'cancelled') AND updated_at < $1",
                c.finished,
            ),
            (
                "DELETE FROM jobs WHERE state IN ('failed', 'dead') AND updated_at < $1",
                c.failed,
            ),
            (
                "DELETE FROM predictions WHERE created_at < $1",
                c.predictions,
            ),
            ("DELETE FROM schedule_ticks WHERE tick_at < $1", c.ticks),
            ("DELETE FROM workers WHERE last_seen < $1", c.workers),
            (
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                c.idempotency_keys,
            ),
        ];
        let mut removed = [0u64; 6];
        for (n, (sql, cutoff)) in removed.iter_mut().zip(deletes) {
            *n = exec!(self, sql, cutoff)?;
        }
        // After the jobs: their callbacks go with them, delivered or not.
        let callbacks = exec!(
            self,
            "DELETE FROM job_callbacks \
             WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = job_callbacks.job_id)"
        )?;
        let [
            jobs,
            failed_jobs,
            predictions,
            schedule_ticks,
            workers,
            idempotency_keys,
        ] = removed;
        Ok(Purged {
            jobs,
            failed_jobs,
            predictions,
            schedule_ticks,
            workers,
            idempotency_keys,
            callbacks,
        })
    }

    /// Claims one tick of a schedule. Exactly one caller gets `true` for a
    /// given (schedule, tick) however many scheduler replicas ask.
    pub async fn claim_tick(
        &self,
        schedule: &str,
        tick_at: DateTime<Utc>,
        claimed_by: &str,
    ) -> Result<bool, StoreError> {
        let n = exec!(
            self,
            "INSERT INTO schedule_ticks (schedule, tick_at, claimed_by, claimed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (schedule, tick_at) DO NOTHING",
            schedule,
            tick_at,
            claimed_by,
            Utc::now(),
        )?;
        Ok(n == 1)
    }

    /// Records the job a claimed tick produced.
    pub async fn set_tick_job(
        &self,
        schedule: &str,
        tick_at: DateTime<Utc>,
        job_id: &str,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            "UPDATE schedule_ticks SET job_id = $3 WHERE schedule = $1 AND tick_at = $2",
            schedule,
            tick_at,
            job_id,
        )?;
        Ok(())
    }

    /// Gives a claimed tick back (its job could not be enqueued), so the
    /// next attempt, by this replica or another, can claim it again.
    pub async fn release_tick(
        &self,
        schedule: &str,
        tick_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            "DELETE FROM schedule_ticks WHERE schedule = $1 AND tick_at = $2 AND job_id IS NULL",
            schedule,
            tick_at,
        )?;
        Ok(())
    }

    /// The newest tick of `schedule` claimed so far, if any.
    pub async fn last_tick(&self, schedule: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row: Option<(DateTime<Utc>,)> = fetch!(
            self,
            fetch_optional,
            "SELECT tick_at FROM schedule_ticks WHERE schedule = $1 ORDER BY tick_at DESC LIMIT 1",
            schedule,
        )?;
        Ok(row.map(|r| r.0))
    }

    /// Ticks claimed before `claimed_before` whose job was never recorded
    /// (the claiming scheduler died between the claim and the enqueue),
    /// for ticks at or after `tick_after`.
    pub async fn abandoned_ticks(
        &self,
        claimed_before: DateTime<Utc>,
        tick_after: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        fetch!(
            self,
            fetch_all,
            "SELECT schedule, tick_at FROM schedule_ticks \
             WHERE job_id IS NULL AND claimed_at < $1 AND tick_at >= $2 ORDER BY tick_at",
            claimed_before,
            tick_after,
        )
    }
}
