//! Training: split, optional search, conformal calibration, the final fit,
//! and an honest report against plain baselines on the same held-out rows.
//!
//! Everything here is deterministic for a given training set and seed: the
//! boosters draw rows and columns from seeded generators, the search draws
//! candidates and folds from one, and no result depends on thread timing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Target;
use super::boost::{BoostParams, Booster, Columns, Objective};
use super::features::{FEATURE_SET_VERSION, FIRST_PROGRESS_FEATURE, feature_names};
use super::linear::{LinearModel, fit_linear, fit_logistic};
use super::metrics::{accuracy, argmax, conformal_quantile, macro_f1, mae, median};
use super::model::{
    BoostedRegressor, CALIBRATION_GROUPS, Conformal, LEVELS, MAX_REMAINING_DAYS, OrdinalBoosters,
    OverrunRisk, Params, TrainedModel, Transform, calibration_group, ordinal_probabilities,
    overrun_probabilities, weighted_argmax,
};
use super::training::{RiskClass, Snapshot, TrainingSet};
use super::tree::{self, CartParams, TreeModel};

/// The reference CART tree for risk (tree.rs): depth and leaf size.
const TREE_MAX_DEPTH: usize = 7;
/// Snapshots of one project are alike; a leaf must hold more than a couple of projects' worth.
const TREE_MIN_LEAF_ROWS: usize = 20;

/// Share of the training projects, most recently closed, that calibrate
/// risk's overrun distribution (the hold-out that reports accuracy is never
/// used for it).
const CALIBRATION_SHARE: f64 = 0.2;
/// Below this many calibration rows in a group (start / later), the group
/// borrows the pooled radii.
const MIN_GROUP_ROWS: usize = 30;
/// Grouped folds of the search.
const CV_FOLDS: usize = 3;
/// The search runs on at most this many training projects (drawn with the
/// seed), which keeps ten trials of three targets within a minute on two
/// cores; the chosen parameters are then fitted on all training projects.
const CV_MAX_PROJECTS: usize = 500;

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

/// One candidate of the search and its mean CV metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CvTrial {
    pub params: BoostParams,
    pub metric: f64,
    /// The metric on each validation fold.
    #[serde(default)]
    pub fold_metrics: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CvReport {
    pub folds: usize,
    /// Training projects the search ran on (a seeded sample when there are
    /// more than it needs).
    pub projects: usize,
    /// The defaults first; the chosen set is the best mean unless it does
    /// not beat the defaults by more than the fold-to-fold noise, here and
    /// again in the confirmation round (then the defaults are kept).
    pub trials: Vec<CvTrial>,
    pub best_params: BoostParams,
    /// Mean over folds of the target's metric on the validation folds' grid rows.
    pub best_metric: f64,
    /// Training projects of the confirmation round, fitted on all but the
    /// most recently closed and validated on those (0: there was none).
    #[serde(default)]
    pub confirm_projects: usize,
    /// The defaults and the first round's winner, scored again at full
    /// scale; empty when the first round kept the defaults.
    #[serde(default)]
    pub confirmation: Vec<CvTrial>,
}

/// Risk calibration on the hold-out: how often each class was answered,
/// its mean predicted probability, and how often it occurred.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassFrequencies {
    pub observed: BTreeMap<String, f64>,
    pub predicted: BTreeMap<String, f64>,
    pub mean_probability: BTreeMap<String, f64>,
    /// Accuracy had the answer been the most probable class instead: the
    /// price of answering classes as often as they occur.
    #[serde(default)]
    pub most_likely_accuracy: Option<f64>,
    /// How often each class would be answered that way.
    #[serde(default)]
    pub most_likely_predicted: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub target: Target,
    /// "mae" or "accuracy".
    pub metric: String,
    /// The metric over all grid snapshots of the held-out projects: MAE in
    /// days (completion time) or in variance ratio; accuracy for risk.
    pub holdout: f64,
    /// The best of the baselines on the same rows.
    pub baseline: f64,
    pub baseline_name: String,
    /// Every baseline by name, on the same rows: "median" / "majority";
    /// "linear_planning", OLS (ordinal logistic for risk) on the planning
    /// attributes alone, as a planner would estimate at the start; and
    /// "linear_all_features", the same on every feature the model sees,
    /// progress included (usually the best of them).
    #[serde(default)]
    pub baselines: BTreeMap<String, f64>,
    /// Other interpretable references on the same rows: for risk,
    /// "cart_tree" (a depth-7 CART tree).
    #[serde(default)]
    pub references: BTreeMap<String, f64>,
    /// 1 - error / baseline error: MAE for regressions, error rate for risk.
    #[serde(default)]
    pub improvement_over_baseline: f64,
    pub threshold: f64,
    pub passed: bool,
    /// Rows (grid and random training-only cut-offs) and projects the model
    /// was fitted on.
    pub rows: usize,
    pub projects: usize,
    pub holdout_rows: usize,
    pub holdout_projects: usize,
    /// Seconds of the final fit alone.
    pub fit_seconds: f64,
    /// Seconds of the whole `train` call (search, calibration, fit, evaluation).
    #[serde(default)]
    pub train_seconds: f64,
    pub learner: String,
    /// The learner's parameters as fitted.
    #[serde(default)]
    pub params: serde_json::Value,
    /// The search, when tuning was on.
    #[serde(default)]
    pub cv: Option<CvReport>,
    /// Hold-out coverage of the conformal intervals by level ("0.8", "0.9").
    #[serde(default)]
    pub interval_coverage: Option<BTreeMap<String, f64>>,
    /// Mean hold-out interval width by level, in the target's units.
    #[serde(default)]
    pub interval_mean_width: Option<BTreeMap<String, f64>>,
    pub macro_f1: Option<f64>,
    /// Risk: macro-F1 of each baseline on the same rows (the constant
    /// baseline answers one class; the linear ones their most probable).
    #[serde(default)]
    pub baseline_macro_f1: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub class_frequencies: Option<ClassFrequencies>,
    /// Up to [`HOLDOUT_PAIRS`] hold-out rows, evenly spaced:
    /// `{"project_id", "predicted", "actual"}` in the target's units (class
    /// names for risk), for a predicted-vs-actual chart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holdout_pairs: Vec<serde_json::Value>,
    /// The metric over the held-out start snapshots alone (the planning view).
    pub start_snapshot_holdout: Option<f64>,
    #[serde(default)]
    pub feature_set_version: String,
    pub skipped: BTreeMap<String, u64>,
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

