//! Running one job: claim the row, do the work, record the outcome.
//!
//! Failures are sorted into permanent (the job can never succeed: bad
//! payload, no model, too little data) which fail the job at once, and
//! transient (a database or the queue went away) which hand the job back
//! with back-off until the attempt limit, after which it is `dead`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tracing::Instrument;

use rpa_ml_shared::backend::BackendError;
use rpa_ml_shared::jobs::{JobMessage, JobPayload, PredictJob, ProjectSelection, RetrainJob};
use rpa_ml_shared::metrics;
use rpa_ml_shared::ml::{
    self, FEATURE_SET_VERSION, Target, TrainError, TrainOptions, extract_features,
};
use rpa_ml_shared::store::{
    Claim, JobOutcome, JobRow, ModelDocument, ModelStage, NewModel, PredictionRow, StoreError,
};

use crate::WorkerState;
use crate::models::ModelError;
use rpa_ml_shared::config::Config;

/// Why a job did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
    /// An operator cancelled it; seen at a checkpoint.
    #[error("{0}")]
    Cancelled(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            JobError::Transient(e.to_string())
        } else {
            JobError::Permanent(e.to_string())
        }
    }
}

impl From<BackendError> for JobError {
    fn from(e: BackendError) -> Self {
        if e.is_transient() {
            JobError::Transient(format!("backend database: {e}"))
        } else {
            JobError::Permanent(format!("backend database: {e}"))
        }
    }
}

impl From<ModelError> for JobError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Store(s) => s.into(),
            other => JobError::Permanent(other.to_string()),
        }
    }
}

