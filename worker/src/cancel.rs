//! Cancellation checkpoints. An operator's cancel of a running job is a
//! mark on its row; the job reads it at the points where stopping leaves
//! nothing half done (between prediction batches, between retrain stages)
//! and ends `cancelled`. A job requeued after a transient failure with the
//! mark set stops at its first checkpoint. An attempt that was taken back
//! (its lease ran out) stops at its next checkpoint too, writing nothing.

use crate::outcome::JobError;
use crate::state::WorkerState;
use rpa_ml_shared::store::{Checkpoint, JobRow};

/// Err([`JobError::Cancelled`]) when the job was asked to stop, and
/// Err([`JobError::NotHeld`]) when this attempt no longer holds it (it was
/// taken back and runs elsewhere: going on would only do the work twice).
pub async fn checkpoint(state: &WorkerState, job: &JobRow, at: &str) -> Result<(), JobError> {
    match state.store.checkpoint(&job.id, state.holder(job)).await? {
        Checkpoint::Continue => Ok(()),
        Checkpoint::CancelRequested => Err(JobError::Cancelled(format!(
            "cancelled by an operator; stopped {at}"
        ))),
        Checkpoint::NotHeld => Err(JobError::NotHeld(format!(
            "this attempt no longer holds the job; stopped {at}"
        ))),
    }
}

/// The first checkpoint. The row the claim returned is fresh, so while the
/// job is younger than [`FRESH`] its mark is read from there (no extra
/// round trip on the hot path); after that (a slow start) the store is
/// asked. A job requeued with the mark set stops here either way.
pub async fn at_start(state: &WorkerState, job: &JobRow) -> Result<(), JobError> {
    let at = "before starting";
    let age = job
        .started_at
        .map(|t| chrono::Utc::now() - t)
        .unwrap_or_else(chrono::TimeDelta::zero);
    if job.cancel_requested {
        return Err(JobError::Cancelled(format!(
            "cancelled by an operator; stopped {at}"
        )));
    }
    if age > FRESH {
        return checkpoint(state, job, at).await;
    }
    Ok(())
}

/// How long the claimed row counts as the current word on cancellation.
const FRESH: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);
