//! The `drift` job: per-feature shift of recent projects against each
//! production model's training reference, and realised performance.
//!
//! Every target gets a stored report, also when it cannot be checked (no
//! production model, a model fitted before references were recorded, too
//! few recent projects): the report then says why instead of a score.
//! Targets whose score is above RETRAINING_THRESHOLD get one retrain job
//! between them (or the active retrain already covering them).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use rpa_ml_shared::backend::time::day_start;
use rpa_ml_shared::jobs::{DriftJob, JobKind, JobPayload, RetrainJob};
use rpa_ml_shared::ml::drift::{
    REFERENCE_VERSION, Reference, Settings, WindowDrift, compare_window,
};
use rpa_ml_shared::ml::{
    self, Actual, FEATURE_SET_VERSION, MonitoringData, Target, prediction_scalar,
};
use rpa_ml_shared::store::{DriftReportRow, JobRow, ModelDocument, ModelRow, StoredPrediction};

use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

/// Pairs of predicted and actual outcome kept in a report (for a chart).
const MAX_PAIRS: usize = 500;

pub async fn run(state: &WorkerState, job: &JobRow, d: &DriftJob) -> Result<Outcome, JobError> {
    let config = &state.config;
    if !config.enable_model_monitoring {
        return Ok(Outcome::Plain(json!({
            "enabled": false,
            "message": "model monitoring is disabled (ENABLE_MODEL_MONITORING=false); nothing was checked",
            "reports": [],
        })));
    }
    state
        .store
        .set_progress(&job.id, state.holder(job), "loading recent projects", 0.05)
        .await?;
    let now = Utc::now();
    let window_days = config.drift_detection_window_days;
    let data = ml::monitoring_data(&state.backend, now, window_days).await?;
    let settings = Settings::default();

    let mut reports: Vec<DriftReportRow> = Vec::new();
    for (i, &target) in Target::ALL.iter().enumerate() {
        state
            .store
            .set_progress(
                &job.id,
                state.holder(job),
                &format!("checking {target}"),
                0.1 + 0.8 * i as f64 / Target::ALL.len() as f64,
            )
            .await?;
        reports.push(check_target(state, job, target, &data, now, &settings).await?);
    }

    // One retrain for every target that drifted, unless a retrain covering
    // it is already active.
    let drifted: BTreeSet<Target> = reports
        .iter()
        .filter(|r| r.drift_detected)
        .map(|r| r.target)
        .collect();
    let retrain_ids = enqueue_retrains(state, job, &drifted).await?;
    for r in &mut reports {
        if let Some(id) = retrain_ids.get(&r.target) {
            r.retrain_job_id = Some(id.clone());
            r.report["retrain_job_id"] = json!(id);
            let said = r.report["message"].as_str().unwrap_or("drift detected");
            r.report["message"] = json!(format!("{said}; retrain job {id} enqueued"));
        }
        state.store.insert_drift_report(r).await?;
    }

    Ok(Outcome::Plain(json!({
        "enabled": true,
        "reason": d.reason,
        "checked_at": now,
        "window_days": window_days,
        "window_projects": data.window.len(),
        "retraining_threshold": config.retraining_threshold,
        "skipped": data.skipped,
        "reports": reports.iter().map(|r| json!({
            "target": r.target,
            "model_version": r.model_version,
            "drift_score": r.drift_score,
            "drift_detected": r.drift_detected,
            "drifted_features": r.report.get("drifted_features").cloned().unwrap_or(Value::Null),
            "retrain_job_id": r.retrain_job_id,
            "message": r.report.get("message").cloned().unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
    })))
}

async fn check_target(
    state: &WorkerState,
    job: &JobRow,
    target: Target,
    data: &MonitoringData,
    now: DateTime<Utc>,
    settings: &Settings,
) -> Result<DriftReportRow, JobError> {
    let threshold = state.config.retraining_threshold;
    let mut report = json!({
        "target": target,
        "checked_at": now,
        "model_version": null,
        "drift_score": null,
        "drift_detected": false,
        "threshold": threshold,
        "window": {
            "days": state.config.drift_detection_window_days,
            "projects": data.window.len(),
            "view": "projects started in the window, as of their start date",
        },
        "features": [],
        "drifted_features": [],
        "prediction_drift": null,
        "realised": null,
        "retrain_job_id": null,
    });
    let unchecked = |mut report: Value, version: Option<i32>, status: &str, message: String| {
        report["status"] = json!(status);
        report["message"] = json!(message);
        report["model_version"] = json!(version);
        DriftReportRow {
            job_id: job.id.clone(),
            target,
            model_version: version,
            checked_at: now,
            drift_score: None,
            drift_detected: false,
            retrain_job_id: None,
            report,
        }
    };

    let Some(row) = state.store.production_model(target).await? else {
        return Ok(unchecked(
            report,
            None,
            "no_production_model",
            format!("{target} has no production model; nothing to compare against"),
        ));
    };
    let version = row.version;
    report["model_version"] = json!(version);
    report["realised"] = realised(state, target, &row, data).await?;

    let reference: Reference = match state
        .store
        .model_document(target, version, ModelDocument::DriftReference)
        .await?
    {
        Some(v) => match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => {
                return Ok(unchecked(
                    report,
                    Some(version),
                    "no_reference",
                    format!(
                        "{target} v{version}: its training reference is unreadable ({e}); retrain to monitor drift"
                    ),
                ));
            }
        },
        None => {
            return Ok(unchecked(
                report,
                Some(version),
                "no_reference",
                format!(
                    "{target} v{version} was trained before training references were recorded; \
                     retrain it to monitor drift"
                ),
            ));
        }
    };
    if reference.feature_set_version != FEATURE_SET_VERSION
        || reference.features.len() != ml::feature_names().len()
    {
        return Ok(unchecked(
            report,
            Some(version),
            "no_reference",
            format!(
                "{target} v{version}'s reference is for feature set {}; this build computes {FEATURE_SET_VERSION}",
                reference.feature_set_version
            ),
        ));
    }
    if reference.version != REFERENCE_VERSION {
        // Format 1 was built from the closed training projects only, which
        // on a stable backend differ from every window (long projects
        // close late): comparing with it would cry wolf.
        let message = format!(
            "{target} v{version}'s training reference has format {} (built from closed projects only); \
             this build compares against format {REFERENCE_VERSION} (every project started, as of its start); \
             retrain to monitor drift",
            reference.version
        );
        tracing::warn!(model.target = %target, model.version = version, reference.version = reference.version, "{message}");
        return Ok(unchecked(report, Some(version), "no_reference", message));
    }
    let loaded = state.models.production(target).await?;
    if loaded.version != version {
        return Ok(unchecked(
            report,
            Some(version),
            "model_unavailable",
            format!(
                "{target} v{version}'s artifact could not be loaded (v{} answers instead)",
                loaded.version
            ),
        ));
    }

    let rows: Vec<Vec<f64>> = data.window.iter().map(|r| r.values.clone()).collect();
    let (model, window) = (loaded.model.clone(), data.window.clone());
    let settings = *settings;
    let drift: WindowDrift = tokio::task::spawn_blocking(move || {
        let preds: Vec<f64> = model
            .predict_many(&window)
            .iter()
            .filter_map(|p| prediction_scalar(target, p))
            .collect();
        compare_window(&reference, &rows, &preds, &settings)
    })
    .await
    .map_err(|e| JobError::Transient(format!("drift task failed: {e}")))?;

    let detected = drift.insufficient.is_none() && drift.score > threshold;
    let drifted: Vec<&str> = drift
        .features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.name.as_str())
        .collect();
    report["status"] = json!(if drift.insufficient.is_some() {
        "insufficient_data"
    } else {
        "checked"
    });
    if let Some(m) = &drift.insufficient {
        report["message"] = json!(m);
    } else if detected {
        report["message"] = json!(format!(
            "drift score {:.3} is above the retraining threshold {threshold}",
            drift.score
        ));
    }
    report["drift_score"] = json!(drift.score);
    report["drift_detected"] = json!(detected);
    report["drifted_share"] = json!(drift.drifted_share);
    report["drifted_features"] = json!(drifted);
    report["features"] = json!(
        drift
            .features
            .iter()
            .map(|f| json!({
                "name": f.name,
                "method": f.method.as_str(),
                "score": f.score,
                "threshold": f.threshold,
                "p_value": f.p_value,
                "drifted": f.drifted,
                "monitored": f.monitored,
            }))
            .collect::<Vec<_>>()
    );
    let p = &drift.prediction;
    report["prediction_drift"] = json!({
        "method": p.method.as_str(),
        "score": p.score,
        "threshold": p.threshold,
        "p_value": p.p_value,
        "drifted": p.drifted,
        "reference": p.reference,
        "window": p.window,
    });
    Ok(DriftReportRow {
        job_id: job.id.clone(),
        target,
        model_version: Some(version),
        checked_at: now,
        drift_score: Some(drift.score),
        drift_detected: detected,
        retrain_job_id: None,
        report,
    })
}

/// The production model's stored predictions for projects that have closed
/// since: for each project, its latest prediction made before the day it
/// closed, against the actual outcome.
async fn realised(
    state: &WorkerState,
    target: Target,
    row: &ModelRow,
    data: &MonitoringData,
) -> Result<Value, JobError> {
    let empty = std::collections::HashMap::new();
    let actuals = data.actuals.get(&target).unwrap_or(&empty);
    let mut latest: BTreeMap<i64, StoredPrediction> = BTreeMap::new();
    for p in state
        .store
        .predictions_of_version(target, row.version)
        .await?
    {
        let Some(actual) = actuals.get(&p.project_id) else {
            continue;
        };
        if p.created_at >= day_start(actual.end) {
            continue;
        }
        // Oldest first: a later prediction replaces an earlier one.
        latest.insert(p.project_id, p);
    }
    let mut pairs: Vec<(i64, &Actual, Option<f64>, Option<String>)> = latest
        .into_iter()
        .filter_map(|(id, p)| actuals.get(&id).map(|a| (id, a, p.value, p.class)))
        .collect();
    // Most recently closed first, so the kept pairs are the newest.
    pairs.sort_by(|a, b| b.1.end.cmp(&a.1.end).then(a.0.cmp(&b.0)));
    let holdout = row.metrics.get("holdout").and_then(Value::as_f64);
    let (metric, value, json_pairs) = if target.is_classification() {
        let scored: Vec<(i64, String, &'static str)> = pairs
            .iter()
            .filter_map(|(id, a, _, c)| Some((*id, c.clone()?, a.class?)))
            .collect();
        let hits = scored.iter().filter(|(_, p, a)| p == a).count();
        let value = (!scored.is_empty()).then(|| hits as f64 / scored.len() as f64);
        (target.metric().as_str(), value, chart_pairs(&scored))
    } else {
        let scored: Vec<(i64, f64, f64)> = pairs
            .iter()
            .filter_map(|(id, a, v, _)| Some((*id, (*v)?, a.value)))
            .collect();
        let value = (!scored.is_empty()).then(|| {
            scored.iter().map(|(_, p, a)| (p - a).abs()).sum::<f64>() / scored.len() as f64
        });
        (target.metric().as_str(), value, chart_pairs(&scored))
    };
    let projects = if target.is_classification() {
        pairs.iter().filter(|p| p.3.is_some()).count()
    } else {
        pairs.iter().filter(|p| p.2.is_some()).count()
    };
    Ok(json!({
        "projects": projects,
        "metric": metric,
        "value": value,
        "holdout": holdout,
        "pairs": json_pairs,
    }))
}

/// Enqueues (or finds) a retrain for each drifted target; returns the job
/// id per target.
async fn enqueue_retrains(
    state: &WorkerState,
    job: &JobRow,
    drifted: &BTreeSet<Target>,
) -> Result<BTreeMap<Target, String>, JobError> {
    let mut ids = BTreeMap::new();
    if drifted.is_empty() {
        return Ok(ids);
    }
    for active in state.store.active_jobs_of_kind(JobKind::Retrain).await? {
        if let JobPayload::Retrain(r) = &active.payload {
            for t in r.targets.intersection(drifted) {
                ids.entry(*t).or_insert_with(|| active.id.clone());
            }
        }
    }
    let rest: BTreeSet<Target> = drifted
        .iter()
        .copied()
        .filter(|t| !ids.contains_key(t))
        .collect();
    if !rest.is_empty() {
        let submitted = rpa_ml_shared::submit::submit(
            &state.store,
            &state.queue,
            JobPayload::Retrain(RetrainJob {
                targets: rest.clone(),
                reason: "drift".into(),
                promote_first: false,
            }),
            state.config.job_max_attempts as i32,
            job.request_id.clone(),
        )
        .await?;
        tracing::info!(retrain.job = %submitted.job.id, created = submitted.created, targets = ?rest, "drift: retrain enqueued");
        for t in rest {
            ids.insert(t, submitted.job.id.clone());
        }
    }
    Ok(ids)
}

/// The first [`MAX_PAIRS`] (project, predicted, actual) triples, for a chart.
fn chart_pairs<P: serde::Serialize, A: serde::Serialize>(scored: &[(i64, P, A)]) -> Vec<Value> {
    scored
        .iter()
        .take(MAX_PAIRS)
        .map(|(id, p, a)| json!({"project_id": id, "predicted": p, "actual": a}))
        .collect()
}