/// Entry point for one queue message. Errors returned here are only those
/// that left the job row untouched (the store was unreachable before the
/// claim); apalis then redelivers the message.
pub async fn handle_message(state: Arc<WorkerState>, msg: JobMessage) -> Result<(), StoreError> {
    let span = tracing::info_span!("job", job.id = %msg.job_id, job.kind = %msg.kind,
        request_id = msg.request_id.as_deref().unwrap_or(""), worker = %state.name);
    async move {
        let job = match state.store.claim_job(&msg.job_id, &state.name).await? {
            Claim::Claimed(job) => job,
            Claim::NotClaimable(current) => {
                tracing::debug!(state = ?current, "message for a job that is not queued; dropped");
                return Ok(());
            }
        };
        if job.attempts > job.max_attempts {
            let err = format!(
                "attempt limit reached ({} of {})",
                job.attempts - 1,
                job.max_attempts
            );
            state
                .store
                .set_outcome(&job.id, &state.name, JobOutcome::Dead { error: &err })
                .await?;
            return Ok(());
        }
        let started = Instant::now();
        let waited = (Utc::now() - job.run_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::global()
            .job_wait
            .get_or_create(&metrics::KindLabels {
                kind: job.kind.as_str().into(),
            })
            .observe(waited);
        tracing::info!(attempt = job.attempts, "job started");
        if state.faults.abort {
            tracing::error!("RPA_ML_FAULT_ABORT: aborting the process");
            std::process::abort();
        }
        if let Some(d) = state.faults.delay {
            tokio::time::sleep(d).await;
        }
        let outcome = match &job.payload {
            JobPayload::Predict(p) => {
                let limit = state.config.prediction_timeout;
                match tokio::time::timeout(limit, run_predict(&state, &job, p)).await {
                    Ok(res) => res,
                    Err(_) => Err(JobError::Transient(format!(
                        "prediction did not finish within PREDICTION_TIMEOUT ({} s)",
                        limit.as_secs()
                    ))),
                }
            }
            JobPayload::Retrain(r) => run_retrain(&state, &job, r).await,
            JobPayload::Drift(d) => crate::drift::run(&state, &job, d).await,
            JobPayload::Maintenance(m) => crate::maintenance::run(&state, &job, m).await,
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        record_outcome(&state, &job, outcome, elapsed_ms).await
    }
    .instrument(span)
    .await
}

/// A successful job's result, and the per-project rows stored with it.
pub enum Outcome {
    Plain(Value),
    WithPredictions(Value, Vec<PredictionRow>),
}

async fn record_outcome(
    state: &WorkerState,
    job: &JobRow,
    outcome: Result<Outcome, JobError>,
    elapsed_ms: f64,
) -> Result<(), StoreError> {
    let store = &state.store;
    let counted = |outcome: &str| {
        let labels = metrics::JobLabels {
            kind: job.kind.as_str().into(),
            state: outcome.into(),
        };
        let m = metrics::global();
        m.jobs_finished.get_or_create(&labels).inc();
        m.job_duration
            .get_or_create(&labels)
            .observe(elapsed_ms / 1000.0);
    };
    match outcome {
        Ok(outcome) => {
            let (result, rows) = match outcome {
                Outcome::Plain(v) => (v, Vec::new()),
                Outcome::WithPredictions(v, rows) => (v, rows),
            };
            let kept = store
                .set_outcome(
                    &job.id,
                    &state.name,
                    JobOutcome::Succeeded {
                        result: &result,
                        predictions: &rows,
                    },
                )
                .await?;
            if kept {
                counted("succeeded");
                count_predictions(&rows);
                tracing::info!(elapsed_ms, "job succeeded");
            } else {
                tracing::warn!("job was taken over while running; this outcome is dropped");
            }
        }
        Err(JobError::Cancelled(e)) => {
            counted("cancelled");
            tracing::info!(reason = %e, elapsed_ms, "job cancelled");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Cancelled { error: &e })
                .await?;
        }
        Err(JobError::Permanent(e)) => {
            counted("failed");
            tracing::warn!(error = %e, elapsed_ms, "job failed permanently");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Failed { error: &e })
                .await?;
        }
        Err(JobError::Transient(e)) if job.attempts >= job.max_attempts => {
            let e = format!(
                "{e} (attempt {} of {}; giving up)",
                job.attempts, job.max_attempts
            );
            counted("dead");
            tracing::warn!(error = %e, "job is dead");
            store
                .set_outcome(&job.id, &state.name, JobOutcome::Dead { error: &e })
                .await?;
        }
        Err(JobError::Transient(e)) => {
            let delay = backoff(job.attempts);
            let run_at = Utc::now()
                + chrono::Duration::from_std(delay)
                    .unwrap_or_else(|_| chrono::Duration::seconds(1));
            counted("retry");
            tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "job failed; will retry");
            let msg = format!(
                "{e} (attempt {} of {}; retrying)",
                job.attempts, job.max_attempts
            );
            if store
                .set_outcome(
                    &job.id,
                    &state.name,
                    JobOutcome::Retry {
                        error: &msg,
                        run_at,
                    },
                )
                .await?
            {
                let message = JobMessage {
                    job_id: job.id.clone(),
                    kind: job.kind,
                    request_id: job.request_id.clone(),
                };
                // If this push fails the reconciler finds the queued row
                // without a message and pushes it again.
                match state.queue.push(job.queue, &message, Some(run_at)).await {
                    Ok(task_id) => store.mark_pushed(&job.id, &task_id).await?,
                    Err(e) => store.mark_push_failed(&job.id, &e.to_string()).await?,
                }
            }
        }
    }
    Ok(())
}

fn count_predictions(rows: &[PredictionRow]) {
    let m = metrics::global();
    let mut counts: BTreeMap<(Target, bool), u64> = BTreeMap::new();
    for r in rows {
        *counts.entry((r.target, r.error.is_none())).or_default() += 1;
    }
    for ((target, ok), n) in counts {
        m.predictions
            .get_or_create(&metrics::PredictionLabels {
                target: target.as_str().into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .inc_by(n);
    }
}

/// 2 s, 4 s, 8 s ... capped at 5 minutes.
fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 8) as u32;
    Duration::from_secs((1u64 << exp).min(300))
}