/// Rows of one target: fitting rows (all cut-offs of training projects) and
/// evaluation rows (grid cut-offs of held-out projects).
pub(crate) struct Split<'a> {
    pub train: Vec<&'a Snapshot>,
    pub train_y: Vec<f64>,
    /// Risk only: the overrun of completed projects (`None`: cancelled).
    pub train_overrun: Vec<Option<f64>>,
    pub eval: Vec<&'a Snapshot>,
    pub eval_y: Vec<f64>,
    pub train_projects: usize,
    pub eval_projects: usize,
}

pub(crate) fn split(target: Target, set: &TrainingSet) -> Split<'_> {
    let mut s = Split {
        train: Vec::new(),
        train_y: Vec::new(),
        train_overrun: Vec::new(),
        eval: Vec::new(),
        eval_y: Vec::new(),
        train_projects: 0,
        eval_projects: 0,
    };
    for p in &set.projects {
        if set.defined(target, p) {
            if p.holdout {
                s.eval_projects += 1;
            } else {
                s.train_projects += 1;
            }
        }
    }
    for r in &set.rows {
        let Some(y) = set.value(target, r) else {
            continue;
        };
        if set.projects[r.project].holdout {
            if r.on_grid {
                s.eval.push(r);
                s.eval_y.push(y);
            }
        } else {
            s.train.push(r);
            s.train_y.push(y);
            s.train_overrun.push(set.overrun(r));
        }
    }
    s
}

/// The distinct projects of `rows`, in index order.
fn projects_of(rows: &[&Snapshot]) -> Vec<usize> {
    let mut p: Vec<usize> = rows.iter().map(|r| r.project).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// `projects` split into the older ones and the most recently closed
/// `share` of them (by end date, ties by id), like the hold-out; `None`
/// unless the newest part has at least `min` projects and two are left.
fn newest_share(
    set: &TrainingSet,
    projects: &[usize],
    share: f64,
    min: usize,
) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut by_end = projects.to_vec();
    by_end.sort_by_key(|&i| (set.projects[i].end, set.projects[i].id));
    let n = ((by_end.len() as f64) * share).round() as usize;
    if n < min || n + 2 > by_end.len() {
        return None;
    }
    let newest = by_end.split_off(by_end.len() - n);
    Some((by_end, newest))
}

fn values<'a>(rows: &[&'a Snapshot]) -> Vec<&'a [f64]> {
    rows.iter().map(|r| r.values.as_slice()).collect()
}

/// The untuned parameters (all targets): leaves of a few dozen rows, so
/// one project's snapshots cannot make a leaf alone.
pub(crate) fn default_params(_target: Target) -> BoostParams {
    BoostParams {
        max_depth: 5,
        ..BoostParams::DEFAULT
    }
}

/// A log-loss booster's leaves hold hessian p(1-p), well under 1 per row
/// for a rare event like cancellation: the same rows take an eighth of the
/// squared-error weight.
fn log_loss_params(p: &BoostParams) -> BoostParams {
    BoostParams {
        min_leaf_weight: p.min_leaf_weight / 8.0,
        ..*p
    }
}

