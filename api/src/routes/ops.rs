//! Operator endpoints (queues, jobs, workers) and the ops page.
//!
//! The page is static HTML, CSS and JS compiled into the binary; it holds no
//! secret and is served without the key. Everything it shows comes from the
//! JSON endpoints below, which sit behind the key like the rest of the API.

use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobKind, JobMessage, JobState, QueueName};
use rpa_ml_shared::store::{CancelOutcome, JobFilter, RetryOutcome};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::views::ops_view;

const PAGE_HTML: &str = include_str!("ops_page/page.html");
const PAGE_JS: &str = include_str!("ops_page/page.js");
const PAGE_CSS: &str = include_str!("ops_page/page.css");

/// Jobs per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// Routes that check the API key themselves (the page) or need none.
pub fn public() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ops") }))
        .route("/ops", get(page))
        .route("/ops/page.js", get(script))
        .route("/ops/page.css", get(style))
}

/// Routes behind the API key.
pub fn protected() -> Router<AppState> {
    Router::new()
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}/retry", post(retry))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/workers", get(workers))
}

// Static assets: no caching, so a new binary's page is seen at once; no
// third-party origin may load anything.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Comma-separated values of one enum; absent means no filter. An empty
/// value (`state=`, `state=a,,b`) is refused, as the document's
/// `minItems` and `enum` say.
fn parse_list<T: FromStr<Err = String>>(raw: Option<&str>, what: &str) -> Result<Vec<T>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|s| {
            if s.is_empty() {
                return Err(ApiError::validation(format!(
                    "`{what}` has an empty value; leave the parameter out for no filter"
                )));
            }
            T::from_str(s).map_err(|e| ApiError::validation(format!("`{what}`: {e}")))
        })
        .collect()
}

async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation(format!("bad query string: {e}")))?;
    let states = parse_list::<JobState>(q.state.as_deref(), "state")?;
    let kinds = parse_list::<JobKind>(q.kind.as_deref(), "kind")?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, got {raw:?}"
                )));
            }
        },
    };
    let since_id = match q.since.as_deref() {
        None => None,
        Some(raw) => {
            let t = DateTime::parse_from_rfc3339(raw)
                .map_err(|e| {
                    ApiError::validation(format!(
                        "since must be an RFC 3339 time such as 2026-11-26T12:00:00Z, got {raw:?}: {e}"
                    ))
                })?
                .with_timezone(&Utc);
            // Every job is younger than 1970: an earlier time filters nothing.
            let ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
            // The smallest ULID of that millisecond: ids sort by creation.
            Some(ulid::Ulid::from_parts(ms, 0).to_string())
        }
    };
    let before_id = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            ulid::Ulid::from_string(raw)
                .map_err(|_| {
                    ApiError::validation(format!(
                        "cursor {raw:?} is not one this API gave out (use next_cursor)"
                    ))
                })?
                .to_string(),
        ),
    };
    let filter = JobFilter {
        states,
        kinds,
        since_id,
        before_id,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
    };
    let mut jobs = state.store.list_jobs(&filter).await?;
    let more = jobs.len() as i64 > limit;
    jobs.truncate(limit as usize);
    let next_cursor = if more {
        jobs.last().map(|j| j.job.id.clone())
    } else {
        None
    };
    Ok(Json(json!({
        "jobs": jobs.iter().map(ops_view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

/// The id in a job path, or 404 (ids are ULIDs).
fn job_id(raw: &str) -> Result<String, ApiError> {
    ulid::Ulid::from_string(raw)
        .map(|_| raw.to_string())
        .map_err(|_| ApiError::not_found(format!("no job {raw:?} (job ids are ULIDs)")))
}

fn conflict(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidJobState, message)
}

/// Failed or dead jobs go back in the queue under the same id with a fresh
/// attempt budget; the last error moves to `previous_error` and `retries`
/// counts the operator's retries.
async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let task_id = rpa_ml_shared::queue::new_task_id();
    let job = match state.store.retry_job(&id, &task_id).await? {
        RetryOutcome::Retried(job) => job,
        RetryOutcome::NotFound => return Err(ApiError::not_found(format!("no job {id}"))),
        RetryOutcome::WrongState(s) => {
            return Err(conflict(format!(
                "job {id} is {s}; only failed or dead jobs can be retried"
            )));
        }
        RetryOutcome::Duplicate(s) => {
            return Err(ApiError::new(
                ErrorCode::DuplicateActive,
                format!(
                    "job {id} is {s}, but an identical job is already queued or running; wait for that one"
                ),
            ));
        }
    };
    let msg = JobMessage {
        job_id: job.job.id.clone(),
        kind: job.job.kind,
        request_id: job.job.request_id.clone(),
    };
    let mut body = ops_view(&job);
    if let Err(e) = state
        .queue
        .push_as(job.job.queue, &msg, None, &task_id)
        .await
    {
        // The row is queued: the reconciler pushes it once the queue answers.
        tracing::warn!(job.id = %id, error = %e, "retry push failed; the reconciler will push it");
        let _ = state.store.mark_push_failed(&id, &e.to_string()).await;
        body["queue_error"] = json!(format!("queued durably; delivery delayed: {e}"));
    }
    tracing::info!(job.id = %id, job.kind = %job.job.kind, retries = job.retries, "job retried by an operator");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/jobs/{id}"))],
        Json(body),
    )
        .into_response())
}

/// A queued job is cancelled at once and never runs (200); a running one is
/// asked to stop at its next checkpoint (202) and ends `cancelled`.
async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    if let Some(j) = state.store.get_job(&id).await?
        && j.state == JobState::Running
        && !j.kind.spec().checkpoints
    {
        return Err(ApiError::new(
            ErrorCode::NotCancellable,
            format!(
                "job {id} is a running {} job, which has no checkpoints; it ends on its own shortly",
                j.kind
            ),
        ));
    }
    match state.store.cancel_job(&id).await? {
        CancelOutcome::Cancelled(job) => {
            tracing::info!(job.id = %id, "queued job cancelled by an operator");
            Ok((StatusCode::OK, Json(ops_view(&job))).into_response())
        }
        CancelOutcome::Requested(job) => {
            tracing::info!(job.id = %id, "running job asked to stop by an operator");
            Ok((StatusCode::ACCEPTED, Json(ops_view(&job))).into_response())
        }
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no job {id}"))),
        CancelOutcome::Finished(s) => Err(conflict(format!(
            "job {id} is already {s}; only queued or running jobs can be cancelled"
        ))),
    }
}

