//! The model registry: `GET /api/v1/models`, one version, promote and
//! roll back (the operator's decisions, recorded with their reason).

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobPayload, ScoreJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{ModelDocument, ModelStage};

use crate::error::{ApiError, ErrorCode};
use crate::extract::JsonBody;
use crate::input::{plain_text, present, whole_i32};
use crate::state::AppState;
use crate::views::model_view;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/models", get(list_models))
        .route(
            "/api/v1/models/{target}/versions/{version}",
            get(get_model_version),
        )
        .route("/api/v1/models/{target}/promote", post(promote))
        .route("/api/v1/models/{target}/rollback", post(rollback))
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
            "unknown target {raw:?}; expected one of {}",
            Target::names().join(", ")
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(deserialize_with = "whole_i32")]
    version: i32,
    #[serde(default, deserialize_with = "present")]
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
    if let Some(reason) = &body.reason {
        plain_text("reason", reason)?;
    }
    let model = state
        .store
        .get_model(target, body.version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{target} has no version {}", body.version)))?;
    if model.stage == ModelStage::Production {
        return Err(ApiError::new(
            ErrorCode::AlreadyProduction,
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
    let score_job_id = rescore(
        &state,
        format!("promoted {target} v{} by hand", model.version),
    )
    .await;
    Ok(Json(
        json!({"target": target, "production_version": model.version, "reason": reason, "score_job_id": score_job_id}),
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
                ErrorCode::NoProductionModel,
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
                ErrorCode::NothingToRollBackTo,
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
    let score_job_id = rescore(
        &state,
        format!(
            "rolled {target} back from v{} to v{}",
            current.version, previous.version
        ),
    )
    .await;
    Ok(Json(
        json!({"target": target, "production_version": previous.version, "rolled_back_from": current.version, "score_job_id": score_job_id}),
    ))
}

/// A production model changed: a scoring run refreshes the kept forecasts
/// (collapsing onto one already waiting). Best effort: the change stands
/// either way, and the next scheduled run scores them if this fails.
async fn rescore(state: &AppState, reason: String) -> Option<String> {
    let payload = JobPayload::Score(ScoreJob { reason });
    match state
        .submitter
        .submit(payload, state.config.job_max_attempts as i32, None, None)
        .await
    {
        Ok(s) => Some(s.job.id),
        Err(e) => {
            tracing::warn!(error = %e, "could not enqueue a scoring run after the model change");
            None
        }
    }
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
