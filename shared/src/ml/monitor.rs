//! What the `drift` job needs from the ML side: a model's training
//! reference (built at fit time), the window of recent projects' features,
//! and the actual outcomes of closed projects.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::drift::Reference;
use super::features::{FEATURE_SET_VERSION, FeatureRow, compute, feature_names};
use super::history::{self, Skips, TeamRecords};
use super::training::{RiskClass, TrainingSet, closed_project};
use super::{Prediction, Target, TrainedModel};
use crate::backend::time::day_start;
use crate::backend::{BackendDb, BackendError, Scope};

/// The number the prediction-drift check compares: days remaining for
/// completion time (what the model predicts; the elapsed part is known),
/// the variance ratio, or the risk class index.
pub fn prediction_scalar(target: Target, p: &Prediction) -> Option<f64> {
    match target {
        Target::CompletionTime => p.days_remaining,
        Target::BudgetVariance => p.value,
        Target::Risk => p
            .class
            .as_deref()
            .and_then(|c| RiskClass::NAMES.iter().position(|n| *n == c))
            .map(|i| i as f64),
    }
}

/// The values a classification target's predictions take (class indices).
fn categories(target: Target) -> Option<Vec<f64>> {
    target
        .is_classification()
        .then(|| (0..RiskClass::NAMES.len()).map(|i| i as f64).collect())
}

/// Features that follow the calendar, not the population: a team's track
/// record only grows, so projects starting today always show more prior
/// projects than training projects did at their start.
pub const CALENDAR_FEATURES: [&str; 4] = [
    "team_prior_projects_log",
    "team_prior_slip",
    "team_prior_cancel_rate",
    "team_prior_missing",
];

/// The training reference of `model`, on the planning view: binned
/// features of every project that had started when the training set was
/// built (open or closed, hold-out included: one row per project, as of its
/// start) and the distribution of its predictions on them.
///
/// This is the population the drift window is drawn from: the window holds
/// every project started recently, whatever its status, observed as of its
/// start by the same extraction and predicted by the same call. A reference
/// of closed projects only would over-represent short projects (long ones
/// have not closed yet), so any start feature that predicts duration, and
/// the predictions themselves, would differ from every window on a
/// perfectly stable backend. Only as of the start are open and closed
/// projects observed alike (progress features would differ otherwise).
///
/// The reference period is the population the model learnt from: it ends
/// at the latest start of a training project (hold-out excluded), so that
/// starts too recent to have closed into the training data (a shift
/// under way) are what the window is checked for, not part of the
/// reference. It spans the [`REFERENCE_DAYS`] before that end, widened to
/// the latest [`REFERENCE_MIN_ROWS`] starts on a quiet backend: a team's
/// track record grows with the calendar and the model reads it, so
/// predictions on starts from years ago differ from today's on a
/// population that never changed.
pub fn training_reference(model: &TrainedModel, set: &TrainingSet) -> Reference {
    let end = set
        .projects
        .iter()
        .filter(|p| !p.holdout)
        .map(|p| day_start(p.start))
        .max();
    reference_of(model, &reference_period(&set.starts, end))
}

/// The reference of `rows`: their features and the model's answers on them.
pub(crate) fn reference_of(model: &TrainedModel, rows: &[FeatureRow]) -> Reference {
    let target = model.target();
    let values: Vec<Vec<f64>> = rows.iter().map(|r| r.values.clone()).collect();
    let preds: Vec<f64> = model
        .predict_many(rows)
        .iter()
        .filter_map(|p| prediction_scalar(target, p))
        .collect();
    Reference::build(
        FEATURE_SET_VERSION,
        &feature_names(),
        &CALENDAR_FEATURES,
        &values,
        &preds,
        categories(target),
    )
}

/// Days of starts the reference covers (see `training_reference`).
pub const REFERENCE_DAYS: i64 = 180;
/// At least this many starts when the backend has them.
pub const REFERENCE_MIN_ROWS: usize = 400;

/// The starts of the reference period ending at `end` (all of them when
/// `None`), in their original order.
fn reference_period(starts: &[FeatureRow], end: Option<DateTime<Utc>>) -> Vec<FeatureRow> {
    let starts: Vec<&FeatureRow> = starts
        .iter()
        .filter(|r| end.is_none_or(|e| r.as_of <= e))
        .collect();
    let mut dates: Vec<DateTime<Utc>> = starts.iter().map(|r| r.as_of).collect();
    dates.sort_unstable_by(|a, b| b.cmp(a));
    let Some(latest) = dates.first() else {
        return Vec::new();
    };
    let by_days = *latest - Duration::days(REFERENCE_DAYS);
    let by_rows = dates[REFERENCE_MIN_ROWS.min(dates.len()) - 1];
    let from = by_days.min(by_rows);
    starts
        .into_iter()
        .filter(|r| r.as_of >= from)
        .cloned()
        .collect()
}

/// A closed project's actual outcome for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Actual {
    pub end: NaiveDate,
    /// Total days, variance ratio, or class index (see `class`).
    pub value: f64,
    pub class: Option<&'static str>,
}

/// The window of recent projects and the outcomes known today.
#[derive(Debug, Clone, Default)]
pub struct MonitoringData {
    /// One row per project started in the window, as of its start, in id order.
    pub window: Vec<FeatureRow>,
    pub actuals: BTreeMap<Target, HashMap<i64, Actual>>,
    pub skipped: BTreeMap<String, u64>,
}

/// The projects that started in the `window_days` before `now` (whatever
/// their status now), each observed as of its start like a training start
/// snapshot (see `training_reference`), and the actual outcomes of every
/// closed project.
pub async fn monitoring_data(
    db: &BackendDb,
    now: DateTime<Utc>,
    window_days: u32,
) -> Result<MonitoringData, BackendError> {
    let loaded = history::load(db, Scope::All).await?;
    let out = tokio::task::spawn_blocking(move || {
        let mut skips = loaded.skips;
        let teams = TeamRecords::from_projects(&loaded.projects);
        let window_start = now - Duration::days(i64::from(window_days));
        let mut ordered: Vec<&history::ProjectHist> = loaded.projects.iter().collect();
        ordered.sort_by_key(|p| p.id);
        let mut out = MonitoringData::default();
        for p in ordered {
            match p.start.map(day_start) {
                Some(s) if s >= window_start && s < now => {
                    out.window.push(compute(p, &teams, s, &mut skips));
                }
                Some(_) => {}
                None => skips.bump("project_without_start_date"),
            }
            let mut ignored = Skips::default();
            if let Some(c) = closed_project(p, &mut ignored) {
                let mut put = |t: Target, value: f64, class: Option<&'static str>| {
                    out.actuals.entry(t).or_default().insert(
                        c.id,
                        Actual {
                            end: c.end,
                            value,
                            class,
                        },
                    );
                };
                if c.completed {
                    put(
                        Target::CompletionTime,
                        (c.end - c.start).num_days() as f64,
                        None,
                    );
                }
                if let Some(v) = c.budget_variance {
                    put(Target::BudgetVariance, v, None);
                }
                if let Some(r) = c.risk {
                    put(
                        Target::Risk,
                        r as usize as f64,
                        Some(RiskClass::NAMES[r as usize]),
                    );
                }
            }
        }
        out.skipped = skips.0;
        out
    })
    .await
    .map_err(|e| BackendError::Query(format!("monitoring task failed: {e}")))?;
    Ok(out)
}
