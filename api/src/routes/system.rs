//! Process routes: `/health`, `/ready`, `/metrics` (all without the key).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::error::ErrorCode;
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
            "error": {"code": ErrorCode::DependencyUnavailable.as_str(), "message": format!("not ready: {} down", down.join(", "))},
            "checks": checks,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
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
