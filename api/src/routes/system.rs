//! Process routes: `/health`, `/ready`, `/metrics` (all without the key).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobKind, JobPayload};
use rpa_ml_shared::ml::Target;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyQuery {
    /// False: the dependencies only.
    models: Option<bool>,
}

/// Ready when the store, the queue and the backend database all answer and
/// every target has a production model (a prediction sent now can be
/// answered). Otherwise 503, naming each dependency that is down and each
/// target still waiting for a model, with the retrain that will give it
/// one. `?models=false` checks the dependencies only: the probe of a load
/// balancer, which must let a new deployment be sent its first retrain.
async fn ready(
    State(state): State<AppState>,
    query: Result<Query<ReadyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return ApiError::validation("bad query string: `models` is true or false").into_response();
    };
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
    let mut checks = json!({
        "ml_store": verdict(store.map(|r| r.map_err(|e| e.to_string()))),
        "queue": verdict(queue.map(|r| r.map_err(|e| e.to_string()))),
        "backend_db": verdict(backend.map(|r| r.map_err(|e| e.to_string()))),
    });
    let mut down: Vec<String> = ["ml_store", "queue", "backend_db"]
        .into_iter()
        .filter(|k| checks[*k]["ok"] != json!(true))
        .map(|k| format!("{k} down"))
        .collect();
    let code = if down.is_empty() {
        ErrorCode::NoProductionModel
    } else {
        ErrorCode::DependencyUnavailable
    };
    let mut waiting_for: Vec<&str> = Vec::new();
    if q.models.unwrap_or(true) {
        let (check, waiting, why) = models_check(&state, timeout).await;
        checks["models"] = check;
        waiting_for = waiting;
        down.extend(why);
    }
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
            .into_response()
    } else {
        let body = json!({
            "status": "not_ready",
            "error": {"code": code.as_str(), "message": format!("not ready: {}", down.join("; "))},
            "waiting_for": waiting_for,
            "checks": checks,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Each target's production version; the targets without one, and the
/// retrain that may give them one. Returns the check, the waiting targets
/// and, when not ok, the reason for the message.
async fn models_check(
    state: &AppState,
    timeout: Duration,
) -> (Value, Vec<&'static str>, Option<String>) {
    let read = async {
        let production = state.store.production_versions().await?;
        let retrains = state.store.active_jobs_of_kind(JobKind::Retrain).await?;
        Ok::<_, rpa_ml_shared::store::StoreError>((production, retrains))
    };
    let (production, retrains) = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let check = json!({"ok": false, "error": e.to_string()});
            return (check, Vec::new(), Some("production models unknown".into()));
        }
        Err(_) => {
            let check = json!({"ok": false, "error": "timed out after 2 s"});
            return (check, Vec::new(), Some("production models unknown".into()));
        }
    };
    let versions: serde_json::Map<String, Value> = Target::ALL
        .iter()
        .map(|t| (t.to_string(), json!(production.get(t))))
        .collect();
    let waiting: Vec<&'static str> = Target::ALL
        .iter()
        .filter(|t| !production.contains_key(t))
        .map(|t| t.as_str())
        .collect();
    if waiting.is_empty() {
        return (json!({"ok": true, "production": versions}), waiting, None);
    }
    let retrain = retrains.iter().find(|j| {
        matches!(&j.payload, JobPayload::Retrain(r)
            if r.targets.iter().any(|t| waiting.contains(&t.as_str())))
    });
    let why = match retrain {
        Some(j) => format!(
            "no production model for {} yet (retrain {} is {})",
            waiting.join(", "),
            j.id,
            j.state
        ),
        None => format!(
            "no production model for {}, and no retrain is queued or running \
             (POST /api/v1/models/retrain, or promote a version)",
            waiting.join(", ")
        ),
    };
    let check = json!({
        "ok": false,
        "production": versions,
        "waiting_for": waiting,
        "retrain_job_id": retrain.map(|j| j.id.clone()),
        "error": why,
    });
    (check, waiting, Some(why))
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
