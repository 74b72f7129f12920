//! The kernel of the worker: one queue message → claim the job's row, run
//! its handler (`crate::jobs`), record the outcome. Every kind goes through
//! here, so attempts, the lease, limits, metrics and the outcome write are
//! written once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument;

use rpa_ml_shared::jobs::JobMessage;
use rpa_ml_shared::metrics;
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{Claim, JobOutcome, JobRow, PredictionRow, StoreError};

use crate::lease::Lease;
use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

/// Entry point for one queue message. Errors returned here are those that
/// left the job row untouched (the store was unreachable before the claim;
/// apalis then redelivers the message) or an outcome the store would not
/// take for minutes (the lease then runs out and the reconciler takes the
/// job back).
pub async fn handle_message(state: Arc<WorkerState>, msg: JobMessage) -> Result<(), StoreError> {
    let span = tracing::info_span!("job", job.id = %msg.job_id, job.kind = %msg.kind,
        request_id = msg.request_id.as_deref().unwrap_or(""), worker = %state.name);
    async move {
        let claim = state
            .store
            .claim_job(&msg.job_id, &state.name, state.config.job_lease)
            .await?;
        let job = match claim {
            Claim::Claimed(job) => *job,
            // Running elsewhere (its holder renews the lease, or the
            // reconciler takes it back when that stops), ended, or unknown:
            // this message is a duplicate.
            Claim::NotClaimable(current) => {
                tracing::debug!(state = ?current, "message for a job that is not queued; dropped");
                return Ok(());
            }
        };
        // Confirmed for as long as this attempt is being run or recorded.
        let _lease = (!state.faults.no_lease).then(|| Lease::hold(state.clone(), &job));
        if job.attempts > job.max_attempts {
            let err = format!(
                "attempt limit reached ({} of {})",
                job.attempts - 1,
                job.max_attempts
            );
            write_outcome(&state, &job, JobOutcome::Dead { error: &err }).await?;
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
        let outcome = run_contained(&state, &job).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        record_outcome(&state, &job, outcome, elapsed_ms).await
    }
    .instrument(span)
    .await
}

/// Runs the job's handler as its own task, so a panic fails this job (a
/// bug: retrying would panic again) and its outcome is still recorded.
async fn run_contained(state: &Arc<WorkerState>, job: &JobRow) -> Result<Outcome, JobError> {
    let task = {
        let (state, job) = (state.clone(), job.clone());
        tokio::spawn(async move { crate::jobs::run(&state, &job).await })
    };
    // Dropping this future (the process stops) must not leave the handler
    // running with no one to record its outcome.
    let abort = task.abort_handle();
    let _abort = AbortOnDrop(abort);
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => {
            let err = format!("the worker panicked while running this job: {e}");
            tracing::error!(error = %err, "job panicked");
            Err(JobError::Permanent(err))
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a worker keeps trying to write an outcome the store does not
/// take (it is unreachable), and the longest pause between two tries.
const OUTCOME_RETRY_FOR: Duration = Duration::from_secs(300);
const OUTCOME_RETRY_MAX_PAUSE: Duration = Duration::from_secs(15);

/// Writes this attempt's outcome. A store that cannot be reached is tried
/// again with capped exponential back-off for up to [`OUTCOME_RETRY_FOR`]
/// (the lease is renewed meanwhile, so nobody takes the job back), instead
/// of leaving the row `running`; past that the error is returned, the
/// lease runs out and the reconciler takes the job back. False when the
/// row is no longer held by this attempt: the outcome is refused.
async fn write_outcome(
    state: &WorkerState,
    job: &JobRow,
    outcome: JobOutcome<'_>,
) -> Result<bool, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match state
            .store
            .set_outcome(&job.id, state.holder(job), outcome)
            .await
        {
            Ok(kept) => {
                if !kept {
                    tracing::warn!(
                        attempt = job.attempts,
                        outcome = %outcome.state(),
                        "outcome refused: this attempt no longer holds the job \
                         (its lease ran out and it was taken back, or an operator acted); dropped"
                    );
                }
                return Ok(kept);
            }
            Err(e) if e.is_transient() && started.elapsed() + pause < OUTCOME_RETRY_FOR => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "could not record the job's outcome; trying again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(OUTCOME_RETRY_MAX_PAUSE);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "could not record the job's outcome; giving up, the job goes back \
                     to the queue once its lease runs out"
                );
                return Err(e);
            }
        }
    }
}

async fn record_outcome(
    state: &WorkerState,
    job: &JobRow,
    outcome: Result<Outcome, JobError>,
    elapsed_ms: f64,
) -> Result<(), StoreError> {
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
            let (result, rows, scored) = match outcome {
                Outcome::Plain(v) => (v, Vec::new(), false),
                Outcome::WithPredictions(v, rows) => (v, rows, false),
                Outcome::Scored(v, rows) => (v, rows, true),
            };
            let success = if scored {
                JobOutcome::Scored {
                    result: &result,
                    forecasts: &rows,
                }
            } else {
                JobOutcome::Succeeded {
                    result: &result,
                    predictions: &rows,
                }
            };
            if write_outcome(state, job, success).await? {
                counted("succeeded");
                count_predictions(&rows);
                tracing::info!(elapsed_ms, "job succeeded");
            }
        }
        Err(JobError::NotHeld(e)) => {
            tracing::warn!(reason = %e, elapsed_ms, "job stopped: taken back from this attempt; nothing written");
        }
        Err(JobError::Cancelled(e)) => {
            if write_outcome(state, job, JobOutcome::Cancelled { error: &e }).await? {
                counted("cancelled");
                tracing::info!(reason = %e, elapsed_ms, "job cancelled");
            }
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
            if write_outcome(state, job, outcome).await? {
                push_again(state, job, run_at).await?;
            }
        }
        Err(JobError::Permanent(e)) => {
            if write_outcome(state, job, JobOutcome::Failed { error: &e }).await? {
                counted("failed");
                tracing::warn!(error = %e, elapsed_ms, "job failed permanently");
            }
        }
        Err(JobError::Transient(e)) if job.attempts >= job.max_attempts => {
            let e = format!(
                "{e} (attempt {} of {}; giving up)",
                job.attempts, job.max_attempts
            );
            if write_outcome(state, job, JobOutcome::Dead { error: &e }).await? {
                counted("dead");
                tracing::warn!(error = %e, "job is dead");
            }
        }
        Err(JobError::Transient(e)) => {
            let delay = backoff(job.attempts);
            let run_at = Utc::now()
                + chrono::Duration::from_std(delay)
                    .unwrap_or_else(|_| chrono::Duration::seconds(1));
            let msg = format!(
                "{e} (attempt {} of {}; retrying)",
                job.attempts, job.max_attempts
            );
            let retry = JobOutcome::Retry {
                error: &msg,
                run_at,
            };
            if write_outcome(state, job, retry).await? {
                counted("retry");
                tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "job failed; will retry");
                // If this push fails the reconciler finds the queued row
                // without a message and pushes it again.
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
