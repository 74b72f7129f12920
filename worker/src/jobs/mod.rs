//! One file per job kind: its handler. The rest of a kind's facts (name,
//! queue, deduplication, checkpoints) are in `shared/src/jobs.rs`; the
//! kernel (`crate::kernel`) claims the row, calls [`run`] and records
//! what it returns.

pub mod drift;
pub mod maintenance;
pub mod predict;
pub mod retrain;
pub mod score;

use rpa_ml_shared::jobs::JobPayload;
use rpa_ml_shared::store::JobRow;

use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

/// Runs the handler of the job's kind.
pub async fn run(state: &WorkerState, job: &JobRow) -> Result<Outcome, JobError> {
    match &job.payload {
        JobPayload::Predict(p) => predict::run(state, job, p).await,
        JobPayload::Score(s) => score::run(state, job, s).await,
        JobPayload::Retrain(r) => retrain::run(state, job, r).await,
        JobPayload::Drift(d) => drift::run(state, job, d).await,
        JobPayload::Maintenance(m) => maintenance::run(state, job, m).await,
    }
}