/// Seeded draws from a small grid, the defaults first, no duplicates.
pub(crate) fn candidates(target: Target, max_trials: usize, seed: u64) -> Vec<BoostParams> {
    let first = default_params(target);
    let mut out = vec![first];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a11_5eed);
    let leaf: &[f64] = &[10.0, 20.0, 40.0, 80.0];
    let mut attempts = 0;
    while out.len() < max_trials.max(1) && attempts < 1000 {
        attempts += 1;
        let pick = |rng: &mut ChaCha8Rng, v: &[f64]| v[rng.gen_range(0..v.len())];
        let c = BoostParams {
            iterations: [150, 300][rng.gen_range(0..2)],
            learning_rate: pick(&mut rng, &[0.05, 0.08, 0.12]),
            max_depth: [3, 4, 5, 6, 7][rng.gen_range(0..5)],
            min_leaf_weight: pick(&mut rng, leaf),
            l2: pick(&mut rng, &[0.5, 1.0, 3.0]),
            subsample: pick(&mut rng, &[0.7, 0.8, 1.0]),
            colsample_bytree: pick(&mut rng, &[0.6, 0.8, 1.0]),
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A fitted learner, before it is wrapped into a `TrainedModel`.
pub(crate) enum Fitted {
    Regressor(BoostedRegressor),
    /// Only the learner comparison fits it (see `fit_ordinal`).
    #[cfg_attr(not(test), allow(dead_code))]
    Ordinal(OrdinalBoosters),
    Risk(OverrunRisk),
}

/// A squared-error booster on log(1 + y), standardized.
fn fit_log_regressor(
    x: &Columns,
    y: &[f64],
    params: &BoostParams,
    seed: u64,
) -> Result<BoostedRegressor, TrainError> {
    let transform = Transform::Log1p;
    let z: Vec<f64> = y.iter().map(|v| transform.forward(*v)).collect();
    let n = z.len().max(1) as f64;
    let mean = z.iter().sum::<f64>() / n;
    let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
        .sqrt()
        .max(1e-9);
    let std: Vec<f64> = z.iter().map(|v| (v - mean) / sd).collect();
    let booster =
        Booster::fit(x, &std, Objective::SquaredError, params, seed).map_err(TrainError::Fit)?;
    Ok(BoostedRegressor {
        booster,
        transform,
        mean,
        sd,
        intervals: None,
    })
}

/// Fits the target's learner. For risk, `overrun` holds each row's overrun
/// (`None` for cancelled projects) and `y` is not needed; the residuals are
/// left for `calibrate`.
pub(crate) fn fit_boosted(
    target: Target,
    rows: &[&[f64]],
    y: &[f64],
    overrun: &[Option<f64>],
    params: &BoostParams,
    seed: u64,
) -> Result<Fitted, TrainError> {
    let width = feature_names().len();
    match target {
        Target::Risk => {
            let x = Columns::from_rows(rows, width);
            let cancelled: Vec<f64> = overrun
                .iter()
                .map(|o| f64::from(u8::from(o.is_none())))
                .collect();
            let cancel = Booster::fit(
                &x,
                &cancelled,
                Objective::LogLoss,
                &log_loss_params(params),
                seed ^ 0x9e37,
            )
            .map_err(TrainError::Fit)?;
            let (done_rows, done_y): (Vec<&[f64]>, Vec<f64>) = rows
                .iter()
                .zip(overrun)
                .filter_map(|(r, o)| o.map(|o| (*r, o)))
                .unzip();
            if done_rows.is_empty() {
                return Err(TrainError::Fit(
                    "risk: no completed training projects".into(),
                ));
            }
            let overrun = fit_log_regressor(
                &Columns::from_rows(&done_rows, width),
                &done_y,
                params,
                seed,
            )?;
            Ok(Fitted::Risk(OverrunRisk {
                cancel,
                overrun,
                residuals: Vec::new(),
                decision_weights: [1.0; 3],
            }))
        }
        _ => Ok(Fitted::Regressor(fit_log_regressor(
            &Columns::from_rows(rows, width),
            y,
            params,
            seed,
        )?)),
    }
}

/// The ordinal pair, P(risk ≥ medium) and P(risk = high): measured against
/// the overrun model (see model.rs), kept for that comparison.
#[cfg(test)]
pub(crate) fn fit_ordinal(
    rows: &[&[f64]],
    y: &[f64],
    params: &BoostParams,
    seed: u64,
) -> Result<Fitted, TrainError> {
    let x = Columns::from_rows(rows, feature_names().len());
    let p = log_loss_params(params);
    let ge: Vec<f64> = y.iter().map(|v| f64::from(u8::from(*v >= 1.0))).collect();
    let hi: Vec<f64> = y.iter().map(|v| f64::from(u8::from(*v >= 2.0))).collect();
    let at_least_medium =
        Booster::fit(&x, &ge, Objective::LogLoss, &p, seed).map_err(TrainError::Fit)?;
    let high =
        Booster::fit(&x, &hi, Objective::LogLoss, &p, seed ^ 0x9e37).map_err(TrainError::Fit)?;
    Ok(Fitted::Ordinal(OrdinalBoosters {
        at_least_medium,
        high,
    }))
}

pub(crate) fn wrap(
    target: Target,
    set: &TrainingSet,
    fitted: Fitted,
    learner: String,
) -> TrainedModel {
    TrainedModel {
        target,
        feature_set_version: FEATURE_SET_VERSION.to_string(),
        feature_names: feature_names().into_iter().map(String::from).collect(),
        learner,
        training_fingerprint: set.fingerprint(),
        params: match fitted {
            Fitted::Regressor(r) => Params::Boosted(r),
            Fitted::Ordinal(o) => Params::Ordinal(o),
            Fitted::Risk(r) => Params::Overrun(r),
        },
    }
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
    match target {
        Target::Risk => {
            let p: Vec<usize> = pred.iter().map(|v| *v as usize).collect();
            let t: Vec<usize> = truth.iter().map(|v| *v as usize).collect();
            accuracy(&p, &t)
        }
        _ => mae(pred, truth),
    }
}

fn better(target: Target, a: f64, b: f64) -> bool {
    match target {
        Target::Risk => a > b,
        _ => a < b,
    }
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

    let calibration = if target == Target::Risk {
        opts.report("calibrating", search_share);
        calibrate_overrun(set, &s, &params, opts.seed, CALIBRATION_SHARE)?
    } else {
        None
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
    let learner = learner_name(target, &params);
    let mut model = wrap(target, set, fitted, learner);
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
                _ => "log1p",
            }
            .into(),
        );
    }
    report.cv = cv;
    report.train_seconds = started.elapsed().as_secs_f64();
    opts.report("evaluating", 1.0);
    Ok((model, report))
}

fn learner_name(target: Target, p: &BoostParams) -> String {
    let trees = format!(
        "{} trees, depth {}, learning rate {}",
        p.iterations, p.max_depth, p.learning_rate
    );
    match target {
        Target::CompletionTime => format!(
            "forust-ml gradient boosting, squared error on log(1 + days remaining) ({trees})"
        ),
        Target::BudgetVariance => {
            format!("forust-ml gradient boosting, squared error on log(1 + variance) ({trees})")
        }
        Target::Risk => format!(
            "forust-ml gradient boosting: P(cancelled) by log-loss and log(1 + overrun) by squared error, classes from the overrun's conformal distribution, answered at their observed frequencies ({trees})"
        ),
    }
}

