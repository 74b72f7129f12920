//! Route handlers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobKind, JobPayload, PredictJob, ProjectSelection, RetrainJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{JobRow, ModelDocument, ModelStage};

use crate::error::ApiError;
use crate::extract::{JsonBody, JsonBodyOrDefault};
use crate::{AppState, REQUEST_ID};

/// Paths and methods served; the OpenAPI document is checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/predict"),
    ("post", "/api/v1/predict/completion-time"),
    ("post", "/api/v1/predict/budget-variance"),
    ("post", "/api/v1/predict/risk-score"),
    ("get", "/api/v1/jobs/{id}"),
    ("get", "/api/v1/models"),
    ("post", "/api/v1/models/retrain"),
    ("get", "/api/v1/models/{target}/versions/{version}"),
    ("post", "/api/v1/models/{target}/promote"),
    ("post", "/api/v1/models/{target}/rollback"),
    // Ops (api/src/ops.rs): the page and its JSON.
    ("get", "/"),
    ("get", "/ops"),
    ("get", "/ops/page.js"),
    ("get", "/ops/page.css"),
    ("get", "/api/v1/queues"),
    ("get", "/api/v1/jobs"),
    ("post", "/api/v1/jobs/{id}/retry"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("get", "/api/v1/workers"),
    ("get", "/api/v1/monitoring/drift"),
    ("post", "/api/v1/monitoring/drift"),
    ("get", "/api/v1/monitoring/metrics"),
];

pub fn public() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

pub fn protected() -> Router<AppState> {
    Router::new()
        .route("/api/v1/predict", post(predict))
        .route(
            "/api/v1/predict/completion-time",
            post(|s, h, b| predict_one(s, h, b, Target::CompletionTime)),
        )
        .route(
            "/api/v1/predict/budget-variance",
            post(|s, h, b| predict_one(s, h, b, Target::BudgetVariance)),
        )
        .route(
            "/api/v1/predict/risk-score",
            post(|s, h, b| predict_one(s, h, b, Target::Risk)),
        )
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/models", get(list_models))
        .route("/api/v1/models/retrain", post(retrain))
        .route(
            "/api/v1/models/{target}/versions/{version}",
            get(get_model_version),
        )
        .route("/api/v1/models/{target}/promote", post(promote))
        .route("/api/v1/models/{target}/rollback", post(rollback))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Ready when the store, the queue and the backend database all answer.
async fn ready(State(state): State<AppState>) -> Response {
    let timeout = Duration::from_secs(2);
    let (store, queue, backend) = tokio::join!(
        tokio::time::timeout(timeout, state.store.ping()),
        tokio::time::timeout(timeout, state.queue.ping()),
        tokio::time::timeout(timeout, state.backend.ping()),
    );
    let verdict = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => json!({"ok": true}),
        Ok(Err(e)) => json!({"ok": false, "error": e}),
        Err(_) => json!({"ok": false, "error": "timed out after 2 s"}),
    };
    let checks = json!({
        "ml_store": verdict(store.map(|r| r.map_err(|e| e.to_string()))),
        "queue": verdict(queue.map(|r| r.map_err(|e| e.to_string()))),
        "backend_db": verdict(backend.map(|r| r.map_err(|e| e.to_string()))),
    });
    let down: Vec<&str> = ["ml_store", "queue", "backend_db"]
        .into_iter()
        .filter(|k| checks[*k]["ok"] != json!(true))
        .collect();
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
            .into_response()
    } else {
        let body = json!({
            "status": "not_ready",
            "error": {"code": "dependency_unavailable", "message": format!("not ready: {} down", down.join(", "))},
            "checks": checks,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    project_ids: Option<Vec<i64>>,
    #[serde(default)]
    all_open: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictOneBody {
    #[serde(default)]
    project_ids: Option<Vec<i64>>,
    #[serde(default)]
    all_open: Option<bool>,
}

async fn predict(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PredictBody>,
) -> Result<Response, ApiError> {
    let targets = parse_targets(body.targets.as_deref(), false)?;
    let selection = parse_selection(&state, body.project_ids, body.all_open)?;
    submit_predict(&state, &headers, targets, selection).await
}

async fn predict_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PredictOneBody>,
    target: Target,
) -> Result<Response, ApiError> {
    let selection = parse_selection(&state, body.project_ids, body.all_open)?;
    submit_predict(&state, &headers, [target].into_iter().collect(), selection).await
}

fn parse_targets(raw: Option<&[String]>, default_all: bool) -> Result<BTreeSet<Target>, ApiError> {
    let Some(raw) = raw else {
        if default_all {
            return Ok(Target::ALL.into_iter().collect());
        }
        return Err(ApiError::validation(
            "`targets` is required: a list of completion_time, budget_variance, risk",
        ));
    };
    if raw.is_empty() {
        return Err(ApiError::validation("`targets` must not be empty"));
    }
    raw.iter()
        .map(|t| {
            Target::from_str(t).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_target",
                    format!(
                        "unknown target {t:?}; expected completion_time, budget_variance or risk"
                    ),
                )
            })
        })
        .collect()
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
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
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

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn submit_predict(
    state: &AppState,
    headers: &HeaderMap,
    targets: BTreeSet<Target>,
    selection: ProjectSelection,
) -> Result<Response, ApiError> {
    if let ProjectSelection::Ids(ids) = &selection {
        // Refuse a request none of whose projects exist, before anything is
        // written; a batch with some unknown ids is accepted and the result
        // names each unknown one.
        let existing = state.known_projects.existing(&state.backend, ids).await?;
        if existing.is_empty() {
            let shown: Vec<String> = ids.iter().take(10).map(|i| i.to_string()).collect();
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "project_not_found",
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
    });
    enqueue(state, headers, payload).await
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetrainBody {
    #[serde(default)]
    targets: Option<Vec<String>>,
}

async fn retrain(
    State(state): State<AppState>,
    headers: HeaderMap,
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
                StatusCode::CONFLICT,
                "retrain_in_progress",
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
    });
    enqueue(&state, &headers, payload).await
}

