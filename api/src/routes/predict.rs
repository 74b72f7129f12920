//! Accepting jobs: `POST /api/v1/predict`, one predict route per target
//! (`/api/v1/predict/{target.route_slug()}`), `POST /api/v1/models/retrain`,
//! and [`enqueue`], the one way a request becomes a job.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use rpa_ml_shared::callback;
use rpa_ml_shared::jobs::{
    JobKind, JobPayload, PredictJob, Priority, ProjectSelection, RetrainJob,
};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::JobRow;

use crate::error::{ApiError, ErrorCode};
use crate::extract::{JsonBody, JsonBodyOrDefault};
use crate::idempotency::{self, JobRequest};
use crate::input::{present, whole_ids};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/api/v1/predict", post(predict))
        .route("/api/v1/models/retrain", post(retrain));
    for target in Target::ALL {
        router = router.route(
            &format!("/api/v1/predict/{}", target.route_slug()),
            post(move |s, r, b| predict_one(s, r, b, target)),
        );
    }
    router
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    #[serde(default, deserialize_with = "present")]
    targets: Option<Vec<String>>,
    #[serde(default, deserialize_with = "whole_ids")]
    project_ids: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "present")]
    all_open: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    callback_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictOneBody {
    #[serde(default, deserialize_with = "whole_ids")]
    project_ids: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "present")]
    all_open: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    callback_url: Option<String>,
}

async fn predict(
    State(state): State<AppState>,
    request: JobRequest,
    JsonBody(body): JsonBody<PredictBody>,
) -> Result<Response, ApiError> {
    let targets = parse_targets(body.targets.as_deref(), false)?;
    let selection = parse_selection(&state, body.project_ids, body.all_open)?;
    let priority = parse_priority(body.priority.as_deref())?;
    let callback = parse_callback(&state, body.callback_url.as_deref())?;
    submit_predict(&state, &request, targets, selection, priority, callback).await
}

async fn predict_one(
    State(state): State<AppState>,
    request: JobRequest,
    JsonBody(body): JsonBody<PredictOneBody>,
    target: Target,
) -> Result<Response, ApiError> {
    let selection = parse_selection(&state, body.project_ids, body.all_open)?;
    let priority = parse_priority(body.priority.as_deref())?;
    let callback = parse_callback(&state, body.callback_url.as_deref())?;
    submit_predict(
        &state,
        &request,
        [target].into_iter().collect(),
        selection,
        priority,
        callback,
    )
    .await
}

/// `priority`: high, normal (when absent) or low.
fn parse_priority(raw: Option<&str>) -> Result<Priority, ApiError> {
    match raw {
        None => Ok(Priority::Normal),
        Some(p) => Priority::from_str(p).map_err(|_| {
            ApiError::validation(format!(
                "`priority` must be one of {}; got {p:?}",
                Priority::names().join(", ")
            ))
        }),
    }
}

