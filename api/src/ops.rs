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
use rpa_ml_shared::store::{CancelOutcome, JobFilter, OpsJob, RetryOutcome};

use crate::AppState;
use crate::error::ApiError;
use crate::routes::job_view;

const PAGE_HTML: &str = include_str!("ops/page.html");
const PAGE_JS: &str = include_str!("ops/page.js");
const PAGE_CSS: &str = include_str!("ops/page.css");

/// Jobs per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

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

/// A job in ops listings: the status view (without the result, which can be
/// large; `GET /api/v1/jobs/{id}` has it) plus what ops actions left.
fn ops_view(j: &OpsJob) -> Value {
    let mut v = job_view(&j.job);
    if let Value::Object(m) = &mut v {
        m.remove("result");
        m.insert("has_result".into(), json!(j.job.result.is_some()));
        m.insert("retries".into(), json!(j.retries));
        m.insert("previous_error".into(), json!(j.previous_error));
        m.insert("cancel_requested_at".into(), json!(j.cancel_requested_at));
        m.insert("run_at".into(), json!(j.job.run_at));
        m.insert("worker".into(), json!(j.job.worker));
    }
    v
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

/// Comma-separated values of one enum; empty means no filter.
fn parse_list<T: FromStr<Err = String>>(raw: Option<&str>, what: &str) -> Result<Vec<T>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| T::from_str(s).map_err(|e| ApiError::validation(format!("{what}: {e}"))))
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
            let ms = u64::try_from(t.timestamp_millis())
                .map_err(|_| ApiError::validation("since must not be before 1970"))?;
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
    ApiError::new(StatusCode::CONFLICT, "invalid_job_state", message)
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
                StatusCode::CONFLICT,
                "duplicate_active",
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
        && matches!(j.kind, JobKind::Drift | JobKind::Maintenance)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
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
    Ok(Json(json!({
        "queue_backend": state.queue.backend_name(),
        "store_backend": state.store.backend_name(),
        "checked_at": now,
        "queues": out,
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

/// This module's part of the OpenAPI document (merged by `openapi.rs`).
pub fn openapi_paths() -> Value {
    use crate::openapi::error_response;
    let security = json!([{"bearer": []}, {"apiKey": []}]);
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let html = |summary: &str, ty: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": ty}}}});
    let job_list = json!({"type": "object", "required": ["jobs", "next_cursor"], "properties": {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"}}});
    json!({
        "/": {"get": {"summary": "Redirects to the ops page", "responses": {"307": {"description": "to /ops"}}}},
        "/ops": html("Ops page: queues, jobs, workers, models, drift (static; its data calls need the API key)", "HTML"),
        "/ops/page.js": html("Ops page script", "JavaScript"),
        "/ops/page.css": html("Ops page style sheet", "CSS"),
        "/api/v1/queues": {"get": {
            "summary": "Per queue: waiting, scheduled, running, failed, dead, cancelled, oldest waiting age, throughput (jobs table) and the transport's own counts",
            "security": security,
            "responses": {"200": {"description": "one entry per queue"}, "401": error_response("Missing or wrong API key"),
                "503": error_response("The ML store is unavailable")}
        }},
        "/api/v1/jobs": {"get": {
            "summary": "Jobs, newest first, filtered and paged by cursor (without results; GET /api/v1/jobs/{id} has them)",
            "security": security,
            "parameters": [
                {"name": "state", "in": "query", "schema": {"type": "string"}, "description": "comma-separated: queued, running, succeeded, failed, dead, cancelled"},
                {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "comma-separated: predict, retrain, drift, maintenance"},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "only jobs created at or after this RFC 3339 time"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"}
            ],
            "responses": {"200": {"description": "a page of jobs", "content": {"application/json": {"schema": job_list}}},
                "400": error_response("Unknown state or kind, bad since, limit or cursor"),
                "401": error_response("Missing or wrong API key")}
        }},
        "/api/v1/jobs/{id}/retry": {"post": {
            "summary": "Put a failed or dead job back in the queue: same id, fresh attempt budget, last error kept as previous_error, retries counted",
            "security": security,
            "parameters": [id.clone()],
            "responses": {"202": {"description": "queued again", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "401": error_response("Missing or wrong API key"),
                "404": error_response("No such job"),
                "409": error_response("The job is not failed or dead (the message names its state), or an identical job is active")}
        }},
        "/api/v1/jobs/{id}/cancel": {"post": {
            "summary": "Cancel a job: a queued one never runs; a running predict or retrain stops at its next checkpoint and ends cancelled",
            "security": security,
            "parameters": [id],
            "responses": {"200": {"description": "was queued; now cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "202": {"description": "running; will stop at its next checkpoint", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "401": error_response("Missing or wrong API key"),
                "404": error_response("No such job"),
                "409": error_response("Already finished, or a running job without checkpoints (drift, maintenance)")}
        }},
        "/api/v1/workers": {"get": {
            "summary": "Worker processes: name, host, pid, queues, concurrency, version, started_at, last heartbeat, alive",
            "security": security,
            "responses": {"200": {"description": "the roster, most recently seen first"}, "401": error_response("Missing or wrong API key")}
        }},
    })
}
