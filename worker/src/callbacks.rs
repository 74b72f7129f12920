//! Callback delivery: every worker process runs this loop. It claims due
//! callbacks of ended jobs from the outbox under a lease (two workers never
//! deliver one at once; a worker that dies mid-delivery gives it up when the
//! lease runs out, and the next claim takes it), POSTs the signed job view
//! (see `rpa_ml_shared::callback` for the headers), and records each attempt:
//! a 2xx delivers it; anything else is tried again after a doubling pause,
//! up to `CALLBACK_MAX_ATTEMPTS`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::callback::{
    self, ATTEMPT_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use rpa_ml_shared::job_view::job_view;
use rpa_ml_shared::metrics::{self, OutcomeLabels};
use rpa_ml_shared::store::{AttemptOutcome, CallbackRow};

use crate::state::WorkerState;

/// Callbacks one pass claims (and delivers concurrently).
const BATCH: i64 = 16;

/// Longest pause between two attempts, whatever the back-off says.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The pause after the `attempt`-th failed attempt: the base, doubled for
/// each earlier failure, at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    let doublings = attempt.saturating_sub(1).clamp(0, 30) as u32;
    base.saturating_mul(1u32 << doublings).min(MAX_BACKOFF)
}

pub async fn run_loop(state: Arc<WorkerState>, shutdown: CancellationToken) {
    let config = &state.config;
    // Redirects are not followed: one could lead to a host the list does
    // not allow.
    let client = match reqwest::Client::builder()
        .timeout(config.callback_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rpa-ml/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "callback client could not be built; callbacks are not delivered by this worker");
            return;
        }
    };
    let every = config.poll_interval.max(Duration::from_millis(200));
    // A delivery takes at most the timeout; the margin covers the writes.
    let lease = config.callback_timeout * 2 + Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let due = match state.store.claim_callbacks(&state.name, lease, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim callbacks; will try again");
                continue;
            }
        };
        // In flight when shutdown comes: finished (each is bounded by the
        // timeout), so no delivery is left half-recorded.
        futures::future::join_all(due.iter().map(|c| deliver(&state, &client, c))).await;
    }
}

/// One attempt at one claimed callback, recorded.
async fn deliver(state: &WorkerState, client: &reqwest::Client, c: &CallbackRow) {
    let config = &state.config;
    let attempt = c.attempts + 1;
    let outcome = match attempt_once(state, client, c, attempt).await {
        Ok(Attempt::Answered(status)) if (200..300).contains(&status) => {
            AttemptOutcome::Delivered { status }
        }
        Ok(Attempt::Answered(status)) => failed(
            config,
            attempt,
            Some(status),
            format!("the receiver answered {status}"),
        ),
        Ok(Attempt::NoAnswer(error)) => failed(config, attempt, None, error),
        Ok(Attempt::Refused(error)) => AttemptOutcome::Failed {
            status: None,
            error,
            retry_at: None,
        },
        Err(e) => {
            // The store did not answer: nothing was sent; the lease runs out
            // and a later pass tries again.
            tracing::warn!(callback.id = %c.id, job.id = %c.job_id, error = %e, "callback not attempted");
            return;
        }
    };
    let label = match &outcome {
        AttemptOutcome::Delivered { .. } => "delivered",
        AttemptOutcome::Failed {
            retry_at: Some(_), ..
        } => "retry",
        AttemptOutcome::Failed { retry_at: None, .. } => "failed",
    };
    match state
        .store
        .record_callback_attempt(&c.id, &state.name, outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(callback.id = %c.id, job.id = %c.job_id, "callback lease lost before its attempt was recorded");
        }
        Err(e) => {
            tracing::warn!(callback.id = %c.id, job.id = %c.job_id, error = %e, "callback attempt not recorded; it will be tried again");
        }
    }
    metrics::global()
        .callback_deliveries
        .get_or_create(&OutcomeLabels {
            outcome: label.into(),
        })
        .inc();
    tracing::info!(callback.id = %c.id, job.id = %c.job_id, attempt, outcome = label, "callback attempt");
}

/// A failed attempt: due again after the back-off, or given up after the
/// last one.
fn failed(
    config: &rpa_ml_shared::config::Config,
    attempt: i32,
    status: Option<i32>,
    error: String,
) -> AttemptOutcome {
    let give_up = attempt >= config.callback_max_attempts as i32;
    let retry_at = (!give_up).then(|| {
        Utc::now()
            + chrono::Duration::from_std(backoff(config.callback_backoff, attempt))
                .unwrap_or_else(|_| chrono::Duration::hours(1))
    });
    AttemptOutcome::Failed {
        status,
        // Bounded: an error text can quote what the receiver sent.
        error: error.chars().take(500).collect(),
        retry_at,
    }
}

enum Attempt {
    /// The receiver answered with this status.
    Answered(i32),
    /// No answer: connection refused, timeout, TLS trouble.
    NoAnswer(String),
    /// Not sent, and never will be: the host is no longer allowed, or the
    /// job is gone.
    Refused(String),
}

async fn attempt_once(
    state: &WorkerState,
    client: &reqwest::Client,
    c: &CallbackRow,
    attempt: i32,
) -> Result<Attempt, rpa_ml_shared::store::StoreError> {
    let config = &state.config;
    // Checked again: CALLBACK_ALLOWED_HOSTS may have changed since the job
    // was accepted.
    let url = match callback::check_url(config, &c.url) {
        Ok(url) => url,
        Err(e) => return Ok(Attempt::Refused(format!("not sent: {e}"))),
    };
    let Some(job) = state.store.get_job(&c.job_id).await? else {
        return Ok(Attempt::Refused(
            "not sent: the job no longer exists".into(),
        ));
    };
    let body = job_view(&job, Some(c)).to_string().into_bytes();
    let timestamp = Utc::now().timestamp();
    let signature = callback::signature(
        config.callback_secret.expose_secret().as_bytes(),
        timestamp,
        &body,
    );
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .header(DELIVERY_HEADER, &c.id)
        .header(ATTEMPT_HEADER, attempt.to_string())
        .body(body)
        .send()
        .await;
    Ok(match sent {
        Ok(response) => Attempt::Answered(i32::from(response.status().as_u16())),
        Err(e) => Attempt::NoAnswer(e.without_url().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::{MAX_BACKOFF, backoff};
    use std::time::Duration;

    #[test]
    fn the_pause_doubles_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), base * 2);
        assert_eq!(backoff(base, 4), base * 8);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(3600), 3), MAX_BACKOFF);
    }
}
