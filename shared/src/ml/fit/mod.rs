//! Training: the entry points (`train`, `evaluate`), their options and
//! errors, and what every stage shares (the target's metric, scoring
//! snapshot rows). The stages, in the order `train` runs them:
//! - `split`: fitting rows and hold-out rows, and the newest-share slices;
//! - `search`: the optional grouped-CV search and its confirmation round;
//! - `calibration`: risk's overrun residuals and decision weights (from a
//!   slice of the training projects), conformal radii (from the hold-out);
//! - `learners`: the boosters fitted on the chosen parameters;
//! - `choice`: for the regressions, the learner shipped (booster, OLS on
//!   every feature, or a blend; a baseline if it beats them all), chosen on
//!   validation rows inside the training data;
//! - `report`: the honest report against the `baselines` on the same
//!   held-out rows.
//!
//! `risk` holds the risk model's raw scores, shared by the search and the
//! calibration.
//!
//! Everything here is deterministic for a given training set and seed: the
//! boosters draw rows and columns from seeded generators, the search draws
//! candidates and folds from one, and no result depends on thread timing.

mod baselines;
mod calibration;
mod choice;
mod learners;
mod report;
mod risk;
mod search;
mod split;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::features::FEATURE_SET_VERSION;
use super::metrics::{accuracy, mae};
use super::model::{BlendedRegressor, Params, TrainedModel};
use super::training::{RiskClass, Snapshot, TrainingSet};
use super::{Metric, Target};
use calibration::{CALIBRATION_SHARE, calibrate_overrun, holdout_conformal};
pub(crate) use choice::{Pick, fit_baseline};
use choice::{choose, fit_all_features};
use learners::{fit_boosted, learner_name, wrap};
use report::report;
use search::search;
use split::values;

pub use choice::LearnerChoice;
pub use report::{ClassFrequencies, TrainReport};
pub use search::{CvReport, CvTrial};

pub(crate) use learners::{Fitted, default_params};
pub(crate) use split::split;
// Only the labs and tests reach these from outside the stages.
#[cfg(test)]
pub(crate) use baselines::fit_tree;

#[cfg(test)]
pub(crate) use learners::fit_ordinal;

/// Called with a stage name ("searching 3/10", "calibrating", "fitting",
/// "evaluating") and the share of this `train` call done so far (0..=1).
pub type ProgressFn = Arc<dyn Fn(&str, f64) + Send + Sync>;

#[derive(Clone)]
pub struct TrainOptions {
    /// Seeds the boosters' row and column sampling and the search's
    /// candidates and folds: same training set and seed, same model.
    pub seed: u64,
    /// Fewer usable projects for the target than this refuses to train.
    pub min_training_samples: usize,
    /// MAE gate for the regressions (at most), accuracy gate for risk (at least).
    pub threshold: f64,
    /// Search hyper-parameters by grouped k-fold CV on the training projects
    /// (`ENABLE_HYPERPARAMETER_TUNING`); off fits the documented defaults.
    pub tuning: bool,
    /// At most this many candidate parameter sets, the defaults first
    /// (`MAX_TRIALS`); 0 counts as 1.
    pub max_trials: usize,
    /// Stage reports while training runs; `None` reports nothing.
    pub progress: Option<ProgressFn>,
}

impl TrainOptions {
    /// The contract's default gate for `target`, seed 42, no search.
    pub fn new(target: Target) -> Self {
        TrainOptions {
            seed: 42,
            min_training_samples: 50,
            threshold: match target {
                Target::CompletionTime => 5.0,
                Target::BudgetVariance => 0.15,
                Target::Risk => 0.75,
            },
            tuning: false,
            max_trials: 10,
            progress: None,
        }
    }

    fn report(&self, stage: &str, done: f64) {
        if let Some(p) = &self.progress {
            p(stage, done.clamp(0.0, 1.0));
        }
    }
}