async fn run_predict(
    state: &WorkerState,
    job: &JobRow,
    p: &PredictJob,
) -> Result<Outcome, JobError> {
    if p.targets.is_empty() {
        return Err(JobError::Permanent("no targets requested".into()));
    }
    crate::cancel::at_start(state, job).await?;
    let mut models = BTreeMap::new();
    for &t in &p.targets {
        models.insert(t, state.models.production(t).await?);
    }
    // Unknown ids come back from the feature query itself: no extra round
    // trip to ask which projects exist.
    let ids = match &p.projects {
        ProjectSelection::Ids(ids) => ids.clone(),
        ProjectSelection::AllOpen => state.backend.open_project_ids().await?,
    };
    let as_of = Utc::now();
    let batch = state.config.batch_size.max(1);
    let chunks = ids.len().div_ceil(batch).max(1);
    let mut entries: Vec<Value> = Vec::with_capacity(ids.len() * models.len());
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows_out: Vec<PredictionRow> = Vec::new();
    let mut predicted = 0usize;
    let mut errors = 0usize;

    for (i, chunk) in ids.chunks(batch).enumerate() {
        if i > 0 {
            crate::cancel::checkpoint(state, job, &format!("before scoring chunk {}", i + 1))
                .await?;
        }
        let extraction = extract_features(&state.backend, chunk, as_of).await?;
        for (k, v) in &extraction.skipped {
            *skipped.entry(k.clone()).or_default() += v;
        }
        let unknown: std::collections::HashSet<i64> = extraction.unknown.iter().copied().collect();
        let have: HashMap<i64, usize> = extraction
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.project_id, i))
            .collect();
        let rows = Arc::new(extraction.rows);
        for (&target, loaded) in &models {
            let model = loaded.model.clone();
            let rows_for = rows.clone();
            // Scoring a large chunk is CPU work: keep it off the async threads.
            let preds = if rows.len() > 64 {
                tokio::task::spawn_blocking(move || model.predict_many(&rows_for))
                    .await
                    .map_err(|e| JobError::Transient(format!("scoring task failed: {e}")))?
            } else {
                model.predict_many(&rows_for)
            };
            for &pid in chunk {
                let Some(&idx) = have.get(&pid) else {
                    errors += 1;
                    let error = if unknown.contains(&pid) {
                        format!("unknown project {pid}")
                    } else {
                        format!(
                            "project {pid} has no usable data as of {}",
                            as_of.date_naive()
                        )
                    };
                    entries.push(json!({"project_id": pid, "target": target, "error": error}));
                    rows_out.push(PredictionRow {
                        job_id: job.id.clone(),
                        project_id: pid,
                        target,
                        model_version: None,
                        value: None,
                        class: None,
                        output: None,
                        error: Some(error),
                    });
                    continue;
                };
                let pred = &preds[idx];
                predicted += 1;
                let output = serde_json::to_value(pred).unwrap_or(Value::Null);
                let mut entry = json!({
                    "project_id": pid,
                    "target": target,
                    "model_version": loaded.version,
                });
                if let (Value::Object(e), Value::Object(o)) = (&mut entry, &output) {
                    for (k, v) in o {
                        if !v.is_null() {
                            e.insert(k.clone(), v.clone());
                        }
                    }
                }
                entries.push(entry);
                rows_out.push(PredictionRow {
                    job_id: job.id.clone(),
                    project_id: pid,
                    target,
                    model_version: Some(loaded.version),
                    value: pred.value,
                    class: pred.class.clone(),
                    output: Some(output),
                    error: None,
                });
            }
        }
        if chunks > 1 {
            state
                .store
                .set_progress(
                    &job.id,
                    &state.name,
                    &format!("scoring chunk {}/{}", i + 1, chunks),
                    (i + 1) as f64 / chunks as f64,
                )
                .await?;
        }
    }
    let versions: BTreeMap<String, Value> = models
        .iter()
        .map(|(t, m)| {
            (
                t.to_string(),
                json!({"version": m.version, "fallback_from": m.fallback_from}),
            )
        })
        .collect();
    Ok(Outcome::WithPredictions(
        json!({
            "as_of": as_of,
            "feature_set_version": FEATURE_SET_VERSION,
            "models": versions,
            "summary": {
                "projects": ids.len(),
                "predicted": predicted,
                "errors": errors,
            },
            "skipped": skipped,
            "predictions": entries,
        }),
        rows_out,
    ))
}