/// Accepts a job (row first, then push) and answers 202, or 200 with the
/// active duplicate. A failed push still answers 202: the row is the
/// promise, and the reconciler pushes it once the queue answers again.
pub async fn enqueue(
    state: &AppState,
    headers: &HeaderMap,
    payload: JobPayload,
) -> Result<Response, ApiError> {
    let submitted = state
        .submitter
        .submit(
            payload,
            state.config.job_max_attempts as i32,
            request_id(headers),
        )
        .await?;
    let job = &submitted.job;
    // Inside the request's span: this line carries the request id that the
    // worker's lines for the job carry too.
    tracing::info!(job.id = %job.id, job.kind = %job.kind, created = submitted.created, "job accepted");
    let status_url = format!("/api/v1/jobs/{}", job.id);
    let mut body = json!({
        "job_id": job.id,
        "status": job.state,
        "kind": job.kind,
        "status_url": status_url,
    });
    if !submitted.created {
        body["deduplicated"] = json!(true);
    }
    if let Some(e) = &submitted.queue_error {
        body["queue_error"] = json!(format!("queued durably; delivery delayed: {e}"));
    }
    let code = if submitted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((code, [(header::LOCATION, status_url)], Json(body)).into_response())
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

pub fn job_view(job: &JobRow) -> Value {
    json!({
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "status": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "stage": job.stage,
        "error": job.error,
        "request": job.payload,
        "result": job.result,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
    })
}

fn model_view(m: &rpa_ml_shared::store::ModelRow) -> Value {
    json!({
        "target": m.target,
        "version": m.version,
        "stage": m.stage.as_str(),
        "stage_reason": m.stage_reason,
        "learner": m.learner,
        "metrics": m.metrics,
        "feature_set_version": m.feature_set_version,
        "data_fingerprint": m.data_fingerprint,
        "code_version": m.code_version,
        "artifact_path": m.artifact_path,
        "artifact_sha256": m.artifact_sha256,
        "job_id": m.job_id,
        "created_at": m.created_at,
        "promoted_at": m.promoted_at,
    })
}

async fn get_model_version(
    State(state): State<AppState>,
    Path((target, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let target = path_target(&target)?;
    let version: i32 = version.parse().map_err(|_| {
        ApiError::not_found(format!("model versions are integers, got {version:?}"))
    })?;
    let m = state
        .store
        .get_model(target, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{target} has no version {version}")))?;
    let mut view = model_view(&m);
    // A summary of the training reference drift checks use (the bins
    // themselves are large; the drift report shows what matters).
    view["drift_reference"] = match state
        .store
        .model_document(target, version, ModelDocument::DriftReference)
        .await?
    {
        Some(v) => match serde_json::from_value::<rpa_ml_shared::ml::drift::Reference>(v) {
            Ok(r) => r.summary(),
            Err(e) => json!({"error": format!("unreadable reference: {e}")}),
        },
        None => {
            json!({"error": "this version was trained before training references were recorded; drift is not monitored for it"})
        }
    };
    Ok(Json(view))
}

async fn list_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let models = state.store.list_models().await?;
    let mut by_target: BTreeMap<String, Vec<Value>> = Target::ALL
        .iter()
        .map(|t| (t.to_string(), Vec::new()))
        .collect();
    for m in models {
        let mut view = model_view(&m);
        // The hold-out pairs are for one version's chart
        // (`/versions/{v}`), not for every poll of the list.
        if let Some(metrics) = view["metrics"].as_object_mut() {
            metrics.remove("holdout_pairs");
        }
        by_target
            .entry(m.target.to_string())
            .or_default()
            .push(view);
    }
    let targets: serde_json::Map<String, Value> = by_target
        .into_iter()
        .map(|(t, versions)| {
            let production = versions
                .iter()
                .find(|v| v["stage"] == "production")
                .map(|v| v["version"].clone())
                .unwrap_or(Value::Null);
            (
                t,
                json!({"production_version": production, "versions": versions}),
            )
        })
        .collect();
    Ok(Json(json!({"targets": targets})))
}

fn path_target(raw: &str) -> Result<Target, ApiError> {
    Target::from_str(raw).map_err(|_| {
        ApiError::not_found(format!(
            "unknown target {raw:?}; expected completion_time, budget_variance or risk"
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    version: i32,
    #[serde(default)]
    reason: Option<String>,
}

/// Promotes a version by hand (the operator's decision, e.g. when no model
/// can pass a gate); the reason is kept beside the stage.
async fn promote(
    State(state): State<AppState>,
    Path(target): Path<String>,
    JsonBody(body): JsonBody<PromoteBody>,
) -> Result<Json<Value>, ApiError> {
    let target = path_target(&target)?;
    let model = state
        .store
        .get_model(target, body.version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{target} has no version {}", body.version)))?;
    if model.stage == ModelStage::Production {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_production",
            format!("{target} v{} is already in production", model.version),
        ));
    }
    let reason = format!(
        "promoted by hand{}{}",
        body.reason.as_deref().map(|_| ": ").unwrap_or(""),
        body.reason.as_deref().unwrap_or("")
    );
    state
        .store
        .set_model_stage(target, model.version, ModelStage::Production, Some(&reason))
        .await?;
    tracing::info!(model.target = %target, model.version = model.version, "model promoted by hand");
    move_mlflow_alias(&state, target, model.version).await;
    Ok(Json(
        json!({"target": target, "production_version": model.version, "reason": reason}),
    ))
}

/// Puts the previous production version back (the newest archived one that
/// was in production before the current one).
async fn rollback(
    State(state): State<AppState>,
    Path(target): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let target = path_target(&target)?;
    let models = state.store.list_models().await?;
    let current = models
        .iter()
        .find(|m| m.target == target && m.stage == ModelStage::Production)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_production_model",
                format!("{target} has no production model to roll back"),
            )
        })?;
    let previous = models
        .iter()
        .filter(|m| {
            m.target == target
                && m.version != current.version
                && m.stage == ModelStage::Archived
                && m.promoted_at.is_some()
        })
        .max_by_key(|m| m.promoted_at)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "nothing_to_roll_back_to",
                format!("{target} has no earlier production version to go back to"),
            )
        })?;
    state
        .store
        .set_model_stage(
            target,
            previous.version,
            ModelStage::Production,
            Some(&format!("rolled back from v{}", current.version)),
        )
        .await?;
    tracing::info!(model.target = %target, from = current.version, to = previous.version, "model rolled back");
    move_mlflow_alias(&state, target, previous.version).await;
    Ok(Json(
        json!({"target": target, "production_version": previous.version, "rolled_back_from": current.version}),
    ))
}

