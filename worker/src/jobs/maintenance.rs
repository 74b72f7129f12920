//! The `maintenance` job: result retention, model retention, one
//! reconciliation sweep and one queue retention sweep. Each step is independent; one that fails is
//! reported and the others still run, and the job fails (to be retried)
//! only if a step could not reach the store.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use rpa_ml_shared::jobs::MaintenanceJob;
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{JobRow, RetentionCutoffs};

use crate::models::prune;
use crate::outcome::{JobError, Outcome};
use crate::reconcile::reconcile_once;
use crate::state::WorkerState;

pub async fn run(
    state: &WorkerState,
    job: &JobRow,
    m: &MaintenanceJob,
) -> Result<Outcome, JobError> {
    let config = &state.config;
    let now = Utc::now();
    let days = |d: u32| now - Duration::days(i64::from(d));
    let cutoffs = RetentionCutoffs {
        finished: days(config.job_retention_days),
        failed: days(config.failed_job_retention_days),
        predictions: days(config.prediction_retention_days),
        ticks: days(config.schedule_tick_ttl_days),
        // A worker silent this long is not coming back under that name.
        workers: days(config.failed_job_retention_days),
        idempotency_keys: now - Duration::hours(i64::from(config.idempotency_retention_hours)),
    };
    let mut errors: Vec<String> = Vec::new();

    let _ = state
        .store
        .set_progress(&job.id, state.holder(job), "retention", 0.1)
        .await;
    let purged = match state.store.purge_expired(&cutoffs).await {
        Ok(p) => json!(p),
        Err(e) => {
            errors.push(format!("result retention: {e}"));
            Value::Null
        }
    };

    let _ = state
        .store
        .set_progress(&job.id, state.holder(job), "model retention", 0.4)
        .await;
    let mut models = BTreeMap::new();
    for target in Target::ALL {
        match prune(&state.store, target, config.model_retention).await {
            Ok(removed) => {
                models.insert(target.as_str(), json!(removed));
            }
            Err(e) => errors.push(format!("model retention for {target}: {e}")),
        }
    }

    let _ = state
        .store
        .set_progress(&job.id, state.holder(job), "reconciling", 0.7)
        .await;
    let reconciled = match reconcile_once(state).await {
        Ok(r) => json!(r),
        Err(e) => {
            errors.push(format!("reconciliation: {e:#}"));
            Value::Null
        }
    };

    // Nothing that needs the store worked: most likely it is away.
    let store_away = errors.len() == 3;
    let _ = state
        .store
        .set_progress(&job.id, state.holder(job), "queue retention", 0.9)
        .await;
    let queue_trimmed = match crate::queue_retention::sweep(state).await {
        Ok(t) => json!(t),
        Err(e) => {
            errors.push(format!("queue retention: {e}"));
            Value::Null
        }
    };

    tracing::info!(purged = %purged, models = ?models, reconciled = %reconciled, queue_trimmed = %queue_trimmed, "maintenance pass done");
    if store_away {
        // Try again later.
        return Err(JobError::Transient(errors.join("; ")));
    }
    Ok(Outcome::Plain(json!({
        "reason": m.reason,
        "retention": {
            "finished_before": cutoffs.finished,
            "failed_before": cutoffs.failed,
            "predictions_before": cutoffs.predictions,
            "removed": purged,
        },
        "models_removed": models,
        "model_retention": config.model_retention,
        "reconciled": reconciled,
        "queue_retention_secs": config.redis_retention.as_secs(),
        "queue_removed": queue_trimmed,
        "errors": errors,
    })))
}
