//! The `score` job: every open project scored for every target that has a
//! production model, chunk by chunk (`BATCH_SIZE`) with progress and
//! cancellation checkpoints, the work of a predict job over all open
//! projects. Each answer becomes its project's latest forecast for the
//! target (kept in the same transaction as the job's outcome; unlike a
//! predict job's, its answers are not added to `predictions`), which
//! `GET /api/v1/projects/{id}/predictions` and `GET /api/v1/predictions`
//! read without a job. Enqueued by `SCORE_CRON` and after a production
//! model changes; runs in the low-priority lane.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use rpa_ml_shared::jobs::{Priority, ProjectSelection, ScoreJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::JobRow;

use crate::cancel;
use crate::outcome::{JobError, Outcome};
use crate::state::WorkerState;

pub async fn run(state: &WorkerState, job: &JobRow, s: &ScoreJob) -> Result<Outcome, JobError> {
    cancel::at_start(state, job).await?;
    let versions = state.store.production_versions().await?;
    if versions.is_empty() {
        return Ok(Outcome::Plain(json!({
            "reason": s.reason,
            "targets": {},
            "summary": {"projects": 0, "predicted": 0, "errors": 0},
            "coverage": Value::Null,
            "note": "no target has a production model: nothing to score",
        })));
    }
    let p = rpa_ml_shared::jobs::PredictJob {
        targets: versions.keys().copied().collect(),
        projects: ProjectSelection::AllOpen,
        priority: Priority::Low,
    };
    let (mut result, rows) = match super::predict::score(state, job, &p).await? {
        Outcome::WithPredictions(result, rows) | Outcome::Scored(result, rows) => (result, rows),
        Outcome::Plain(result) => (result, Vec::new()),
    };
    let projects = result["summary"]["projects"].as_u64().unwrap_or(0);
    // Per target: answered (now its latest forecast) and not answered.
    let mut per: BTreeMap<Target, (u64, u64)> = versions.keys().map(|&t| (t, (0, 0))).collect();
    for r in &rows {
        let e = per.entry(r.target).or_default();
        if r.error.is_none() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let answered: u64 = per.values().map(|(a, _)| a).sum();
    let asked = projects * per.len() as u64;
    let targets: serde_json::Map<String, Value> = per
        .iter()
        .map(|(t, (a, e))| {
            (
                t.to_string(),
                json!({
                    "model_version": versions.get(t),
                    "scored": a,
                    "errors": e,
                    "coverage": ratio(*a, projects),
                }),
            )
        })
        .collect();
    if let Value::Object(m) = &mut result {
        // Thousands of answers: the latest forecasts hold them; the job's
        // result keeps the figures.
        m.remove("predictions");
        m.insert("reason".into(), json!(s.reason));
        m.insert("targets".into(), Value::Object(targets));
        m.insert("coverage".into(), json!(ratio(answered, asked)));
    }
    tracing::info!(projects, answered, asked, "scoring run done");
    Ok(Outcome::Scored(result, rows))
}

fn ratio(a: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| a as f64 / of as f64)
}