/// Keeps MLflow's `production` alias on the version the registry promoted,
/// when that version was exported. Best effort: logged, never an error.
async fn move_mlflow_alias(state: &AppState, target: Target, version: i32) {
    let Some(mlflow) = rpa_ml_shared::mlflow::Mlflow::from_config(
        state.config.mlflow_tracking_uri.as_deref(),
        &state.config.mlflow_experiment_name,
    ) else {
        return;
    };
    let record = match state
        .store
        .model_document(target, version, ModelDocument::Mlflow)
        .await
    {
        Ok(Some(r)) => r,
        _ => return,
    };
    if let (Some(name), Some(v)) = (
        record["registered_model"].as_str(),
        record["model_version"].as_str(),
    ) && let Err(e) = mlflow.set_production(name, v).await
    {
        tracing::warn!(error = %e, "MLflow alias not moved");
    }
}

/// Prometheus metrics: this process's counters plus the system gauges read
/// from the store now. Public like `/health`: it carries no secrets, and
/// scrapers rarely hold API keys. A store that does not answer still gives
/// the process series, with the failure counted.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = rpa_ml_shared::metrics::refresh_from_store(&state.store).await {
        tracing::warn!(error = %e, "metrics: could not read the store; system gauges are stale");
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            rpa_ml_shared::metrics::CONTENT_TYPE,
        )],
        rpa_ml_shared::metrics::render(),
    )
}