/// The overrun's signed residuals for risk, per calibration group, and the
/// decision weights that make the answered classes as frequent as the
/// observed ones. A model fitted on all but the most recently closed
/// training projects is scored on their grid rows, so the spread mimics the
/// hold-out (later projects than those fitted on). The hold-out itself is
/// never used here: risk's probabilities and answers come from this slice,
/// and its accuracy is measured there. `None` when the slice is too small.
pub(crate) fn calibrate_overrun(
    set: &TrainingSet,
    s: &Split<'_>,
    params: &BoostParams,
    seed: u64,
    share: f64,
) -> Result<Option<RiskCalibration>, TrainError> {
    let Some((_, newest)) = newest_share(set, &projects_of(&s.train), share, 2) else {
        return Ok(None);
    };
    let mut is_cal = vec![false; set.projects.len()];
    for i in newest {
        is_cal[i] = true;
    }
    let mut fit_rows = Vec::new();
    let mut fit_y = Vec::new();
    let mut fit_overrun = Vec::new();
    // Grid rows of the slice: class, and the overrun where it is known
    // (completed projects only).
    let mut cal_rows = Vec::new();
    let mut cal_class = Vec::new();
    let mut cal_overrun = Vec::new();
    for ((r, y), o) in s.train.iter().zip(&s.train_y).zip(&s.train_overrun) {
        if is_cal[r.project] {
            if r.on_grid {
                cal_rows.push(*r);
                cal_class.push(*y as usize);
                cal_overrun.push(*o);
            }
        } else {
            fit_rows.push(r.values.as_slice());
            fit_y.push(*y);
            fit_overrun.push(*o);
        }
    }
    if cal_overrun.iter().all(Option::is_none) || fit_overrun.iter().all(Option::is_none) {
        return Ok(None);
    }
    let Fitted::Risk(r) = fit_boosted(Target::Risk, &fit_rows, &fit_y, &fit_overrun, params, seed)?
    else {
        return Ok(None);
    };
    let scores = RiskScores::new(&r, &cal_rows, &cal_overrun);
    let mut groups = vec![Vec::new(); CALIBRATION_GROUPS];
    for (g, e) in &scores.residuals {
        groups[*g].push(*e);
    }
    let groups = residual_groups(groups);
    Ok(Some(RiskCalibration {
        weights: decision_weights(&scores.probabilities(&groups), &cal_class),
        residuals: groups,
    }))
}

/// What the calibration slice sets in a risk model.
pub(crate) struct RiskCalibration {
    residuals: Vec<Vec<f64>>,
    weights: [f64; 3],
}

/// How far the answered class frequencies may stray from the observed ones
/// on the calibration slice.
const CLASS_FREQUENCY_TOLERANCE: f64 = 0.02;

/// Weights for (low, medium, high), low fixed at 1, from a grid: the most
/// accurate set whose answered class frequencies are all within
/// `CLASS_FREQUENCY_TOLERANCE` of the observed ones, or, when none is, the
/// set that comes closest.
fn decision_weights(p: &[[f64; 3]], truth: &[usize]) -> [f64; 3] {
    let n = truth.len().max(1) as f64;
    let mut observed = [0.0; 3];
    for t in truth {
        observed[(*t).min(2)] += 1.0 / n;
    }
    // (within tolerance, accuracy or -gap, weights); the first best wins.
    let mut best: Option<(bool, f64, [f64; 3])> = None;
    for m in 0..=40 {
        for h in 0..=20 {
            let w = [1.0, 1.0 + 0.05 * f64::from(m), 0.6 + 0.05 * f64::from(h)];
            let mut freq = [0.0; 3];
            let mut hits = 0usize;
            for (q, t) in p.iter().zip(truth) {
                let c = weighted_argmax(q, &w);
                freq[c] += 1.0 / n;
                hits += usize::from(c == *t);
            }
            let gap = (0..3)
                .map(|c| (freq[c] - observed[c]).abs())
                .fold(0.0, f64::max);
            let ok = gap <= CLASS_FREQUENCY_TOLERANCE;
            let score = if ok { hits as f64 / n } else { -gap };
            let wins = match best {
                None => true,
                Some((b_ok, b_score, _)) => (ok && !b_ok) || (ok == b_ok && score > b_score),
            };
            if wins {
                best = Some((ok, score, w));
            }
        }
    }
    best.map_or([1.0; 3], |(_, _, w)| w)
}

/// Predictions of `m` on `x`, on its transformed scale.
fn centres(m: &BoostedRegressor, x: &Columns) -> Vec<f64> {
    m.booster
        .predict(x)
        .iter()
        .map(|score| m.mean + m.sd * score)
        .collect()
}

/// Signed residuals of `m` on `rows`, on its transformed scale.
fn residuals(m: &BoostedRegressor, rows: &[&Snapshot], truth: &[f64]) -> Vec<f64> {
    let x = Columns::from_rows(&values(rows), feature_names().len());
    centres(m, &x)
        .iter()
        .zip(truth)
        .map(|(c, y)| m.transform.forward(*y) - c)
        .collect()
}

/// Split-conformal intervals from the final model's own residuals on the
/// hold-out (projects it never saw, the most recently closed), per
/// calibration group. The shipped radii use every held-out row. The
/// reported coverage is cross-fitted: the held-out projects are split in
/// two seeded halves and each half is covered by the radii of the other,
/// so no row is judged by radii it helped set. Point predictions, and so
/// the hold-out MAE and the gate, are untouched.
fn holdout_conformal(
    model: &mut TrainedModel,
    s: &Split<'_>,
    seed: u64,
) -> Option<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let Params::Boosted(m) = &mut model.params else {
        return None;
    };
    let mut projects = projects_of(&s.eval);
    projects.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xc04e_7a6e));
    let half: BTreeMap<usize, usize> = projects
        .iter()
        .enumerate()
        .map(|(k, p)| (*p, k % 2))
        .collect();
    let half_of = |r: &Snapshot| half.get(&r.project).copied().unwrap_or(0);
    let mut all = vec![Vec::new(); CALIBRATION_GROUPS];
    let mut halves = [all.clone(), all.clone()];
    for (r, e) in s.eval.iter().zip(residuals(m, &s.eval, &s.eval_y)) {
        let g = calibration_group(r.elapsed_days, &r.values);
        all[g].push(e);
        halves[half_of(r)][g].push(e);
    }
    let cross = [conformal_radii(&halves[1]), conformal_radii(&halves[0])];
    m.intervals = conformal_radii(&all);
    let mut total = IntervalCounts::default();
    for (h, radii) in cross.into_iter().enumerate() {
        let mut judge = model.clone();
        if let Params::Boosted(b) = &mut judge.params {
            b.intervals = Some(radii?);
        }
        let (rows, y): (Vec<&Snapshot>, Vec<f64>) = s
            .eval
            .iter()
            .zip(&s.eval_y)
            .filter(|(r, _)| half_of(r) == h)
            .map(|(r, y)| (*r, *y))
            .unzip();
        total.add(&interval_counts(&judge, &rows, &y));
    }
    if total.rows == 0 {
        return None;
    }
    let by_level = |v: &dyn Fn(usize) -> f64| {
        LEVELS
            .iter()
            .enumerate()
            .map(|(k, l)| (format!("{l}"), v(k)))
            .collect::<BTreeMap<_, _>>()
    };
    Some((
        by_level(&|k| total.hits[k] as f64 / total.rows as f64),
        by_level(&|k| total.width[k] / total.rows as f64),
    ))
}

