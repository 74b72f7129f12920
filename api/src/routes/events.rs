//! `GET /api/v1/jobs/{id}/events`: a job as Server-Sent Events, for a
//! browser or a backend that prefers a stream to polling.
//!
//! - `progress`: the job's status, stage and progress, first as they are
//!   when the stream opens, then at each change;
//! - `end`: the job view (as `GET /api/v1/jobs/{id}` answers it) once the
//!   job has ended; the stream then closes;
//! - `timeout`: `EVENTS_MAX_SECS` passed first; the stream closes and the
//!   client reconnects or polls;
//! - `error`: the ML store could not be read, or the job was removed.
//!
//! Each stream reads the job row every [`POLL`]; at most
//! `EVENTS_MAX_STREAMS` are open per api process (503 `too_many_streams`
//! past it).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use rpa_ml_shared::jobs::JobState;
use rpa_ml_shared::store::JobRow;

use super::jobs::check_job_id;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::views::job_view;

/// How often an open stream reads its job: a progress change reaches the
/// client at most this late.
pub const POLL: Duration = Duration::from_millis(250);

pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_job_id(&id)?;
    let permit = state
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "{} event streams are open on this api process (EVENTS_MAX_STREAMS); \
                     poll GET /api/v1/jobs/{id} instead or try again shortly",
                    state.config.events_max_streams
                ),
            )
        })?;
    let job = state
        .store
        .get_job(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let watch = Watch {
        id,
        deadline: Instant::now() + state.config.events_max,
        state,
        next: Some(job),
        last: None,
        done: false,
        _permit: permit,
    };
    Ok(Sse::new(events(watch))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One open stream.
struct Watch {
    id: String,
    state: AppState,
    deadline: Instant,
    /// The row to look at next (the one read when the stream opened).
    next: Option<JobRow>,
    /// Status, stage and progress last sent.
    last: Option<(JobState, Option<String>, f64)>,
    done: bool,
    /// Held while the stream is open; dropped with it, when it ends or the
    /// client goes away.
    _permit: OwnedSemaphorePermit,
}

fn events(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(watch, |mut w| async move {
        let event = w.next_event().await?;
        Some((Ok(event), w))
    })
}

impl Watch {
    /// The next event to send, waiting for a change; `None` once the stream
    /// is over.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            let job = match self.next.take() {
                Some(job) => job,
                None => {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.done = true;
                        return Some(self.timeout());
                    }
                    tokio::time::sleep(POLL.min(left)).await;
                    let id = self.id.clone();
                    match self.state.store.get_job(&id).await {
                        Ok(Some(job)) => job,
                        Ok(None) => {
                            self.done = true;
                            return Some(error_event(&id, "the job was removed"));
                        }
                        Err(e) => {
                            tracing::warn!(job.id = %id, error = %e, "event stream: could not read the job");
                            self.done = true;
                            return Some(error_event(
                                &id,
                                "the ML store is unavailable; reconnect or poll shortly",
                            ));
                        }
                    }
                }
            };
            if job.state.is_terminal() {
                self.done = true;
                let callback = match self.state.store.job_callback(&job.id).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(job.id = %job.id, error = %e, "event stream: could not read the callback");
                        None
                    }
                };
                return Some(
                    Event::default()
                        .event("end")
                        .data(job_view(&job, callback.as_ref()).to_string()),
                );
            }
            let now = (job.state, job.stage.clone(), job.progress);
            let changed = self.last.as_ref() != Some(&now);
            self.last = Some(now);
            if changed {
                return Some(progress_event(&job));
            }
        }
    }

    fn timeout(&self) -> Event {
        Event::default().event("timeout").data(
            json!({
                "job_id": self.id,
                "message": format!(
                    "the stream reached EVENTS_MAX_SECS ({} s); reconnect, or poll GET /api/v1/jobs/{}",
                    self.state.config.events_max.as_secs(),
                    self.id
                ),
            })
            .to_string(),
        )
    }
}

fn progress_event(job: &JobRow) -> Event {
    Event::default().event("progress").data(
        json!({
            "job_id": job.id,
            "status": job.state,
            "stage": job.stage,
            "progress": job.progress,
            "attempts": job.attempts,
            "updated_at": job.updated_at,
        })
        .to_string(),
    )
}

fn error_event(id: &str, message: &str) -> Event {
    Event::default()
        .event("error")
        .data(json!({"job_id": id, "message": message}).to_string())
}
