//! The callback outbox: one row per job accepted with a `callback_url`,
//! written with the job (see the INSERTs in `jobs.rs` and
//! `idempotency.rs`), claimed under a lease once the job has ended, and
//! marked with each attempt's outcome.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lease::lease_end;
use super::text::storable;
use super::{Store, StoreError, parse};

listed_enum! {
    /// Where a callback stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum CallbackState {
        /// Not delivered yet: the job is still active, or a delivery is due
        /// (again, after a failed attempt).
        Pending,
        /// A delivery was answered with a 2xx.
        Delivered,
        /// Attempts exhausted, or the host is no longer allowed.
        Failed,
    }
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for CallbackState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown callback state {s:?}"))
    }
}

/// A job's callback as stored.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRow {
    /// The delivery id (`X-RPA-ML-Delivery`).
    pub id: String,
    pub job_id: String,
    pub url: String,
    pub state: CallbackState,
    pub attempts: i32,
    /// The HTTP status of the last attempt, if it got an answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RawCallback {
    id: String,
    job_id: String,
    url: String,
    state: String,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    next_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawCallback> for CallbackRow {
    type Error = StoreError;
    fn try_from(r: RawCallback) -> Result<Self, StoreError> {
        Ok(CallbackRow {
            state: parse(&r.state)?,
            id: r.id,
            job_id: r.job_id,
            url: r.url,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            next_at: r.next_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            delivered_at: r.delivered_at,
        })
    }
}

macro_rules! callback_columns {
    () => {
        "id, job_id, url, state, attempts, last_status, last_error, next_at, created_at, \
         updated_at, delivered_at"
    };
}

/// One pending callback row per VALUES row: `($1 id, $2 job_id, $3 url,
/// $4 now)`; used with `values_rows` for several.
pub(super) const CALLBACK_VALUES: &str = "($1, $2, $3, 'pending', 0, $4, $4, $4)";

/// The INSERT a VALUES list of [`CALLBACK_VALUES`] follows.
pub(super) const INSERT_CALLBACKS: &str = "INSERT INTO job_callbacks \
     (id, job_id, url, state, attempts, next_at, created_at, updated_at) VALUES ";

/// How one delivery attempt went, as the worker reports it.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// Answered 2xx.
    Delivered { status: i32 },
    /// Another status, or no answer; due again at `retry_at`, or, when
    /// `None`, given up (attempts exhausted or the URL no longer allowed).
    Failed {
        status: Option<i32>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Callbacks by state, for the ops page and `/metrics`.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct CallbackCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

impl Store {
    /// The callback of job `job_id`, if it was given one.
    pub async fn job_callback(&self, job_id: &str) -> Result<Option<CallbackRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            callback_columns!(),
            " FROM job_callbacks WHERE job_id = $1"
        );
        let raw: Option<RawCallback> = fetch!(self, fetch_optional, sql, job_id)?;
        raw.map(CallbackRow::try_from).transpose()
    }

    /// Takes up to `limit` callbacks that are due and whose job has ended,
    /// leasing them to `owner` for `lease`: until it runs out, nobody else
    /// takes them. The outer conditions are checked again on each row as
    /// it is updated, so of two concurrent claims only one gets a row.
    pub async fn claim_callbacks(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let sql = concat!(
            "UPDATE job_callbacks SET lease_owner = $1, lease_until = $2, updated_at = $3 \
             WHERE id IN (SELECT c.id FROM job_callbacks c JOIN jobs j ON j.id = c.job_id \
                 WHERE c.state = 'pending' AND c.next_at <= $3 \
                 AND (c.lease_until IS NULL OR c.lease_until < $3) \
                 AND j.state IN ('succeeded', 'failed', 'dead', 'cancelled') \
                 ORDER BY c.next_at LIMIT $4) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING ",
            callback_columns!()
        );
        let now = Utc::now();
        let raws: Vec<RawCallback> = fetch!(
            self,
            fetch_all,
            sql,
            owner,
            lease_end(now, lease),
            now,
            limit
        )?;
        raws.into_iter().map(CallbackRow::try_from).collect()
    }

    /// Records one attempt on a callback `owner` holds and releases it.
    /// False when the lease was lost meanwhile (another worker holds it
    /// now): nothing is written.
    pub async fn record_callback_attempt(
        &self,
        id: &str,
        owner: &str,
        outcome: AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let n = match outcome {
            AttemptOutcome::Delivered { status } => exec!(
                self,
                "UPDATE job_callbacks SET state = 'delivered', attempts = attempts + 1, \
                 last_status = $3, last_error = NULL, delivered_at = $4, updated_at = $4, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
                id,
                owner,
                status,
                now,
            )?,
            AttemptOutcome::Failed {
                status,
                error,
                retry_at,
            } => {
                let (state, next_at) = match retry_at {
                    Some(at) => (CallbackState::Pending, at),
                    None => (CallbackState::Failed, now),
                };
                exec!(
                    self,
                    "UPDATE job_callbacks SET state = $5, attempts = attempts + 1, \
                     last_status = $3, last_error = $6, next_at = $7, updated_at = $4, \
                     lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
                    id,
                    owner,
                    status,
                    now,
                    state.as_str(),
                    storable(&error),
                    next_at,
                )?
            }
        };
        Ok(n == 1)
    }

    /// How many callbacks are in each state.
    pub async fn callback_counts(&self) -> Result<CallbackCounts, StoreError> {
        let rows: Vec<(String, i64)> = fetch!(
            self,
            fetch_all,
            "SELECT state, COUNT(*) FROM job_callbacks GROUP BY state"
        )?;
        let mut c = CallbackCounts::default();
        for (state, n) in rows {
            match parse::<CallbackState>(&state)? {
                CallbackState::Pending => c.pending = n,
                CallbackState::Delivered => c.delivered = n,
                CallbackState::Failed => c.failed = n,
            }
        }
        Ok(c)
    }
}