/// Sorted residuals per group; a group with too few rows borrows the pool.
fn residual_groups(groups: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let mut pooled: Vec<f64> = groups.iter().flatten().copied().collect();
    pooled.sort_by(f64::total_cmp);
    groups
        .into_iter()
        .map(|mut v| {
            if v.len() >= MIN_GROUP_ROWS {
                v.sort_by(f64::total_cmp);
                v
            } else {
                pooled.clone()
            }
        })
        .collect()
}

/// Conformal radii of the absolute residuals per group.
fn conformal_radii(groups: &[Vec<f64>]) -> Option<Conformal> {
    let abs: Vec<Vec<f64>> = groups
        .iter()
        .map(|g| g.iter().map(|e| e.abs()).collect())
        .collect();
    let pooled: Vec<f64> = abs.iter().flatten().copied().collect();
    let radii = |scores: &[f64]| -> Option<Vec<f64>> {
        let use_scores = if scores.len() >= MIN_GROUP_ROWS {
            scores
        } else {
            &pooled
        };
        LEVELS
            .iter()
            .map(|l| conformal_quantile(use_scores, *l))
            .collect()
    };
    Some(Conformal {
        groups: abs.iter().map(|g| radii(g)).collect::<Option<Vec<_>>>()?,
        rows: groups.iter().map(Vec::len).collect(),
    })
}

/// Grouped k-fold search over seeded candidates, then a confirmation.
/// Every candidate is scored on a seeded sample of `CV_MAX_PROJECTS`
/// training projects. A sample that small favours simpler models than the
/// full set needs, so the round's winner, if it beats the defaults by more
/// than the folds' noise, is fitted again against the defaults on all but
/// the most recently closed `CONFIRM_SHARE` of the training projects and
/// scored on those (the hold-out's shape at the full set's scale); it
/// replaces the defaults only if it wins there too. Validation is on grid
/// rows, like the hold-out. For risk, each fold's class probabilities use
/// the overrun residuals of the *other* folds' validation rows (out-of-fold,
/// so no project calibrates its own prediction).
fn search(
    target: Target,
    set: &TrainingSet,
    s: &Split<'_>,
    opts: &TrainOptions,
) -> Result<CvReport, TrainError> {
    let projects = projects_of(&s.train);
    let mut shuffled = projects.clone();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0xf01d_5eed));
    let sample = CvSample::folds(set, &shuffled[..shuffled.len().min(CV_MAX_PROJECTS)]);
    let candidates = candidates(target, opts.max_trials, opts.seed);
    let total = candidates.len();
    let mut trials = Vec::with_capacity(total);
    for (t, params) in candidates.into_iter().enumerate() {
        opts.report(
            &format!("searching {}/{total}", t + 1),
            0.5 * t as f64 / total as f64,
        );
        trials.push(sample.trial(target, set, s, params, opts.seed)?);
    }
    let mut best = 0;
    for (i, t) in trials.iter().enumerate() {
        if t.metric.is_finite()
            && (!trials[best].metric.is_finite() || better(target, t.metric, trials[best].metric))
        {
            best = i;
        }
    }
    let mut confirmation = Vec::new();
    let mut confirm_projects = 0;
    if best != 0 && beats_defaults(target, &trials[0], &trials[best]) {
        if let Some(recent) = CvSample::most_recent(set, &projects, opts.seed) {
            opts.report("confirming the search's best", 0.5);
            let defaults = recent.trial(target, set, s, trials[0].params, opts.seed)?;
            opts.report("confirming the search's best", 0.55);
            let winner = recent.trial(target, set, s, trials[best].params, opts.seed)?;
            if !beats_defaults(target, &defaults, &winner) {
                best = 0;
            }
            confirm_projects = recent.projects;
            confirmation = vec![defaults, winner];
        }
    } else {
        best = 0;
    }
    Ok(CvReport {
        folds: sample.folds,
        projects: sample.projects,
        best_params: trials[best].params,
        best_metric: trials[best].metric,
        trials,
        confirm_projects,
        confirmation,
    })
}

/// Whether `challenger` beats `defaults` fold by fold by more than the
/// folds' noise: mean paired gain above its standard error. A best mean is
/// partly luck; this keeps the defaults unless the gain is real.
fn beats_defaults(target: Target, defaults: &CvTrial, challenger: &CvTrial) -> bool {
    if !(defaults.metric.is_finite() && challenger.metric.is_finite()) {
        return challenger.metric.is_finite();
    }
    let gains: Vec<f64> = defaults
        .fold_metrics
        .iter()
        .zip(&challenger.fold_metrics)
        .map(|(d, b)| match target {
            Target::Risk => b - d,
            _ => d - b,
        })
        .collect();
    let k = gains.len() as f64;
    let mean = gains.iter().sum::<f64>() / k.max(1.0);
    let sd = (gains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0)).sqrt();
    k >= 2.0 && mean > sd / k.sqrt()
}

/// Training projects dealt into validation folds for one round of the
/// search: grouped k-fold (each fold validated by a fit on the others), or
/// one fit on the older projects validated on the most recent ones, dealt
/// into folds for the paired comparison.
struct CvSample {
    /// Fold of each project of the training set: `usize::MAX` not used,
    /// `folds` fit-only (the recent split's older projects).
    fold_of: Vec<usize>,
    folds: usize,
    projects: usize,
    one_fit: bool,
}

/// Share of the training projects, most recently closed, that the
/// confirmation round validates on.
const CONFIRM_SHARE: f64 = 0.2;

