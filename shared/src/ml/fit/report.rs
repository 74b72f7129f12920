//! Stage 5, the report: the model's hold-out figures beside every baseline
//! on the same rows, the gate, risk's class frequencies, and the
//! predicted-vs-actual pairs for the ops page.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ml::features::{FEATURE_SET_VERSION, FIRST_PROGRESS_FEATURE, feature_names};
use crate::ml::metrics::{accuracy, argmax, macro_f1, mae, median};
use crate::ml::model::TrainedModel;
use crate::ml::training::{RiskClass, TrainingSet};
use crate::ml::{Metric, Target};

use super::baselines::{fit_tree, linear_baseline, logistic_baseline};
use super::split::Split;
use super::{CvReport, LearnerChoice, TrainError, TrainOptions, better, metric_of, predict_rows};

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
    /// Regressions: the learner chosen on validation rows inside the
    /// training data, why, and every candidate's validation MAE; `None`
    /// for risk, for reports older than the choice, and when the training
    /// projects are too few for a validation slice (the booster ships).
    #[serde(default)]
    pub learner_choice: Option<LearnerChoice>,
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
    /// Every baseline's metric over the same start snapshots, by name.
    #[serde(default)]
    pub baselines_start_snapshot: BTreeMap<String, f64>,
    #[serde(default)]
    pub feature_set_version: String,
    pub skipped: BTreeMap<String, u64>,
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
        Target::CompletionTime | Target::BudgetVariance => serde_json::json!(v),
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
pub(super) fn report(
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
    let pick_class = |v: &[usize]| starts.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let holdout = metric_of(target, &pred, &s.eval_y);
    if !holdout.is_finite() {
        return Err(TrainError::Fit(format!(
            "{target}: hold-out metric is not finite"
        )));
    }
    let start_metric = metric_of(target, &pick(&pred), &pick(&s.eval_y));

    let mut baselines = BTreeMap::new();
    let mut baselines_start = BTreeMap::new();
    let mut references = BTreeMap::new();
    let (mut macro_f1_v, mut freqs, mut baseline_f1) = (None, None, None);
    let (constant_name, planning_name) = match target {
        Target::Risk => ("majority", "linear_planning"),
        Target::CompletionTime | Target::BudgetVariance => ("median", "linear_planning"),
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
            let constant = vec![majority; truth.len()];
            baselines.insert(constant_name.to_string(), accuracy(&constant, &truth));
            baselines_start.insert(
                constant_name.to_string(),
                accuracy(&pick_class(&constant), &pick_class(&truth)),
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
                    baselines_start.insert(
                        name.to_string(),
                        accuracy(&pick_class(&answers), &pick_class(&truth)),
                    );
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
        Target::CompletionTime | Target::BudgetVariance => {
            let med = median(&s.train_y);
            for (name, answers) in [
                (constant_name, vec![med; s.eval_y.len()]),
                (
                    planning_name,
                    linear_baseline(target, s, FIRST_PROGRESS_FEATURE, true)?,
                ),
                (
                    "linear_all_features",
                    linear_baseline(target, s, feature_names().len(), false)?,
                ),
            ] {
                baselines.insert(name.to_string(), mae(&answers, &s.eval_y));
                let at_start = mae(&pick(&answers), &pick(&s.eval_y));
                if at_start.is_finite() {
                    baselines_start.insert(name.to_string(), at_start);
                }
            }
        }
    }
    baselines_start.retain(|_, v: &mut f64| v.is_finite());
    let (baseline_name, baseline) = baselines
        .iter()
        .fold(None::<(&String, f64)>, |best, (k, v)| match best {
            Some((_, b)) if !better(target, *v, b) => best,
            _ if v.is_finite() => Some((k, *v)),
            _ => best,
        })
        .map(|(k, v)| (k.clone(), v))
        .unwrap_or_else(|| ("none".to_string(), f64::NAN));
    // The share of the baseline's error (or of its misclassified share)
    // the model removes.
    let improvement = match target.metric() {
        Metric::Accuracy => 1.0 - (1.0 - holdout) / (1.0 - baseline),
        Metric::Mae => 1.0 - holdout / baseline,
    };
    let passed = match target.metric() {
        Metric::Accuracy => holdout >= opts.threshold,
        Metric::Mae => holdout <= opts.threshold,
    };
    Ok(TrainReport {
        target,
        metric: target.metric().as_str().to_string(),
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
        learner_choice: None,
        interval_coverage: None,
        interval_mean_width: None,
        macro_f1: macro_f1_v,
        baseline_macro_f1: baseline_f1,
        class_frequencies: freqs,
        holdout_pairs: holdout_pairs(target, set, s, &pred),
        start_snapshot_holdout: start_metric.is_finite().then_some(start_metric),
        baselines_start_snapshot: baselines_start,
        feature_set_version: FEATURE_SET_VERSION.to_string(),
        skipped: set.skipped.clone(),
    })
}
