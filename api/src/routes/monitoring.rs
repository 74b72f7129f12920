//! `/api/v1/monitoring/*`: drift reports and model metrics.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{DriftJob, JobPayload};
use rpa_ml_shared::ml::Target;

use crate::error::ApiError;
use crate::idempotency::JobRequest;
use crate::state::AppState;

/// Most reports per target one request may ask for.
const MAX_HISTORY: i64 = 100;

/// Routes behind the API key.
pub fn protected() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/monitoring/drift",
            get(drift_reports).post(run_drift),
        )
        .route("/api/v1/monitoring/metrics", get(metrics))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriftQuery {
    target: Option<String>,
    history: Option<String>,
}

/// The latest report per target, or the last `history` of each.
async fn drift_reports(
    State(state): State<AppState>,
    query: Result<Query<DriftQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation(format!("bad query string: {e}")))?;
    let target = q
        .target
        .as_deref()
        .map(|t| {
            Target::from_str(t).map_err(|_| {
                ApiError::validation(format!(
                    "unknown target {t:?}; expected one of {}",
                    Target::names().join(", ")
                ))
            })
        })
        .transpose()?;
    let history = match q.history.as_deref() {
        None => 1,
        Some(h) => match h.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_HISTORY).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(format!(
                    "`history` must be an integer from 1 to {MAX_HISTORY}, got {h:?}"
                )));
            }
        },
    };
    let rows = state.store.drift_reports(target, history).await?;
    let reports: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v = r.report;
            // The columns are the truth for these (the report is written
            // before the retrain id is known on some paths).
            v["target"] = json!(r.target);
            v["checked_at"] = json!(r.checked_at);
            v["drift_score"] = json!(r.drift_score);
            v["drift_detected"] = json!(r.drift_detected);
            v["retrain_job_id"] = json!(r.retrain_job_id);
            v["job_id"] = json!(r.job_id);
            v
        })
        .collect();
    Ok(Json(json!({ "reports": reports })))
}

/// Runs a drift check now (deduplicated with one already waiting).
async fn run_drift(
    State(state): State<AppState>,
    request: JobRequest,
) -> Result<Response, ApiError> {
    let payload = JobPayload::Drift(DriftJob {
        reason: "api".into(),
    });
    crate::routes::predict::enqueue(&state, &request, payload, None).await
}

/// Each production model's hold-out metrics beside its realised metrics
/// (from the latest drift check), the thresholds, and prediction counts.
async fn metrics(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let config = &state.config;
    let latest: BTreeMap<Target, _> = state
        .store
        .latest_drift_reports()
        .await?
        .into_iter()
        .map(|r| (r.target, r))
        .collect();
    let counts = state.store.prediction_counts().await?;
    let mut models = Vec::new();
    for target in Target::ALL {
        let production = state.store.production_model(target).await?;
        let gate = rpa_ml_shared::ml::quality_gate(config, target);
        let of_target = counts.iter().filter(|c| c.target == target);
        let all_versions: i64 = of_target.clone().map(|c| c.predictions).sum();
        let version_counts = production.as_ref().and_then(|m| {
            of_target
                .clone()
                .find(|c| c.model_version == m.version)
                .cloned()
        });
        let report = latest.get(&target);
        // Realised figures belong to the version they were measured on.
        let realised = report
            .filter(|r| production.as_ref().map(|m| m.version) == r.model_version)
            .and_then(|r| r.report.get("realised").cloned())
            .filter(|v| !v.is_null())
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("pairs");
                }
                v
            });
        let m = production.as_ref();
        let metric = m.and_then(|m| m.metrics.get("metric").cloned());
        models.push(json!({
            "target": target,
            "production_version": m.map(|m| m.version),
            "learner": m.map(|m| m.learner.clone()),
            "promoted_at": m.and_then(|m| m.promoted_at),
            "holdout": m.map(|m| json!({
                "metric": metric,
                "value": m.metrics.get("holdout"),
                "start_snapshot": m.metrics.get("start_snapshot_holdout"),
                "baseline": m.metrics.get("baseline"),
                "baseline_name": m.metrics.get("baseline_name"),
                "baselines": m.metrics.get("baselines"),
                "baselines_start_snapshot": m.metrics.get("baselines_start_snapshot"),
                "macro_f1": m.metrics.get("macro_f1"),
            })),
            "realised": realised,
            "thresholds": {
                "quality_gate": gate,
                "quality_gate_direction": target.metric().gate_direction(),
                "retraining_threshold": config.retraining_threshold,
                "drift_detection_window_days": config.drift_detection_window_days,
            },
            "predictions": {
                "production_version": version_counts.as_ref().map_or(0, |c| c.predictions),
                "production_version_projects": version_counts.as_ref().map_or(0, |c| c.projects),
                "last_at": version_counts.as_ref().and_then(|c| c.last_at),
                "all_versions": all_versions,
            },
            "drift": report.map(|r| json!({
                "checked_at": r.checked_at,
                "model_version": r.model_version,
                "drift_score": r.drift_score,
                "drift_detected": r.drift_detected,
            })),
            "message": if m.is_none() { json!(format!("{target} has no production model")) } else { Value::Null },
        }));
    }
    Ok(Json(json!({
        "monitoring_enabled": config.enable_model_monitoring,
        "models": models,
    })))
}