async fn run_retrain(
    state: &WorkerState,
    job: &JobRow,
    r: &RetrainJob,
) -> Result<Outcome, JobError> {
    if r.targets.is_empty() {
        return Err(JobError::Permanent("no targets requested".into()));
    }
    let store = &state.store;
    crate::cancel::checkpoint(state, job, "before extracting").await?;
    store
        .set_progress(&job.id, &state.name, "extracting", 0.05)
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
    let mut failures = Vec::new();
    for (i, &target) in r.targets.iter().enumerate() {
        let base = 0.1 + 0.85 * i as f64 / n as f64;
        let span = 0.85 / n as f64;
        crate::cancel::checkpoint(state, job, &format!("before fitting {target}")).await?;
        store
            .set_progress(&job.id, &state.name, &format!("fitting {target}"), base)
            .await?;
        // Stages reported from the training thread reach the jobs table
        // through a channel; only the latest one matters.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, f64)>(64);
        let mut opts = train_options(&state.config, target);
        opts.progress = Some(Arc::new(move |stage: &str, frac: f64| {
            let _ = tx.try_send((stage.to_string(), frac));
        }));
        let reporter = {
            let (store, id, worker) = (store.clone(), job.id.clone(), state.name.clone());
            tokio::spawn(async move {
                while let Some((stage, frac)) = rx.recv().await {
                    let stage = format!("{target}: {stage}");
                    let _ = store
                        .set_progress(&id, &worker, &stage, base + span * 0.8 * frac)
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
                &state.name,
                &format!("registering {target}"),
                base + 0.8 / n as f64,
            )
            .await?;
        crate::cancel::checkpoint(state, job, &format!("before registering {target}")).await?;
        let dir = state.config.model_storage_path.join(target.as_str());
        let file = format!("{target}-{}.json", job.id);
        let model_for = model.clone();
        let saved = tokio::task::spawn_blocking(move || ml::save_artifact(&dir, &file, &model_for))
            .await
            .map_err(|e| JobError::Transient(format!("artifact task failed: {e}")))?
            .map_err(|e| JobError::Transient(format!("writing artifact: {e}")))?;
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
        let (stage, reason) = gate(&report, production);
        store
            .set_model_stage(target, row.version, stage.clone(), Some(&reason))
            .await?;
        state.models.invalidate(target);
        if let Err(e) = prune(state, target).await {
            tracing::warn!(model.target = %target, error = %e, "model retention failed; the maintenance job tries again");
        }
        tracing::info!(model.target = %target, model.version = row.version, stage = stage.as_str(), %reason, "model registered");
        let mut entry = json!({"version": row.version, "stage": stage.as_str(), "reason": reason, "report": metrics});
        if let Some(mlflow) = &state.mlflow {
            entry["mlflow"] = export_to_mlflow(state, mlflow, &row, &stage, &metrics).await;
        }
        out.insert(target.to_string(), entry);
    }
    if failures.len() == n {
        return Err(JobError::Permanent(failures.join("; ")));
    }
    Ok(Outcome::Plain(json!({
        "snapshot": snapshot,
        "data_fingerprint": fingerprint,
        "feature_set_version": FEATURE_SET_VERSION,
        "targets": out,
    })))
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

/// Applies MODEL_RETENTION: older versions (never production) lose their
/// rows and artifacts. A failure here is logged, not fatal: the new model
/// is already registered.
/// Applies `MODEL_RETENTION` to one target: the newest versions and the
/// production one stay; older rows and their artifacts go. Returns the
/// versions removed.
pub async fn prune(state: &WorkerState, target: Target) -> Result<Vec<i32>, StoreError> {
    let removed = state
        .store
        .prune_models(target, state.config.model_retention)
        .await?;
    for m in &removed {
        if let Err(e) = std::fs::remove_file(&m.artifact_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(model.target = %target, model.version = m.version, error = %e, "could not remove artifact");
        }
        tracing::info!(model.target = %target, model.version = m.version, "model version removed by retention");
    }
    Ok(removed.into_iter().map(|m| m.version).collect())
}

/// The training options for `target` from configuration; shared with the
/// offline `rpa-ml train` so both fit the same way.
pub fn train_options(config: &Config, target: Target) -> TrainOptions {
    TrainOptions {
        seed: 42,
        min_training_samples: config.min_training_samples,
        threshold: match target {
            Target::CompletionTime => config.completion_time_mae_threshold,
            Target::BudgetVariance => config.budget_variance_mae_threshold,
            Target::Risk => config.risk_score_accuracy_threshold,
        },
        tuning: config.enable_hyperparameter_tuning,
        max_trials: config.max_trials as usize,
        progress: None,
    }
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
fn gate(report: &ml::TrainReport, production: Option<(i32, f64, &str)>) -> (ModelStage, String) {
    let higher_is_better = report.metric == "accuracy";
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
