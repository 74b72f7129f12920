//! `GET /api/v1/jobs/{id}`: a job's status and result, optionally waiting
//! (`?wait=` seconds, bounded by `MAX_WAIT_SECS`) until it ends.

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
    Router::new().route("/api/v1/jobs/{id}", get(get_job))
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
    if ulid::Ulid::from_string(&id).is_err() {
        return Err(ApiError::not_found(format!(
            "no job {id:?} (job ids are ULIDs)"
        )));
    }
    let wait = match q.wait {
        None => Duration::ZERO,
        Some(w) if w.is_finite() && w >= 0.0 => {
            Duration::from_secs_f64(w).min(state.config.max_wait)
        }
        Some(w) => {
            return Err(ApiError::validation(format!(
                "wait must be a non-negative number of seconds, got {w}"
            )));
        }
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
            return Ok(Json(job_view(&job)).into_response());
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
