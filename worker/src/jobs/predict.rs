//! The `predict` job: production models score the requested projects (or
//! every open one) as of now, chunk by chunk (`BATCH_SIZE`), with progress
//! and a cancellation checkpoint between chunks. One stored row per project
//! and target; unknown projects are answered per project, not as a failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use rpa_ml_shared::jobs::{JobKind, JobPayload, PredictJob, ProjectSelection};
use rpa_ml_shared::ml::{FEATURE_SET_VERSION, Prediction, Target, extract_features};
use rpa_ml_shared::store::{JobRow, PredictionRow};

use crate::cancel;
use crate::models::ModelError;
use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

/// How long a prediction waiting for a first model sleeps between looks.
const FIRST_MODEL_POLL: Duration = Duration::from_secs(2);

/// Scores the job's projects, bounded by `PREDICTION_TIMEOUT` (a timeout is
/// transient: the job is tried again).
pub async fn run(state: &WorkerState, job: &JobRow, p: &PredictJob) -> Result<Outcome, JobError> {
    let limit = state.config.prediction_timeout;
    match tokio::time::timeout(limit, score(state, job, p)).await {
        Ok(res) => res,
        Err(_) => Err(JobError::Transient(format!(
            "prediction did not finish within PREDICTION_TIMEOUT ({} s)",
            limit.as_secs()
        ))),
    }
}

/// Scores `p`'s projects as of now, chunk by chunk: the work of a predict
/// job, and of a score job (`super::score`), which asks for every open
/// project.
pub(crate) async fn score(
    state: &WorkerState,
    job: &JobRow,
    p: &PredictJob,
) -> Result<Outcome, JobError> {
    if p.targets.is_empty() {
        return Err(JobError::Permanent("no targets requested".into()));
    }
    cancel::at_start(state, job).await?;
    let mut models = BTreeMap::new();
    for &t in &p.targets {
        match state.models.production(t).await {
            Ok(m) => {
                models.insert(t, m);
            }
            Err(ModelError::NoProduction { target, why }) => {
                return Err(wait_for_first_model(state, job, target, why).await);
            }
            Err(e) => return Err(e.into()),
        }
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
            cancel::checkpoint(state, job, &format!("before scoring chunk {}", i + 1)).await?;
        }
        let extraction = extract_features(&state.backend, chunk, as_of).await?;
        for (k, v) in &extraction.skipped {
            *skipped.entry(k.clone()).or_default() += v;
        }
        let unknown: HashSet<i64> = extraction.unknown.iter().copied().collect();
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
                let answer = match have.get(&pid) {
                    None if unknown.contains(&pid) => {
                        Err(("unknown_project", format!("unknown project {pid}"), None))
                    }
                    None => Err((
                        "no_usable_data",
                        format!(
                            "project {pid} has no usable data as of {}",
                            as_of.date_naive()
                        ),
                        None,
                    )),
                    Some(&idx) => match unanswered(target, pid, &preds[idx]) {
                        Some((code, error)) => Err((code, error, Some(loaded.version))),
                        None => Ok(idx),
                    },
                };
                let idx = match answer {
                    Ok(idx) => idx,
                    Err((code, error, version)) => {
                        // Not predicted: counted among the errors, with a
                        // code a client can act on.
                        errors += 1;
                        let mut entry = json!({"project_id": pid, "target": target, "error_code": code, "error": error});
                        if let Some(v) = version {
                            entry["model_version"] = json!(v);
                        }
                        entries.push(entry);
                        rows_out.push(PredictionRow {
                            job_id: job.id.clone(),
                            project_id: pid,
                            target,
                            model_version: version,
                            value: None,
                            class: None,
                            output: None,
                            error: Some(error),
                            as_of: Some(as_of),
                        });
                        continue;
                    }
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
                    as_of: Some(as_of),
                });
            }
        }
        if chunks > 1 {
            state
                .store
                .set_progress(
                    &job.id,
                    state.holder(job),
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

/// Why a model's answer holds nothing to report, if it does not: the error
/// code and message of the project's entry.
fn unanswered(target: Target, pid: i64, pred: &Prediction) -> Option<(&'static str, String)> {
    if pred.value.is_some() || pred.class.is_some() {
        return None;
    }
    Some(match target {
        Target::BudgetVariance => (
            "no_budget",
            format!(
                "project {pid} has no positive budget: budget variance is measured against one"
            ),
        ),
        Target::CompletionTime | Target::Risk => (
            "no_prediction",
            format!("the {target} model gave no answer for project {pid}"),
        ),
    })
}

/// A requested target has no production model. While a retrain of it is
/// queued or running (the first one, typically), the job waits for it:
/// deferred, its attempt given back, for up to `FIRST_MODEL_WAIT_SECS`
/// after it was accepted. Without one, it fails saying why.
async fn wait_for_first_model(
    state: &WorkerState,
    job: &JobRow,
    target: Target,
    why: String,
) -> JobError {
    let active = match state.store.active_jobs_of_kind(JobKind::Retrain).await {
        Ok(jobs) => jobs,
        Err(e) => return e.into(),
    };
    let retrain = active
        .iter()
        .find(|j| matches!(&j.payload, JobPayload::Retrain(r) if r.targets.contains(&target)));
    let limit = state.config.first_model_wait;
    let waited = (Utc::now() - job.created_at).to_std().unwrap_or_default();
    match retrain {
        Some(r) if waited < limit => JobError::Deferred {
            stage: format!(
                "waiting for retrain {} ({}) to give {target} a production model",
                r.id, r.state
            ),
            delay: FIRST_MODEL_POLL,
        },
        Some(r) => JobError::Permanent(format!(
            "no production model for {target} after waiting {} s (FIRST_MODEL_WAIT_SECS) for retrain {}: {why}",
            limit.as_secs(),
            r.id
        )),
        None => ModelError::NoProduction { target, why }.into(),
    }
}
