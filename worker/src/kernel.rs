//! The kernel of the worker: one queue message → claim the job's row, run
//! its handler (`crate::jobs`), record the outcome. Every kind goes through
//! here, so attempts, limits, metrics and the outcome write are written once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument;

use rpa_ml_shared::jobs::JobMessage;
use rpa_ml_shared::metrics;
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{Claim, JobOutcome, JobRow, PredictionRow, StoreError};

use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

/// Entry point for one queue message. Errors returned here are only those
/// that left the job row untouched (the store was unreachable before the
/// claim); apalis then redelivers the message.
pub async fn handle_message(state: Arc<WorkerState>, msg: JobMessage) -> Result<(), StoreError> {
    let span = tracing::info_span!("job", job.id = %msg.job_id, job.kind = %msg.kind,
        request_id = msg.request_id.as_deref().unwrap_or(""), worker = %state.name);
    async move {
        let job = match state.store.claim_job(&msg.job_id, &state.name).await? {
            Claim::Claimed(job) => job,
            Claim::NotClaimable(current) => {
                tracing::debug!(state = ?current, "message for a job that is not queued; dropped");
                return Ok(());
            }
        };
        if job.attempts > job.max_attempts {
            let err = format!(
                "attempt limit reached ({} of {})",
                job.attempts - 1,
                job.max_attempts
            );
            state
                .store
                .set_outcome(&job.id, &state.name, JobOutcome::Dead { error: &err })
                .await?;
            return Ok(());
        }
        let started = Instant::now();
        let waited = (Utc::now() - job.run_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::global()
            .job_wait
            .get_or_create(&metrics::KindLabels {
                kind: job.kind.as_str().into(),
            })
            .observe(waited);
        tracing::info!(attempt = job.attempts, "job started");
        if state.faults.abort {
            tracing::error!("RPA_ML_FAULT_ABORT: aborting the process");
            std::process::abort();
        }
        if let Some(d) = state.faults.delay {
            tokio::time::sleep(d).await;
        }
        let outcome = crate::jobs::run(&state, &job).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        record_outcome(&state, &job, outcome, elapsed_ms).await
    }
    .instrument(span)
    .await
}

async fn record_outcome(
    state: &WorkerState,
    job: &JobRow,
    outcome: Result<Outcome, JobError>,
    elapsed_ms: f64,
) -> Result<(), StoreError> {
    let store = &state.store;
    let counted = |outcome: &str| {
        let labels = metrics::JobLabels {
            kind: job.kind.as_str().into(),
            state: outcome.into(),
        };
        let m = metrics::global();
        m.jobs_finished.get_or_create(&labels).inc();
        m.job_duration
            .get_or_create(&labels)
            .observe(elapsed_ms / 1000.0);
    };
    match outcome {
        Ok(outcome) => {
            let (result, rows) = match outcome {
                Outcome::Plain(v) => (v, Vec::new()),
                Outcome::WithPredictions(v, rows) => (v, rows),
            };
            let kept = store
                .set_outcome(
                    &job.id,
                    &state.name,
                    JobOutcome::Succeeded {
                        result: &result,
                        predictions: &rows,
                    },
                )
                .await?;
            if kept {
                counted("succeeded");
                count_predictions(&rows);
                tracing::info!(elapsed_ms, "job succeeded");
            } else {
                tracing::warn!("job was taken over while running; this outcome is dropped");
            }
        }
        Err(JobError::Cancelled(e)) => {
            counted("cancelled");
            tracing::info!(reason = %e, elapsed_ms, "job cancelled");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Cancelled { error: &e })
                .await?;
        }
        Err(JobError::Deferred { stage, delay }) => {
            let run_at = Utc::now()
                + chrono::Duration::from_std(delay)
                    .unwrap_or_else(|_| chrono::Duration::seconds(1));
            counted("deferred");
            tracing::info!(%stage, retry_in_ms = delay.as_millis() as u64, "job deferred");
            let outcome = JobOutcome::Deferred {
                stage: &stage,
                run_at,
            };
            if store.set_outcome(&job.id, &state.name, outcome).await? {
                push_again(state, job, run_at).await?;
            }
        }
        Err(JobError::Permanent(e)) => {
            counted("failed");
            tracing::warn!(error = %e, elapsed_ms, "job failed permanently");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Failed { error: &e })
                .await?;
        }
        Err(JobError::Transient(e)) if job.attempts >= job.max_attempts => {
            let e = format!(
                "{e} (attempt {} of {}; giving up)",
                job.attempts, job.max_attempts
            );
            counted("dead");
            tracing::warn!(error = %e, "job is dead");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Dead { error: &e })
                .await?;
        }
        Err(JobError::Transient(e)) => {
            let delay = backoff(job.attempts);
            let run_at = Utc::now()
                + chrono::Duration::from_std(delay)
                    .unwrap_or_else(|_| chrono::Duration::seconds(1));
            counted("retry");
            tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "job failed; will retry");
            let msg = format!(
                "{e} (attempt {} of {}; retrying)",
                job.attempts, job.max_attempts
            );
            if store
                .set_outcome(
                    &job.id,
                    &state.name,
                    JobOutcome::Retry {
                        error: &msg,
                        run_at,
                    },
                )
                .await?
            {
                push_again(state, job, run_at).await?;
            }
        }
    }
    Ok(())
}

/// Pushes the message of a job just put back in the queue, due at `run_at`.
/// If this push fails the reconciler finds the queued row without a
/// message and pushes it again.
async fn push_again(
    state: &WorkerState,
    job: &JobRow,
    run_at: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    let message = JobMessage {
        job_id: job.id.clone(),
        kind: job.kind,
        request_id: job.request_id.clone(),
    };
    match state.queue.push(job.queue, &message, Some(run_at)).await {
        Ok(task_id) => state.store.mark_pushed(&job.id, &task_id).await,
        Err(e) => state.store.mark_push_failed(&job.id, &e.to_string()).await,
    }
}

fn count_predictions(rows: &[PredictionRow]) {
    let m = metrics::global();
    let mut counts: BTreeMap<(Target, bool), u64> = BTreeMap::new();
    for r in rows {
        *counts.entry((r.target, r.error.is_none())).or_default() += 1;
    }
    for ((target, ok), n) in counts {
        m.predictions
            .get_or_create(&metrics::PredictionLabels {
                target: target.as_str().into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .inc_by(n);
    }
}

/// 2 s, 4 s, 8 s ... capped at 5 minutes.
fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 8) as u32;
    Duration::from_secs((1u64 << exp).min(300))
}
