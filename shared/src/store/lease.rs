//! The lease on a running job and the fence of every write its worker
//! makes: who holds the job ([`Holder`]: worker and attempt), the renewal
//! that keeps the lease live, and the checkpoint that asks whether the
//! attempt still holds it.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::jobs::JobState;

/// The guard of every write a worker makes to a job it runs: the row is
/// still running, under this worker, in this attempt (`$1` the id, `$2` the
/// worker, `$3` the attempt). A write that finds it otherwise changes
/// nothing: the reconciler or an operator took the job away (and maybe
/// another attempt holds it now), and the other holder's outcome stands.
macro_rules! held_by_worker {
    () => {
        " WHERE id = $1 AND worker = $2 AND attempts = $3 AND state = 'running'"
    };
}
pub(super) use held_by_worker;

/// Who runs a job: the worker that claimed it and the attempt its claim
/// counted. Every write a worker makes to a running job names its holder,
/// and only the current holder's writes land (fencing by attempt: a worker
/// that lost its lease cannot overwrite the attempt that replaced it, even
/// when both are the same process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    pub worker: &'a str,
    pub attempt: i32,
}

/// What [`Store::checkpoint`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    Continue,
    /// An operator asked the job to stop.
    CancelRequested,
    /// This attempt no longer holds the job (its lease ran out and the
    /// reconciler took it back, or it ended): nothing it still writes lands.
    NotHeld,
}

impl Store {
    /// Confirms that `holder` still runs the job: its lease now ends `lease`
    /// from now. False when the row is no longer held by that attempt (the
    /// reconciler took it back, or it ended): whatever that attempt still
    /// writes will be refused.
    pub async fn renew_lease(
        &self,
        id: &str,
        holder: Holder<'_>,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let n = exec!(
            self,
            concat!("UPDATE jobs SET lease_until = $4", held_by_worker!()),
            id,
            holder.worker,
            holder.attempt,
            lease_end(Utc::now(), lease),
        )?;
        Ok(n == 1)
    }

    /// What a running job finds at a checkpoint: asked to stop, no longer
    /// held by this attempt, or neither.
    pub async fn checkpoint(&self, id: &str, holder: Holder<'_>) -> Result<Checkpoint, StoreError> {
        /// cancel_requested_at, worker, attempts, state
        type Row = (Option<DateTime<Utc>>, Option<String>, i32, String);
        let row: Option<Row> = fetch!(
            self,
            fetch_optional,
            "SELECT cancel_requested_at, worker, attempts, state FROM jobs WHERE id = $1",
            id,
        )?;
        Ok(match row {
            Some((_, worker, attempts, state))
                if state != JobState::Running.as_str()
                    || worker.as_deref() != Some(holder.worker)
                    || attempts != holder.attempt =>
            {
                Checkpoint::NotHeld
            }
            None => Checkpoint::NotHeld,
            Some((Some(_), ..)) => Checkpoint::CancelRequested,
            Some((None, ..)) => Checkpoint::Continue,
        })
    }
}

/// When a lease of `lease` taken at `now` ends.
pub(super) fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(30))
}
