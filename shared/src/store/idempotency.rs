//! Idempotency keys: the key of a request that created a job is written in
//! the transaction that writes the job, so a retried request finds the job
//! its first try created, and two requests racing with one key create one.

use chrono::{DateTime, Utc};

use super::jobs::{
    ACTIVE_DUPLICATE, INSERT_JOB, InsertOutcome, JobRow, NewJob, RawJob, bind_new_job,
    insert_callbacks, no_duplicate, values_rows,
};
use super::text::storable;
use super::{Store, StoreError};

/// A request's `Idempotency-Key` and what it asked for.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// Hash of the request's method, path and canonical body.
    pub request_hash: &'a str,
    /// Keys written before this have expired: they answer nothing.
    pub not_before: DateTime<Utc>,
}

/// What a key within its window answers.
#[derive(Debug)]
pub enum KeyedJob {
    /// The same request came with this key before: its job.
    Same(Box<JobRow>),
    /// Another request (method, path or body) used this key: its job's id.
    Other(String),
}

impl Store {
    /// What `key` answers, if it was used within its window and its job
    /// still exists.
    pub async fn keyed_job(
        &self,
        key: &IdempotencyKey<'_>,
    ) -> Result<Option<KeyedJob>, StoreError> {
        let row: Option<(String, String)> = fetch!(
            self,
            fetch_optional,
            "SELECT request_hash, job_id FROM idempotency_keys WHERE key = $1 AND created_at >= $2",
            key.key,
            key.not_before,
        )?;
        let Some((hash, job_id)) = row else {
            return Ok(None);
        };
        if hash != key.request_hash {
            return Ok(Some(KeyedJob::Other(job_id)));
        }
        // A job purged by retention while its key lived answers nothing.
        Ok(self
            .get_job(&job_id)
            .await?
            .map(|j| KeyedJob::Same(Box::new(j))))
    }

    /// Writes `job` under `key` in one transaction: the key's primary key
    /// lets exactly one of several concurrent requests with one key write
    /// its job (`Ok`, or, for a deduplicated kind, the active job it
    /// duplicates, recorded under the key); the others find the key taken,
    /// possibly a moment ago by a concurrent request (`Err`, what it
    /// answers). An expired key, or one whose job is gone, is replaced.
    pub async fn insert_job_keyed(
        &self,
        job: NewJob,
        key: &IdempotencyKey<'_>,
    ) -> Result<Result<InsertOutcome, KeyedJob>, StoreError> {
        // Twice at most: a key found taken whose job is gone is dropped and
        // the insert tried again.
        for _ in 0..2 {
            if let Some(outcome) = self.try_insert_keyed(&job, key).await? {
                return Ok(Ok(outcome));
            }
            if let Some(found) = self.keyed_job(key).await? {
                return Ok(Err(found));
            }
            exec!(
                self,
                "DELETE FROM idempotency_keys WHERE key = $1 \
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = idempotency_keys.job_id)",
                key.key,
            )?;
        }
        Err(StoreError::Query(format!(
            "idempotency key {:?} is taken but answers no job",
            key.key
        )))
    }

    /// One transaction: drop the key if it expired, take it, write the job.
    /// `None` when the key is held (by a live request or an earlier one).
    async fn try_insert_keyed(
        &self,
        job: &NewJob,
        key: &IdempotencyKey<'_>,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        job.check_callback()?;
        let now = Utc::now();
        let outcome = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at < $2")
                .bind(key.key)
                .bind(key.not_before)
                .execute(&mut *tx)
                .await?;
            let taken = sqlx::query(
                "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key.key)
            .bind(key.request_hash)
            .bind(&job.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !taken {
                tx.rollback().await?;
                return Ok(None);
            }
            let inserted: Option<RawJob> = bind_new_job!(sqlx::query_as(INSERT_JOB), job, now)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match inserted {
                Some(raw) => {
                    insert_callbacks!(&mut *tx, std::slice::from_ref(job), now);
                    InsertOutcome::Created(raw.try_into()?)
                }
                None => {
                    let dedup = job.payload.dedup_key();
                    let existing: Option<RawJob> = sqlx::query_as(ACTIVE_DUPLICATE)
                        .bind(&dedup)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(raw) = existing else {
                        tx.rollback().await?;
                        return Err(no_duplicate(job));
                    };
                    let row = JobRow::try_from(raw)?;
                    sqlx::query("UPDATE idempotency_keys SET job_id = $2 WHERE key = $1")
                        .bind(key.key)
                        .bind(&row.id)
                        .execute(&mut *tx)
                        .await?;
                    InsertOutcome::Existing(row)
                }
            };
            tx.commit().await?;
            outcome
        });
        Ok(Some(outcome))
    }
}