impl fmt::Debug for TrainOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrainOptions")
            .field("seed", &self.seed)
            .field("min_training_samples", &self.min_training_samples)
            .field("threshold", &self.threshold)
            .field("tuning", &self.tuning)
            .field("max_trials", &self.max_trials)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "not enough training data for {target}: {found} usable projects, MIN_TRAINING_SAMPLES is {min}"
    )]
    NotEnoughData {
        target: Target,
        found: usize,
        min: usize,
    },
    #[error("{0}")]
    Fit(String),
}

/// The model's point predictions for snapshot rows: days remaining,
/// variance, or class index (as f64) with class probabilities.
pub(crate) fn predict_rows(
    model: &TrainedModel,
    rows: &[&Snapshot],
) -> Vec<(f64, Option<[f64; 3]>)> {
    let feature_rows = feature_rows(rows.iter().copied());
    model
        .predict_many(&feature_rows)
        .into_iter()
        .map(|p| match model.target {
            Target::CompletionTime => (p.days_remaining.unwrap_or(0.0), None),
            Target::BudgetVariance => (p.value.unwrap_or(0.0), None),
            Target::Risk => {
                let probs = p.probabilities.map(|m| {
                    let mut a = [0.0; 3];
                    for (i, c) in RiskClass::NAMES.iter().enumerate() {
                        a[i] = m.get(*c).copied().unwrap_or(0.0);
                    }
                    a
                });
                let class = p
                    .class
                    .as_deref()
                    .and_then(|c| RiskClass::NAMES.iter().position(|n| *n == c))
                    .unwrap_or(0);
                (class as f64, probs)
            }
        })
        .collect()
}

/// The target's metric: MAE for regressions, accuracy for risk.
fn metric_of(target: Target, pred: &[f64], truth: &[f64]) -> f64 {
    match target.metric() {
        Metric::Accuracy => {
            let p: Vec<usize> = pred.iter().map(|v| *v as usize).collect();
            let t: Vec<usize> = truth.iter().map(|v| *v as usize).collect();
            accuracy(&p, &t)
        }
        Metric::Mae => mae(pred, truth),
    }
}

fn better(target: Target, a: f64, b: f64) -> bool {
    target.metric().better(a, b)
}

/// The model's metric on `set`'s hold-out (grid snapshots of the held-out
/// projects the target is defined for): comparable between a candidate and
/// the production model when both are evaluated on the same set.
pub fn evaluate(model: &TrainedModel, set: &TrainingSet) -> Result<f64, TrainError> {
    if !model.is_compatible() {
        return Err(TrainError::Fit(format!(
            "model uses feature set {}; this build computes {FEATURE_SET_VERSION}",
            model.feature_set_version()
        )));
    }
    let s = split(model.target, set);
    if s.eval.is_empty() {
        return Err(TrainError::Fit(format!(
            "{}: the hold-out has no rows",
            model.target
        )));
    }
    let pred: Vec<f64> = predict_rows(model, &s.eval).iter().map(|p| p.0).collect();
    let m = metric_of(model.target, &pred, &s.eval_y);
    if m.is_finite() {
        Ok(m)
    } else {
        Err(TrainError::Fit(format!(
            "{}: hold-out metric is not finite",
            model.target
        )))
    }
}