impl CvSample {
    fn folds(set: &TrainingSet, projects: &[usize]) -> Self {
        let folds = CV_FOLDS.min(projects.len()).max(2);
        let mut fold_of = vec![usize::MAX; set.projects.len()];
        for (k, &p) in projects.iter().enumerate() {
            fold_of[p] = k % folds;
        }
        CvSample {
            fold_of,
            folds,
            projects: projects.len(),
            one_fit: false,
        }
    }

    /// Fit on all but the most recently closed `CONFIRM_SHARE` of
    /// `projects`, validate on those (in `CONFIRM_FOLDS` seeded folds).
    fn most_recent(set: &TrainingSet, projects: &[usize], seed: u64) -> Option<Self> {
        const CONFIRM_FOLDS: usize = 5;
        let (older, mut recent) = newest_share(set, projects, CONFIRM_SHARE, CONFIRM_FOLDS * 2)?;
        recent.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x002e_ce47));
        let mut fold_of = vec![usize::MAX; set.projects.len()];
        for p in older {
            fold_of[p] = CONFIRM_FOLDS;
        }
        for (k, &p) in recent.iter().enumerate() {
            fold_of[p] = k % CONFIRM_FOLDS;
        }
        Some(CvSample {
            fold_of,
            folds: CONFIRM_FOLDS,
            projects: projects.len(),
            one_fit: true,
        })
    }

    /// The mean metric of `params` over the validation folds' grid rows.
    fn trial(
        &self,
        target: Target,
        set: &TrainingSet,
        s: &Split<'_>,
        params: BoostParams,
        seed: u64,
    ) -> Result<CvTrial, TrainError> {
        let fits = if self.one_fit { 1 } else { self.folds };
        let mut per_fold: Vec<FoldScores> = Vec::with_capacity(self.folds);
        for round in 0..fits {
            let fitted_on = |f: usize| {
                f != usize::MAX
                    && if self.one_fit {
                        f == self.folds
                    } else {
                        f != round
                    }
            };
            let mut fit_rows = Vec::new();
            let mut fit_y = Vec::new();
            let mut fit_overrun = Vec::new();
            for ((r, y), o) in s.train.iter().zip(&s.train_y).zip(&s.train_overrun) {
                if fitted_on(self.fold_of[r.project]) {
                    fit_rows.push(r.values.as_slice());
                    fit_y.push(*y);
                    fit_overrun.push(*o);
                }
            }
            if fit_rows.is_empty()
                || (target == Target::Risk && fit_overrun.iter().all(Option::is_none))
            {
                continue;
            }
            let scorer = match fit_boosted(target, &fit_rows, &fit_y, &fit_overrun, &params, seed)?
            {
                Fitted::Risk(r) => Scorer::Risk(r),
                other => Scorer::Model(wrap(target, set, other, String::new())),
            };
            let validated = if self.one_fit {
                0..self.folds
            } else {
                round..round + 1
            };
            for fold in validated {
                let mut val = Vec::new();
                let mut val_y = Vec::new();
                let mut val_overrun = Vec::new();
                for ((r, y), o) in s.train.iter().zip(&s.train_y).zip(&s.train_overrun) {
                    if r.on_grid && self.fold_of[r.project] == fold {
                        val.push(*r);
                        val_y.push(*y);
                        val_overrun.push(*o);
                    }
                }
                if !val.is_empty() {
                    per_fold.push(scorer.score(target, &val, val_y, &val_overrun));
                }
            }
        }
        let metrics: Vec<f64> = (0..per_fold.len())
            .map(|k| match &per_fold[k] {
                FoldScores::Metric(m) => *m,
                FoldScores::Risk { truth, scores } => {
                    let mut groups = vec![Vec::new(); CALIBRATION_GROUPS];
                    for (j, other) in per_fold.iter().enumerate() {
                        if let (true, FoldScores::Risk { scores, .. }) = (j != k, other) {
                            for (g, r) in &scores.residuals {
                                groups[*g].push(*r);
                            }
                        }
                    }
                    let pred: Vec<f64> = scores
                        .probabilities(&residual_groups(groups))
                        .iter()
                        .map(|p| argmax(p) as f64)
                        .collect();
                    metric_of(target, &pred, truth)
                }
            })
            .collect();
        let metric = if metrics.is_empty() {
            f64::NAN
        } else {
            metrics.iter().sum::<f64>() / metrics.len() as f64
        };
        Ok(CvTrial {
            params,
            metric,
            fold_metrics: metrics,
        })
    }
}

/// A fold's fitted learner, ready to score validation rows.
enum Scorer {
    Model(TrainedModel),
    Risk(OverrunRisk),
}

