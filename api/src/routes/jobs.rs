//! `GET /api/v1/jobs/{id}`: a job's status and result, optionally waiting
//! (`?wait=` seconds, bounded by `MAX_WAIT_SECS`) until it ends; and
//! `GET /api/v1/jobs/{id}/events`, the same as a stream (`events.rs`).

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::job_view;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/events", get(super::events::job_events))
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<f64>,
}

async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation(format!("bad query string: {e}")))?;
    check_job_id(&id)?;
    let wait = match q.wait {
        None => Duration::ZERO,
        Some(w) => bounded_wait(w, state.config.max_wait).ok_or_else(|| {
            ApiError::validation(format!(
                "`wait` must be a non-negative number of seconds, got {w}"
            ))
        })?,
    };
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let job = state
            .store
            .get_job(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        if job.state.is_terminal() || Instant::now() >= deadline {
            let callback = state.store.job_callback(&job.id).await?;
            return Ok(Json(job_view(&job, callback.as_ref())).into_response());
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A job id that cannot exist is a 404, without asking the store.
pub(super) fn check_job_id(id: &str) -> Result<(), ApiError> {
    if ulid::Ulid::from_string(id).is_err() {
        return Err(ApiError::not_found(format!(
            "no job {id:?} (job ids are ULIDs)"
        )));
    }
    Ok(())
}

/// `?wait=` as a hold of at most `max`, or `None` for NaN, an infinity or a
/// negative number. Clamped before the `Duration` is built: building one
/// from 2^64 s or more panics.
fn bounded_wait(secs: f64, max: Duration) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs >= max.as_secs_f64() {
        return Some(max);
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::bounded_wait;

    #[test]
    fn wait_is_clamped_before_it_becomes_a_duration() {
        let max = Duration::from_secs(30);
        for huge in [1e20, f64::MAX, 18_446_744_073_709_551_616.0] {
            assert_eq!(bounded_wait(huge, max), Some(max), "{huge}");
        }
        assert_eq!(bounded_wait(2.5, max), Some(Duration::from_millis(2500)));
        assert_eq!(bounded_wait(0.0, max), Some(Duration::ZERO));
        assert_eq!(bounded_wait(-0.0, max), Some(Duration::ZERO));
        assert_eq!(bounded_wait(5e-324, max), Some(Duration::ZERO));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -1e20] {
            assert_eq!(bounded_wait(bad, max), None, "{bad}");
        }
    }
}