/// Fits `target` on the training projects and evaluates on the held-out ones.
/// Synchronous and CPU-bound: run it on a blocking thread.
pub fn train(
    target: Target,
    set: &TrainingSet,
    opts: &TrainOptions,
) -> Result<(TrainedModel, TrainReport), TrainError> {
    let started = Instant::now();
    let found = set.projects(target);
    let s = split(target, set);
    if found < opts.min_training_samples.max(2) || s.train_projects < 2 || s.eval_projects == 0 {
        return Err(TrainError::NotEnoughData {
            target,
            found,
            min: opts.min_training_samples,
        });
    }

    let (params, cv) = if opts.tuning {
        let cv = search(target, set, &s, opts)?;
        (cv.best_params, Some(cv))
    } else {
        (default_params(target), None)
    };
    let search_share = if opts.tuning { 0.6 } else { 0.0 };

    // Risk turns its overrun regression into class probabilities with
    // residuals from a slice of its own (see `calibration.rs`).
    let calibration = match target {
        Target::Risk => {
            opts.report("calibrating", search_share);
            calibrate_overrun(set, &s, &params, opts.seed, CALIBRATION_SHARE)?
        }
        Target::CompletionTime | Target::BudgetVariance => None,
    };

    opts.report("fitting", search_share + (1.0 - search_share) * 0.4);
    let fit_started = Instant::now();
    let rows = values(&s.train);
    let mut fitted = fit_boosted(
        target,
        &rows,
        &s.train_y,
        &s.train_overrun,
        &params,
        opts.seed,
    )?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    if let (Fitted::Risk(r), Some(c)) = (&mut fitted, calibration) {
        r.residuals = c.residuals;
        r.decision_weights = c.weights;
    }
    let mut learner = learner_name(target, &params);
    let choice = match target {
        Target::Risk => None,
        Target::CompletionTime | Target::BudgetVariance => {
            opts.report("choosing", search_share + (1.0 - search_share) * 0.6);
            choose(target, set, &s, &params, opts.seed)?
        }
    };
    let mut model = wrap(target, set, fitted, learner.clone());
    match choice.as_ref().map(|c| c.0) {
        None => {}
        Some(Pick::Blend(w)) if w >= 1.0 => {}
        Some(Pick::Blend(w)) => {
            let Params::Boosted(boosted) = model.params else {
                return Err(TrainError::Fit(format!("{target}: no booster to blend")));
            };
            let linear = fit_all_features(&s.train, &s.train_y)?;
            learner = if w <= 0.0 {
                "OLS on all features (standardized), intervals from its own residuals".to_string()
            } else {
                format!(
                    "blend: {w:.1} x {learner} + {:.1} x OLS on all features",
                    1.0 - w
                )
            };
            model.params = Params::Blend(BlendedRegressor {
                boosted,
                linear,
                weight: w,
            });
        }
        Some(pick) => {
            model.params = Params::Linear(fit_baseline(target, pick, &s.train, &s.train_y)?);
            learner = format!(
                "baseline {}, no intervals",
                choice.as_ref().map_or("", |c| c.1.chosen.as_str())
            );
        }
    }
    model.learner = learner;
    let coverage = holdout_conformal(&mut model, &s, opts.seed);

    opts.report("evaluating", search_share + (1.0 - search_share) * 0.8);
    let mut report = report(target, set, &s, &model, opts)?;
    if let Some((c, w)) = coverage {
        report.interval_coverage = Some(c);
        report.interval_mean_width = Some(w);
    }
    report.fit_seconds = fit_seconds;
    report.params = serde_json::to_value(params).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = report.params.as_object_mut() {
        obj.insert(
            "target_transform".into(),
            match target {
                Target::Risk => "log1p(max(slip, variance)); cancellation by log-loss",
                Target::CompletionTime | Target::BudgetVariance => "log1p",
            }
            .into(),
        );
    }
    report.cv = cv;
    report.learner_choice = choice.map(|c| c.1);
    report.train_seconds = started.elapsed().as_secs_f64();
    opts.report("evaluating", 1.0);
    Ok((model, report))
}

/// Snapshots as the rows a model scores (the training data has no project
/// identity or plan attached; scoring does not need them).
pub(crate) fn feature_rows<'a>(rows: impl Iterator<Item = &'a Snapshot>) -> Vec<super::FeatureRow> {
    rows.map(|r| super::FeatureRow {
        project_id: 0,
        as_of: crate::backend::time::day_start(r.cutoff),
        values: r.values.clone(),
        elapsed_days: r.elapsed_days,
        start_date: None,
        planned_days: None,
    })
    .collect()
}
