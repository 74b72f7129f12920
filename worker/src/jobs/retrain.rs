//! The `retrain` job: build the training set once, then per target fit,
//! evaluate on the hold-out beside the baselines, write the artifact,
//! register the version, and let the gate decide `production` or
//! `rejected` against the current production model on the same rows.

use std::sync::Arc;

use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobPayload, RetrainJob, ScoreJob};
use rpa_ml_shared::ml::{self, FEATURE_SET_VERSION, Target, TrainError};
use rpa_ml_shared::store::{Holder, JobRow, ModelDocument, ModelStage, NewModel};

use crate::cancel;
use crate::models;
use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

pub async fn run(state: &WorkerState, job: &JobRow, r: &RetrainJob) -> Result<Outcome, JobError> {
    if r.targets.is_empty() {
        return Err(JobError::Permanent("no targets requested".into()));
    }
    let store = &state.store;
    cancel::checkpoint(state, job, "before extracting").await?;
    store
        .set_progress(&job.id, state.holder(job), "extracting", 0.05)
        .await?;
    let set = Arc::new(ml::build_training_set(&state.backend).await?);
    let fingerprint = set.fingerprint();
    // The training snapshot, for a data scientist to open (named by its
    // fingerprint, written once).
    let snapshot = {
        let (set, dir) = (set.clone(), state.config.feature_store_path.clone());
        match tokio::task::spawn_blocking(move || ml::write_snapshot(&set, &dir)).await {
            Ok(Ok(path)) => Some(path.display().to_string()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "training snapshot not written");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "training snapshot task failed");
                None
            }
        }
    };
    let n = r.targets.len();
    let mut out = serde_json::Map::new();
    let mut promoted: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for (i, &target) in r.targets.iter().enumerate() {
        let base = 0.1 + 0.85 * i as f64 / n as f64;
        let span = 0.85 / n as f64;
        cancel::checkpoint(state, job, &format!("before fitting {target}")).await?;
        store
            .set_progress(
                &job.id,
                state.holder(job),
                &format!("fitting {target}"),
                base,
            )
            .await?;
        // Stages reported from the training thread reach the jobs table
        // through a channel; only the latest one matters.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, f64)>(64);
        let mut opts = ml::train_options(&state.config, target);
        opts.progress = Some(Arc::new(move |stage: &str, frac: f64| {
            let _ = tx.try_send((stage.to_string(), frac));
        }));
        let reporter = {
            let (store, id, worker) = (store.clone(), job.id.clone(), state.name.clone());
            let attempt = job.attempts;
            tokio::spawn(async move {
                while let Some((stage, frac)) = rx.recv().await {
                    let stage = format!("{target}: {stage}");
                    let holder = Holder {
                        worker: &worker,
                        attempt,
                    };
                    let _ = store
                        .set_progress(&id, holder, &stage, base + span * 0.8 * frac)
                        .await;
                }
            })
        };
        let set_for = set.clone();
        let fitted = tokio::task::spawn_blocking(move || ml::train(target, &set_for, &opts))
            .await
            .map_err(|e| JobError::Transient(format!("training task failed: {e}")));
        let _ = reporter.await;
        let fitted = fitted?;
        let (model, report) = match fitted {
            Ok(x) => x,
            Err(e @ TrainError::NotEnoughData { .. }) => {
                failures.push(e.to_string());
                out.insert(target.to_string(), json!({"error": e.to_string()}));
                continue;
            }
            Err(e) => {
                failures.push(format!("{target}: {e}"));
                out.insert(target.to_string(), json!({"error": e.to_string()}));
                continue;
            }
        };
        store
            .set_progress(
                &job.id,
                state.holder(job),
                &format!("registering {target}"),
                base + 0.8 / n as f64,
            )
            .await?;
        cancel::checkpoint(state, job, &format!("before registering {target}")).await?;
        let dir = state.config.model_storage_path.join(target.as_str());
        let file = format!("{target}-{}.json", job.id);
        let model_for = model.clone();
        let saved = tokio::task::spawn_blocking(move || ml::save_artifact(&dir, &file, &model_for))
            .await
            .map_err(|e| JobError::Transient(format!("artifact task failed: {e}")))?
            .map_err(|e| JobError::Transient(format!("writing artifact: {e}")))?;
        // Into the ML store too, so workers on other hosts load it without
        // a shared volume (the file here is this host's cached copy).
        let written = saved.0.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(&written))
            .await
            .map_err(|e| JobError::Transient(format!("artifact task failed: {e}")))?
            .map_err(|e| JobError::Transient(format!("reading the artifact back: {e}")))?;
        store.put_artifact(&saved.1, &bytes).await?;
        let metrics = serde_json::to_value(&report).unwrap_or(Value::Null);
        let row = store
            .insert_model(NewModel {
                target,
                learner: model.learner().to_string(),
                feature_set_version: FEATURE_SET_VERSION.to_string(),
                data_fingerprint: fingerprint.clone(),
                code_version: env!("CARGO_PKG_VERSION").to_string(),
                metrics: metrics.clone(),
                artifact_path: saved.0.to_string_lossy().into_owned(),
                artifact_sha256: saved.1,
                job_id: Some(job.id.clone()),
            })
            .await?;
        // The training reference drift checks compare recent projects with;
        // a version without one is still usable, only not monitored.
        let (model_for, set_for) = (model.clone(), set.clone());
        match tokio::task::spawn_blocking(move || ml::training_reference(&model_for, &set_for))
            .await
        {
            Ok(reference) => match serde_json::to_value(&reference) {
                Ok(v) => {
                    store
                        .set_model_document(target, row.version, ModelDocument::DriftReference, &v)
                        .await?
                }
                Err(e) => tracing::warn!(error = %e, "training reference not serialisable"),
            },
            Err(e) => tracing::warn!(error = %e, "training reference task failed"),
        }
        let production = production_on_same_holdout(state, target, &set).await;
        let first = production.is_none();
        let (stage, reason) = match gate(target, &report, production) {
            (ModelStage::Rejected, missed) if first && r.promote_first => (
                ModelStage::Production,
                format!(
                    "promoted by `rpa-ml standalone` for the demo although it missed its gate ({missed}); \
                     an operator would decide this (POST /api/v1/models/{target}/promote)"
                ),
            ),
            decided => decided,
        };
        store
            .set_model_stage(target, row.version, stage.clone(), Some(&reason))
            .await?;
        state.models.invalidate(target);
        if let Err(e) = models::prune(&state.store, target, state.config.model_retention).await {
            tracing::warn!(model.target = %target, error = %e, "model retention failed; the maintenance job tries again");
        }
        tracing::info!(model.target = %target, model.version = row.version, stage = stage.as_str(), %reason, "model registered");
        let mut entry = json!({"version": row.version, "stage": stage.as_str(), "reason": reason, "report": metrics});
        if let Some(mlflow) = &state.mlflow {
            entry["mlflow"] = export_to_mlflow(state, mlflow, &row, &stage, &metrics).await;
        }
        if stage == ModelStage::Production {
            promoted.push(format!("{target} v{}", row.version));
        }
        out.insert(target.to_string(), entry);
    }
    if failures.len() == n {
        return Err(JobError::Permanent(failures.join("; ")));
    }
    let mut result = json!({
        "snapshot": snapshot,
        "data_fingerprint": fingerprint,
        "feature_set_version": FEATURE_SET_VERSION,
        "targets": out,
    });
    if !promoted.is_empty() {
        result["score_job_id"] = json!(rescore(state, job, &promoted).await);
    }
    Ok(Outcome::Plain(result))
}

