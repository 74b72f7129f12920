//! What a job handler returns: a result to store, or why it did not succeed.
//!
//! Failures are sorted into permanent (the job can never succeed: bad
//! payload, no model, too little data), which fail the job at once, and
//! transient (a database or the queue went away), which hand the job back
//! with back-off until the attempt limit, after which it is `dead`.

use serde_json::Value;

use rpa_ml_shared::backend::BackendError;
use rpa_ml_shared::store::{PredictionRow, StoreError};

use crate::models::ModelError;

/// Why a job did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
    /// An operator cancelled it; seen at a checkpoint.
    #[error("{0}")]
    Cancelled(String),
    /// This attempt no longer holds the job; seen at a checkpoint. Nothing
    /// is written: the attempt that holds it now records the outcome.
    #[error("{0}")]
    NotHeld(String),
    /// Not now: it waits for another job (the stage says which) and runs
    /// again after `delay`, its attempt given back.
    #[error("{stage}")]
    Deferred {
        stage: String,
        delay: std::time::Duration,
    },
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            JobError::Transient(e.to_string())
        } else {
            JobError::Permanent(e.to_string())
        }
    }
}

impl From<BackendError> for JobError {
    fn from(e: BackendError) -> Self {
        if e.is_transient() {
            JobError::Transient(format!("backend database: {e}"))
        } else {
            JobError::Permanent(format!("backend database: {e}"))
        }
    }
}

impl From<ModelError> for JobError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Store(s) => s.into(),
            other => JobError::Permanent(other.to_string()),
        }
    }
}

/// A successful job's result, and the per-project rows stored with it.
pub enum Outcome {
    Plain(Value),
    WithPredictions(Value, Vec<PredictionRow>),
    /// A scoring run: its rows become the latest forecasts only.
    Scored(Value, Vec<PredictionRow>),
}
