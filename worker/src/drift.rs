//! The `drift` job: per-feature shift of recent projects against each
//! production model's training reference, and realised performance.

use rpa_ml_shared::jobs::DriftJob;
use rpa_ml_shared::store::JobRow;

use crate::WorkerState;
use crate::execute::{JobError, Outcome};

pub async fn run(_state: &WorkerState, _job: &JobRow, _d: &DriftJob) -> Result<Outcome, JobError> {
    Err(JobError::Permanent(
        "drift checks are being built (issue 4)".into(),
    ))
}
