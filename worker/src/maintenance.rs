//! The `maintenance` job: result retention, model retention, reconciliation.

use rpa_ml_shared::jobs::MaintenanceJob;
use rpa_ml_shared::store::JobRow;

use crate::WorkerState;
use crate::execute::{JobError, Outcome};

pub async fn run(
    _state: &WorkerState,
    _job: &JobRow,
    _m: &MaintenanceJob,
) -> Result<Outcome, JobError> {
    Err(JobError::Permanent(
        "maintenance is being built (issue 4)".into(),
    ))
}