/// Per queue: what the jobs table says (the truth) and what the transport
/// holds. A transport that does not answer is reported, not fatal.
async fn queues(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let counts = state.store.queue_counts().await?;
    let mut out = Vec::new();
    for q in QueueName::ALL {
        let c = counts.get(&q).cloned().unwrap_or_default();
        let age = c
            .oldest_waiting_since
            .map(|t| ((now - t).num_milliseconds().max(0) as f64) / 1000.0);
        let (transport, transport_error) = match state.queue.transport_counts(q).await {
            Ok(t) => (json!(t), Value::Null),
            Err(e) => (Value::Null, json!(e.to_string())),
        };
        out.push(json!({
            "queue": q,
            "waiting": c.waiting,
            "scheduled": c.scheduled,
            "running": c.running,
            "succeeded": c.succeeded,
            "failed": c.failed,
            "dead": c.dead,
            "cancelled": c.cancelled,
            "oldest_waiting_age_s": age,
            "throughput": {
                "finished_5m": c.finished_5m,
                "finished_1h": c.finished_1h,
                "failed_1h": c.failed_1h,
                "per_minute_5m": c.finished_5m as f64 / 5.0,
            },
            "transport": transport,
            "transport_error": transport_error,
        }));
    }
    let callbacks = state.store.callback_counts().await?;
    Ok(Json(json!({
        "queue_backend": state.queue.backend_name(),
        "store_backend": state.store.backend_name(),
        "checked_at": now,
        "queues": out,
        "callbacks": callbacks,
    })))
}

/// The worker roster: one row per worker process (names are unique per
/// process and restart), most recently seen first.
async fn workers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let dead_after = chrono::Duration::from_std(state.config.worker_dead_after)
        .unwrap_or_else(|_| chrono::Duration::seconds(10));
    let rows = state.store.list_workers(200).await?;
    let workers: Vec<Value> = rows
        .iter()
        .map(|w| {
            let alive = w.stopped_at.is_none() && now - w.last_seen <= dead_after;
            json!({
                "name": w.name,
                "host": w.host,
                "pid": w.pid,
                "queues": w.queues.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>(),
                "concurrency": w.concurrency,
                "version": w.version,
                "started_at": w.started_at,
                "last_seen": w.last_seen,
                "last_seen_age_s": ((now - w.last_seen).num_milliseconds().max(0) as f64) / 1000.0,
                "stopped_at": w.stopped_at,
                "alive": alive,
            })
        })
        .collect();
    Ok(Json(json!({"workers": workers})))
}