/// A production model changed: the kept forecasts are now older than it,
/// so a scoring run refreshes them (collapsing onto one already waiting).
/// Best effort: the promotion stands either way, and the next scheduled
/// run scores them if this enqueue fails.
async fn rescore(state: &WorkerState, job: &JobRow, promoted: &[String]) -> Option<String> {
    let payload = JobPayload::Score(ScoreJob {
        reason: format!("promoted {} by retrain {}", promoted.join(", "), job.id),
    });
    match rpa_ml_shared::submit::submit(
        &state.store,
        &state.queue,
        payload,
        state.config.job_max_attempts as i32,
        job.request_id.clone(),
    )
    .await
    {
        Ok(s) => Some(s.job.id),
        Err(e) => {
            tracing::warn!(error = %e, "could not enqueue a scoring run after the promotion");
            None
        }
    }
}

/// Logs the fit to MLflow and, for a promoted version, moves the
/// `production` alias. Never fails the retrain: the outcome (or the error)
/// is returned for the job result and kept on the registry row.
async fn export_to_mlflow(
    state: &WorkerState,
    mlflow: &rpa_ml_shared::mlflow::Mlflow,
    row: &rpa_ml_shared::store::ModelRow,
    stage: &ModelStage,
    metrics: &Value,
) -> Value {
    let model_name = format!("rpa-ml-{}", row.target);
    let numeric: Vec<(String, f64)> = metrics
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
        .collect();
    let artifact = std::fs::canonicalize(&row.artifact_path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| row.artifact_path.clone());
    let fit = rpa_ml_shared::mlflow::FitRecord {
        model_name: &model_name,
        run_name: format!("{}-v{}", row.target, row.version),
        params: vec![
            ("learner".into(), row.learner.clone()),
            (
                "feature_set_version".into(),
                row.feature_set_version.clone(),
            ),
            ("data_fingerprint".into(), row.data_fingerprint.clone()),
            ("code_version".into(), row.code_version.clone()),
            ("rpa_ml_version".into(), row.version.to_string()),
            (
                "hyperparameters".into(),
                metrics
                    .get("params")
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
        ],
        metrics: numeric,
        tags: vec![
            ("rpa_ml.target".into(), row.target.to_string()),
            ("rpa_ml.stage".into(), stage.as_str().to_string()),
            ("rpa_ml.artifact_sha256".into(), row.artifact_sha256.clone()),
        ],
        artifact_uri: format!("file://{artifact}"),
        artifact_file: artifact.clone().into(),
        artifact_sha256: row.artifact_sha256.clone(),
    };
    let value = match mlflow.log_fit(&fit).await {
        Ok(exported) => {
            if *stage == ModelStage::Production
                && let Err(e) = mlflow
                    .set_production(&exported.registered_model, &exported.model_version)
                    .await
            {
                tracing::warn!(error = %e, "MLflow alias not moved");
            }
            serde_json::to_value(&exported).unwrap_or(Value::Null)
        }
        Err(e) => {
            tracing::warn!(model.target = %row.target, model.version = row.version, error = %e, "MLflow export failed");
            json!({"error": e.to_string()})
        }
    };
    if let Err(e) = state
        .store
        .set_model_document(row.target, row.version, ModelDocument::Mlflow, &value)
        .await
    {
        tracing::warn!(error = %e, "could not record the MLflow export");
    }
    value
}

/// The current production model's metric on the candidate's hold-out, so
/// the two are compared on the same rows. Falls back to the figure recorded
/// at its own fit when it cannot be evaluated here (another feature set, an
/// unreadable artifact), and says which it used.
async fn production_on_same_holdout(
    state: &WorkerState,
    target: Target,
    set: &Arc<ml::TrainingSet>,
) -> Option<(i32, f64, &'static str)> {
    let row = state.store.production_model(target).await.ok()??;
    let recorded = row.metrics.get("holdout").and_then(Value::as_f64);
    if let Ok(loaded) = state.models.production(target).await
        && loaded.version == row.version
    {
        let (model, set) = (loaded.model.clone(), set.clone());
        if let Ok(Ok(m)) = tokio::task::spawn_blocking(move || ml::evaluate(&model, &set)).await {
            return Some((row.version, m, "same hold-out"));
        }
    }
    recorded.map(|m| (row.version, m, "its own hold-out"))
}

/// Promotion rule: pass the threshold gate, and do no worse than the
/// current production model on the same hold-out.
fn gate(
    target: Target,
    report: &ml::TrainReport,
    production: Option<(i32, f64, &str)>,
) -> (ModelStage, String) {
    let higher_is_better = target.metric().higher_is_better();
    if !report.passed {
        let cmp = if higher_is_better { "<" } else { ">" };
        return (
            ModelStage::Rejected,
            format!(
                "hold-out {} {:.4} {cmp} threshold {:.4}",
                report.metric, report.holdout, report.threshold
            ),
        );
    }
    if let Some((version, prod, basis)) = production {
        let worse = if higher_is_better {
            report.holdout < prod
        } else {
            report.holdout > prod
        };
        if worse {
            return (
                ModelStage::Rejected,
                format!(
                    "hold-out {} {:.4} is worse than production v{version}'s {:.4} ({basis})",
                    report.metric, report.holdout, prod
                ),
            );
        }
        return (
            ModelStage::Production,
            format!(
                "passed: hold-out {} {:.4} vs threshold {:.4}; production v{version} scored {:.4} ({basis})",
                report.metric, report.holdout, report.threshold, prod
            ),
        );
    }
    (
        ModelStage::Production,
        format!(
            "passed: hold-out {} {:.4} vs threshold {:.4}; first production model",
            report.metric, report.holdout, report.threshold
        ),
    )
}
