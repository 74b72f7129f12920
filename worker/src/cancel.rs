//! Cancellation checkpoints. An operator's cancel of a running job is a
//! mark on its row; the job reads it at the points where stopping leaves
//! nothing half done (between prediction batches, between retrain stages)
//! and ends `cancelled`. A job requeued after a transient failure with the
//! mark set stops at its first checkpoint.

use crate::WorkerState;
use crate::execute::JobError;
use rpa_ml_shared::store::JobRow;

/// Err([`JobError::Cancelled`]) when the job was asked to stop.
pub async fn checkpoint(state: &WorkerState, job: &JobRow, at: &str) -> Result<(), JobError> {
    if state.store.cancel_requested(&job.id).await? {
        return Err(JobError::Cancelled(format!(
            "cancelled by an operator; stopped {at}"
        )));
    }
    Ok(())
}