impl Scorer {
    fn score(
        &self,
        target: Target,
        val: &[&Snapshot],
        val_y: Vec<f64>,
        val_overrun: &[Option<f64>],
    ) -> FoldScores {
        match self {
            Scorer::Model(model) => {
                let pred: Vec<f64> = predict_rows(model, val).iter().map(|p| p.0).collect();
                FoldScores::Metric(metric_of(target, &pred, &val_y))
            }
            Scorer::Risk(r) => FoldScores::Risk {
                truth: val_y,
                scores: RiskScores::new(r, val, val_overrun),
            },
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// One validation fold of a search trial.
enum FoldScores {
    Metric(f64),
    Risk { truth: Vec<f64>, scores: RiskScores },
}

/// A risk model's raw scores on some rows.
struct RiskScores {
    /// Calibration group per row.
    group: Vec<usize>,
    /// Predicted log overrun and cancellation log-odds per row.
    z: Vec<f64>,
    cancel: Vec<f64>,
    /// (calibration group, signed log residual) of the rows whose overrun
    /// is known (completed projects).
    residuals: Vec<(usize, f64)>,
}

impl RiskScores {
    fn new(r: &OverrunRisk, rows: &[&Snapshot], overrun: &[Option<f64>]) -> Self {
        let x = Columns::from_rows(&values(rows), feature_names().len());
        let z = centres(&r.overrun, &x);
        let group: Vec<usize> = rows
            .iter()
            .map(|row| calibration_group(row.elapsed_days, &row.values))
            .collect();
        let residuals = overrun
            .iter()
            .zip(&z)
            .zip(&group)
            .filter_map(|((o, z), g)| o.map(|o| (*g, r.overrun.transform.forward(o) - z)))
            .collect();
        RiskScores {
            cancel: r.cancel.predict(&x),
            group,
            z,
            residuals,
        }
    }

    /// Class probabilities per row, with `groups` (sorted residuals per
    /// calibration group) as the overrun's spread.
    fn probabilities(&self, groups: &[Vec<f64>]) -> Vec<[f64; 3]> {
        (0..self.z.len())
            .map(|i| {
                overrun_probabilities(self.z[i], sigmoid(self.cancel[i]), &groups[self.group[i]])
            })
            .collect()
    }
}

/// Hold-out rows kept in a report for the predicted-vs-actual chart.
pub const HOLDOUT_PAIRS: usize = 300;

/// Evenly spaced (predicted, actual) pairs of the hold-out rows.
fn holdout_pairs(
    target: Target,
    set: &TrainingSet,
    s: &Split<'_>,
    pred: &[f64],
) -> Vec<serde_json::Value> {
    let n = s.eval.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(HOLDOUT_PAIRS).max(1);
    let shown = |v: f64| match target {
        Target::Risk => serde_json::json!(RiskClass::NAMES[(v as usize).min(2)]),
        _ => serde_json::json!(v),
    };
    (0..n)
        .step_by(step)
        .map(|i| {
            serde_json::json!({
                "project_id": set.projects[s.eval[i].project].id,
                "predicted": shown(pred[i]),
                "actual": shown(s.eval_y[i]),
            })
        })
        .collect()
}

/// Hold-out figures of `model` and of the baselines on the same rows.
fn report(
    target: Target,
    set: &TrainingSet,
    s: &Split<'_>,
    model: &TrainedModel,
    opts: &TrainOptions,
) -> Result<TrainReport, TrainError> {
    let preds = predict_rows(model, &s.eval);
    let pred: Vec<f64> = preds.iter().map(|p| p.0).collect();
    let starts: Vec<usize> = (0..s.eval.len()).filter(|&i| s.eval[i].at_start).collect();
    let pick = |v: &[f64]| starts.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let holdout = metric_of(target, &pred, &s.eval_y);
    if !holdout.is_finite() {
        return Err(TrainError::Fit(format!(
            "{target}: hold-out metric is not finite"
        )));
    }
    let start_metric = metric_of(target, &pick(&pred), &pick(&s.eval_y));

    let mut baselines = BTreeMap::new();
    let mut references = BTreeMap::new();
    let (mut macro_f1_v, mut freqs, mut baseline_f1) = (None, None, None);
    let (constant_name, planning_name) = match target {
        Target::Risk => ("majority", "linear_planning"),
        _ => ("median", "linear_planning"),
    };
    match target {
        Target::Risk => {
            let truth: Vec<usize> = s.eval_y.iter().map(|y| *y as usize).collect();
            let p: Vec<usize> = pred.iter().map(|v| *v as usize).collect();
            macro_f1_v = Some(macro_f1(&p, &truth, 3));
            let mut counts = [0usize; 3];
            for y in &s.train_y {
                counts[(*y as usize).min(2)] += 1;
            }
            let majority = argmax(&counts.map(|c| c as f64));
            baselines.insert(
                constant_name.to_string(),
                accuracy(&vec![majority; truth.len()], &truth),
            );
            let mut f1s = BTreeMap::new();
            f1s.insert(
                constant_name.to_string(),
                macro_f1(&vec![majority; truth.len()], &truth, 3),
            );
            for (name, width) in [
                (planning_name, FIRST_PROGRESS_FEATURE),
                ("linear_all_features", feature_names().len()),
            ] {
                if let Some(answers) = logistic_baseline(s, width) {
                    baselines.insert(name.to_string(), accuracy(&answers, &truth));
                    f1s.insert(name.to_string(), macro_f1(&answers, &truth, 3));
                }
            }
            baseline_f1 = Some(f1s);
            let tree = fit_tree(s);
            let tp: Vec<usize> = s
                .eval
                .iter()
                .map(|r| argmax(&tree.probabilities(&r.values)))
                .collect();
            references.insert("cart_tree".to_string(), accuracy(&tp, &truth));
            let n = truth.len() as f64;
            let mut obs = BTreeMap::new();
            let mut predicted = BTreeMap::new();
            let mut mean_p = BTreeMap::new();
            let mut likely_freq = BTreeMap::new();
            let likely: Vec<usize> = preds
                .iter()
                .filter_map(|x| x.1)
                .map(|q| argmax(&q))
                .collect();
            let share = |v: &[usize], c: usize| v.iter().filter(|t| **t == c).count() as f64 / n;
            for (c, name) in RiskClass::NAMES.iter().enumerate() {
                obs.insert(name.to_string(), share(&truth, c));
                predicted.insert(name.to_string(), share(&p, c));
                likely_freq.insert(name.to_string(), share(&likely, c));
                mean_p.insert(
                    name.to_string(),
                    preds.iter().filter_map(|x| x.1).map(|q| q[c]).sum::<f64>() / n,
                );
            }
            freqs = Some(ClassFrequencies {
                observed: obs,
                predicted,
                mean_probability: mean_p,
                most_likely_accuracy: (likely.len() == truth.len())
                    .then(|| accuracy(&likely, &truth)),
                most_likely_predicted: likely_freq,
            });
        }
        _ => {
            let med = median(&s.train_y);
            baselines.insert(
                constant_name.to_string(),
                mae(&vec![med; s.eval_y.len()], &s.eval_y),
            );
            baselines.insert(
                planning_name.to_string(),
                linear_baseline(target, s, FIRST_PROGRESS_FEATURE, true)?,
            );
            baselines.insert(
                "linear_all_features".to_string(),
                linear_baseline(target, s, feature_names().len(), false)?,
            );
        }
    }
    let (baseline_name, baseline) = baselines
        .iter()
        .fold(None::<(&String, f64)>, |best, (k, v)| match best {
            Some((_, b)) if !better(target, *v, b) => best,
            _ if v.is_finite() => Some((k, *v)),
            _ => best,
        })
        .map(|(k, v)| (k.clone(), v))
        .unwrap_or_else(|| ("none".to_string(), f64::NAN));
    let improvement = match target {
        Target::Risk => 1.0 - (1.0 - holdout) / (1.0 - baseline),
        _ => 1.0 - holdout / baseline,
    };
    let passed = match target {
        Target::Risk => holdout >= opts.threshold,
        _ => holdout <= opts.threshold,
    };
    Ok(TrainReport {
        target,
        metric: match target {
            Target::Risk => "accuracy",
            _ => "mae",
        }
        .to_string(),
        holdout,
        baseline,
        baseline_name,
        baselines,
        references,
        improvement_over_baseline: improvement,
        threshold: opts.threshold,
        passed,
        rows: s.train.len(),
        projects: s.train_projects,
        holdout_rows: s.eval.len(),
        holdout_projects: s.eval_projects,
        fit_seconds: 0.0,
        train_seconds: 0.0,
        learner: model.learner.clone(),
        params: serde_json::Value::Null,
        cv: None,
        interval_coverage: None,
        interval_mean_width: None,
        macro_f1: macro_f1_v,
        baseline_macro_f1: baseline_f1,
        class_frequencies: freqs,
        holdout_pairs: holdout_pairs(target, set, s, &pred),
        start_snapshot_holdout: start_metric.is_finite().then_some(start_metric),
        feature_set_version: FEATURE_SET_VERSION.to_string(),
        skipped: set.skipped.clone(),
    })
}

/// Rows covered and summed interval widths, per level in `LEVELS`.
#[derive(Default)]
struct IntervalCounts {
    rows: usize,
    hits: [usize; LEVELS.len()],
    width: [f64; LEVELS.len()],
}

impl IntervalCounts {
    fn add(&mut self, other: &IntervalCounts) {
        self.rows += other.rows;
        for k in 0..LEVELS.len() {
            self.hits[k] += other.hits[k];
            self.width[k] += other.width[k];
        }
    }
}

/// How often the served intervals of `model` hold the truth on `rows`.
fn interval_counts(model: &TrainedModel, rows: &[&Snapshot], truth: &[f64]) -> IntervalCounts {
    let preds = model.predict_many(&feature_rows(rows.iter().copied()));
    let mut c = IntervalCounts::default();
    for ((p, r), y) in preds.iter().zip(rows).zip(truth) {
        let (Some([lo80, hi80]), Some([lo90, hi90])) = (p.interval_80, p.interval_90) else {
            continue;
        };
        // Intervals are in the units of `value`: total days for completion.
        let t = match model.target {
            Target::CompletionTime => r.elapsed_days + y,
            _ => *y,
        };
        c.rows += 1;
        for (k, (lo, hi)) in [(lo80, hi80), (lo90, hi90)].into_iter().enumerate() {
            c.hits[k] += usize::from(t >= lo && t <= hi);
            c.width[k] += hi - lo;
        }
    }
    c
}

/// MAE of OLS on the first `width` features. With `total`, it predicts the
/// total (completion time: remaining = total - elapsed), as a planner would.
fn linear_baseline(
    target: Target,
    s: &Split<'_>,
    width: usize,
    total: bool,
) -> Result<f64, TrainError> {
    let shift = |r: &Snapshot| match target {
        Target::CompletionTime if total => r.elapsed_days,
        _ => 0.0,
    };
    let rows: Vec<&[f64]> = s.train.iter().map(|r| &r.values[..width]).collect();
    let y: Vec<f64> = s
        .train
        .iter()
        .zip(&s.train_y)
        .map(|(r, y)| y + shift(r))
        .collect();
    let (m, _): (LinearModel, bool) = fit_linear(&rows, &y, width).map_err(TrainError::Fit)?;
    let pred: Vec<f64> = s
        .eval
        .iter()
        .map(|r| {
            let t = m.predict(&r.values[..width]) - shift(r);
            match target {
                Target::CompletionTime => t.clamp(0.0, MAX_REMAINING_DAYS),
                _ => t.max(-1.0),
            }
        })
        .collect();
    Ok(mae(&pred, &s.eval_y))
}

/// The answers (most probable class) of an ordinal pair of logistic
/// regressions on the first `width` features for the hold-out rows; `None`
/// if either cannot be fitted.
fn logistic_baseline(s: &Split<'_>, width: usize) -> Option<Vec<usize>> {
    let rows: Vec<&[f64]> = s.train.iter().map(|r| &r.values[..width]).collect();
    let ge: Vec<bool> = s.train_y.iter().map(|y| *y >= 1.0).collect();
    let hi: Vec<bool> = s.train_y.iter().map(|y| *y >= 2.0).collect();
    let a = fit_logistic(&rows, &ge, width).ok()?;
    let b = fit_logistic(&rows, &hi, width).ok()?;
    Some(
        s.eval
            .iter()
            .map(|r| {
                argmax(&ordinal_probabilities(
                    a.predict(&r.values),
                    b.predict(&r.values),
                ))
            })
            .collect(),
    )
}

/// The reference CART tree for risk on all training rows.
pub(crate) fn fit_tree(s: &Split<'_>) -> TreeModel {
    let rows = values(&s.train);
    let labels: Vec<usize> = s.train_y.iter().map(|y| *y as usize).collect();
    let classes = RiskClass::NAMES.iter().map(|c| c.to_string()).collect();
    tree::fit(
        &rows,
        &labels,
        classes,
        CartParams {
            max_depth: TREE_MAX_DEPTH,
            min_leaf: TREE_MIN_LEAF_ROWS,
            classes: RiskClass::NAMES.len(),
        },
    )
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