fn parse_targets(raw: Option<&[String]>, default_all: bool) -> Result<BTreeSet<Target>, ApiError> {
    let Some(raw) = raw else {
        if default_all {
            return Ok(Target::ALL.into_iter().collect());
        }
        return Err(ApiError::validation(format!(
            "`targets` is required: a list of {}",
            Target::names().join(", ")
        )));
    };
    if raw.is_empty() {
        return Err(ApiError::validation("`targets` must not be empty"));
    }
    raw.iter()
        .map(|t| {
            Target::from_str(t).map_err(|_| {
                ApiError::new(
                    ErrorCode::UnknownTarget,
                    format!(
                        "unknown target {t:?}; expected one of {}",
                        Target::names().join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// `callback_url`, checked against CALLBACK_ALLOWED_HOSTS, as it will be
/// stored (normalised).
fn parse_callback(state: &AppState, raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    callback::check_url(&state.config, raw)
        .map(|url| Some(url.to_string()))
        .map_err(|e| ApiError::new(ErrorCode::CallbackNotAllowed, e.to_string()))
}

fn parse_selection(
    state: &AppState,
    ids: Option<Vec<i64>>,
    all_open: Option<bool>,
) -> Result<ProjectSelection, ApiError> {
    match (ids, all_open.unwrap_or(false)) {
        (Some(_), true) => Err(ApiError::validation(
            "give either `project_ids` or `all_open: true`, not both",
        )),
        (None, true) => Ok(ProjectSelection::AllOpen),
        (None, false) => Err(ApiError::validation(
            "`project_ids` is required (a non-empty list of project ids), or `all_open: true`",
        )),
        (Some(ids), false) => {
            if ids.is_empty() {
                return Err(ApiError::validation("`project_ids` must not be empty"));
            }
            let max = state.config.max_projects_per_request;
            if ids.len() > max {
                return Err(ApiError::new(
                    ErrorCode::BatchTooLarge,
                    format!(
                        "{} project ids in one request; the limit is {max} (MAX_PROJECTS_PER_REQUEST): split the batch or use all_open",
                        ids.len()
                    ),
                ));
            }
            if let Some(bad) = ids.iter().find(|id| **id <= 0) {
                return Err(ApiError::validation(format!(
                    "project id {bad} is not a positive integer"
                )));
            }
            let mut seen = HashSet::with_capacity(ids.len());
            let ids: Vec<i64> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
            Ok(ProjectSelection::Ids(ids))
        }
    }
}

async fn submit_predict(
    state: &AppState,
    request: &JobRequest,
    targets: BTreeSet<Target>,
    selection: ProjectSelection,
    priority: Priority,
    callback_url: Option<String>,
) -> Result<Response, ApiError> {
    if let ProjectSelection::Ids(ids) = &selection {
        // Refuse a request none of whose projects exist, before anything is
        // written; a batch with some unknown ids is accepted and the result
        // names each unknown one.
        let existing = state.known_projects.existing(&state.backend, ids).await?;
        if existing.is_empty() {
            let shown: Vec<String> = ids.iter().take(10).map(|i| i.to_string()).collect();
            return Err(ApiError::new(
                ErrorCode::ProjectNotFound,
                format!(
                    "unknown project{} {}{}",
                    if ids.len() == 1 { "" } else { "s" },
                    shown.join(", "),
                    if ids.len() > 10 { ", ..." } else { "" }
                ),
            ));
        }
    }
    let payload = JobPayload::Predict(PredictJob {
        targets,
        projects: selection,
        priority,
    });
    enqueue(state, request, payload, callback_url).await
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetrainBody {
    #[serde(default, deserialize_with = "present")]
    targets: Option<Vec<String>>,
}

async fn retrain(
    State(state): State<AppState>,
    request: JobRequest,
    JsonBodyOrDefault(body): JsonBodyOrDefault<RetrainBody>,
) -> Result<Response, ApiError> {
    let targets = parse_targets(body.targets.as_deref(), true)?;
    // A retrain of the same targets collapses onto the active one (the
    // unique index decides races); one that only overlaps is refused, so
    // no target is ever fitted twice at once.
    for job in state.store.active_jobs_of_kind(JobKind::Retrain).await? {
        if let JobPayload::Retrain(r) = &job.payload
            && r.targets != targets
            && !r.targets.is_disjoint(&targets)
        {
            let overlap: Vec<&str> = r
                .targets
                .intersection(&targets)
                .map(|t| t.as_str())
                .collect();
            return Err(ApiError::new(
                ErrorCode::RetrainInProgress,
                format!(
                    "job {} is already retraining {} ({}); wait for it or request the same targets",
                    job.id,
                    overlap.join(", "),
                    job.state
                ),
            ));
        }
    }
    let payload = JobPayload::Retrain(RetrainJob {
        targets,
        reason: "api".into(),
        promote_first: false,
    });
    enqueue(&state, &request, payload, None).await
}

/// Accepts a job (row first, then push) and answers 202, or 200 with the
/// active duplicate. A failed push still answers 202: the row is the
/// promise, and the reconciler pushes it once the queue answers again.
/// With an `Idempotency-Key` the row is written with its key; a key taken
/// meanwhile by a concurrent request answers as the layer would have.
/// `callback_url` (checked) is written with the job, in its transaction.
pub async fn enqueue(
    state: &AppState,
    request: &JobRequest,
    payload: JobPayload,
    callback_url: Option<String>,
) -> Result<Response, ApiError> {
    let max_attempts = state.config.job_max_attempts as i32;
    let request_id = request.request_id.clone();
    let submitted = match &request.claim {
        None => {
            state
                .submitter
                .submit(payload, max_attempts, request_id, callback_url)
                .await?
        }
        Some(claim) => {
            let key = claim.store_key(&state.config);
            match state
                .submitter
                .submit_keyed(payload, max_attempts, request_id, callback_url, &key)
                .await?
            {
                Ok(s) => s,
                Err(found) => {
                    return Ok(idempotency::taken(&state.config, &claim.key, found));
                }
            }
        }
    };
    let job = &submitted.job;
    // Inside the request's span: this line carries the request id that the
    // worker's lines for the job carry too.
    tracing::info!(job.id = %job.id, job.kind = %job.kind, created = submitted.created, "job accepted");
    let code = if submitted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(accepted(
        job,
        code,
        !submitted.created,
        submitted.queue_error.as_deref(),
    ))
}

/// The answer naming an accepted job: its id, state, kind and where to
/// poll it (also in `Location`).
pub fn accepted(
    job: &JobRow,
    code: StatusCode,
    deduplicated: bool,
    queue_error: Option<&str>,
) -> Response {
    let status_url = format!("/api/v1/jobs/{}", job.id);
    let mut body = json!({
        "job_id": job.id,
        "status": job.state,
        "kind": job.kind,
        "status_url": status_url,
    });
    if deduplicated {
        body["deduplicated"] = json!(true);
    }
    if let Some(e) = queue_error {
        body["queue_error"] = json!(format!("queued durably; delivery delayed: {e}"));
    }
    (code, [(header::LOCATION, status_url)], Json(body)).into_response()
}
