//! Fitting, evaluating and applying the models.
//!
//! Regressions are standardized linear models (linfa-linear OLS, with a
//! ridge fallback when the design is singular); completion time is learned
//! as days *remaining* (shared/notes/modeling.md). Risk is a CART tree
//! (see tree.rs for why not linfa-trees) whose leaves carry the class
//! frequencies of the training rows they hold. Every report compares the
//! model with plain baselines on the same held-out projects, which were
//! never trained on. No learner draws random numbers, so the same training
//! set always gives the same model.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Duration;
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::Target;
use super::features::{FEATURE_SET_VERSION, FIRST_PROGRESS_FEATURE, FeatureRow, feature_names};
use super::training::{RiskClass, Snapshot, TrainingSet};
use super::tree::{self, CartParams, TreeModel};

const TREE_MAX_DEPTH: usize = 7;
/// Snapshots of one project are alike; a leaf must hold more than a couple of projects' worth.
const TREE_MIN_LEAF_ROWS: usize = 20;
/// Ridge penalty per row on standardized features: small enough to change
/// nothing on a well-posed design, large enough to make a singular one solvable.
const RIDGE_LAMBDA: f64 = 1e-3;
const MAX_REMAINING_DAYS: f64 = 36_500.0;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// For learners that sample; the current ones draw no random numbers.
    pub seed: u64,
    pub min_training_samples: usize,
    /// MAE gate for the regressions (at most), accuracy gate for risk (at least).
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub target: Target,
    /// "mae" or "accuracy".
    pub metric: String,
    /// The metric over all grid snapshots of the held-out projects: MAE in
    /// days remaining (completion time) or in variance ratio; accuracy for risk.
    pub holdout: f64,
    /// The better of the plain baselines on the same rows.
    pub baseline: f64,
    pub baseline_name: String,
    pub threshold: f64,
    pub passed: bool,
    /// Rows (grid and random training-only cut-offs) and projects the model
    /// was fitted on.
    pub rows: usize,
    pub projects: usize,
    pub holdout_rows: usize,
    pub holdout_projects: usize,
    pub fit_seconds: f64,
    pub learner: String,
    pub macro_f1: Option<f64>,
    /// The metric over the held-out start snapshots alone (the planning view).
    pub start_snapshot_holdout: Option<f64>,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LinearModel {
    means: Vec<f64>,
    scales: Vec<f64>,
    /// Per feature on the standardized scale; 0 for constant features.
    weights: Vec<f64>,
    intercept: f64,
}

impl LinearModel {
    fn predict(&self, x: &[f64]) -> f64 {
        let mut y = self.intercept;
        for (i, v) in x.iter().enumerate().take(self.weights.len()) {
            if self.weights[i] != 0.0 {
                y += self.weights[i] * (v - self.means[i]) / self.scales[i];
            }
        }
        y
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Params {
    /// Predicts days remaining (completion time) or the variance ratio.
    Linear(LinearModel),
    Tree(TreeModel),
}

/// Everything needed to predict, serde-able as the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainedModel {
    target: Target,
    feature_set_version: String,
    feature_names: Vec<String>,
    learner: String,
    /// Fingerprint of the training set the model was fitted on.
    training_fingerprint: String,
    params: Params,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Total duration in days (completion time) or variance ratio (budget;
    /// `None` for a project without a positive budget).
    pub value: Option<f64>,
    pub days_remaining: Option<f64>,
    pub predicted_end_date: Option<chrono::NaiveDate>,
    /// "low" | "medium" | "high"
    pub class: Option<String>,
    pub probabilities: Option<BTreeMap<String, f64>>,
}

impl TrainedModel {
    pub fn target(&self) -> Target {
        self.target
    }

    pub fn learner(&self) -> &str {
        &self.learner
    }

    pub fn feature_set_version(&self) -> &str {
        &self.feature_set_version
    }

    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn training_fingerprint(&self) -> &str {
        &self.training_fingerprint
    }

    /// Whether rows computed by this build line up with the model's features.
    pub fn is_compatible(&self) -> bool {
        self.feature_set_version == FEATURE_SET_VERSION
            && self
                .feature_names
                .iter()
                .map(String::as_str)
                .eq(feature_names())
    }

    /// An empty prediction if the row does not have the model's feature count.
    pub fn predict(&self, row: &FeatureRow) -> Prediction {
        if row.values.len() != self.feature_names.len() {
            return Prediction::default();
        }
        match (&self.params, self.target) {
            (Params::Linear(m), Target::CompletionTime) => {
                // Not finished yet, so not in the past; and no plan runs for a century.
                let remaining = m.predict(&row.values).clamp(0.0, MAX_REMAINING_DAYS);
                let end = Duration::try_seconds((remaining * 86_400.0).round() as i64)
                    .and_then(|d| row.as_of.checked_add_signed(d));
                Prediction {
                    value: Some(row.elapsed_days + remaining),
                    days_remaining: Some(remaining),
                    predicted_end_date: end.map(|e| e.date_naive()),
                    ..Prediction::default()
                }
            }
            (Params::Linear(m), _) => {
                // Variance is defined only against a positive budget.
                let no_budget = self
                    .feature_names
                    .iter()
                    .position(|n| n == "budget_missing")
                    .is_some_and(|i| row.values[i] >= 0.5);
                Prediction {
                    // A project cannot cost less than nothing.
                    value: (!no_budget).then(|| m.predict(&row.values).max(-1.0)),
                    ..Prediction::default()
                }
            }
            (Params::Tree(t), _) => {
                let p = t.probabilities(&row.values);
                let best = argmax(&p);
                Prediction {
                    class: t.classes.get(best).cloned(),
                    probabilities: Some(t.classes.iter().cloned().zip(p).collect()),
                    ..Prediction::default()
                }
            }
        }
    }

    pub fn predict_many(&self, rows: &[FeatureRow]) -> Vec<Prediction> {
        rows.iter().map(|r| self.predict(r)).collect()
    }
}

/// First index of the largest value, so ties resolve the same way every time.
fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

fn mae(pred: &[f64], truth: &[f64]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / pred.len() as f64
}

fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / pred.len() as f64
}

/// Mean F1 over the classes that occur in the truth or the predictions.
fn macro_f1(pred: &[usize], truth: &[usize], classes: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for c in 0..classes {
        let tp = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t == c)
            .count() as f64;
        let fp = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t != c)
            .count() as f64;
        let fneg = pred
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p != c && **t == c)
            .count() as f64;
        if tp + fp + fneg == 0.0 {
            continue;
        }
        sum += 2.0 * tp / (2.0 * tp + fp + fneg);
        n += 1;
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// Fits y ≈ intercept + Σ w·(x - mean)/scale on the first `width` columns.
fn fit_linear(rows: &[&[f64]], y: &[f64], width: usize) -> Result<(LinearModel, bool), String> {
    let n = rows.len();
    if n == 0 {
        return Err("no rows to fit".into());
    }
    let mut means = vec![0.0; width];
    let mut scales = vec![1.0; width];
    for j in 0..width {
        let m = rows.iter().map(|r| r[j]).sum::<f64>() / n as f64;
        let var = rows.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / n as f64;
        means[j] = m;
        scales[j] = var.sqrt();
    }
    // Constant columns carry no information and make the design singular.
    let kept: Vec<usize> = (0..width).filter(|&j| scales[j] > 1e-9).collect();
    let z = Array2::from_shape_fn((n, kept.len()), |(i, k)| {
        let j = kept[k];
        (rows[i][j] - means[j]) / scales[j]
    });
    let target = Array1::from_vec(y.to_vec());
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let y_sd = (y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-9);

    let ols = LinearRegression::new()
        .fit(&Dataset::new(z.clone(), target.clone()))
        .ok()
        .map(|m| (m.params().to_vec(), m.intercept()))
        .filter(|(w, b)| usable_ols(w, *b, y_sd));
    let (w, intercept, ridge) = match ols {
        Some((w, b)) => (w, b, false),
        None => {
            let w = ridge(&z, &target, y_mean, RIDGE_LAMBDA * n as f64)?;
            (w, y_mean, true)
        }
    };
    let mut weights = vec![0.0; width];
    for (k, &j) in kept.iter().enumerate() {
        weights[j] = w[k];
    }
    Ok((
        LinearModel {
            means,
            scales: scales
                .iter()
                .map(|s| if *s > 1e-9 { *s } else { 1.0 })
                .collect(),
            weights,
            intercept,
        },
        ridge,
    ))
}

/// A nearly singular design can "succeed" with enormous, cancelling weights
/// that blow up on new rows; on standardized features sane weights stay
/// within a few target standard deviations.
fn usable_ols(weights: &[f64], intercept: f64, y_sd: f64) -> bool {
    intercept.is_finite()
        && weights
            .iter()
            .all(|w| w.is_finite() && w.abs() < 1e4 * y_sd)
}

/// Solves (ZᵀZ + λI) w = Zᵀ(y - ȳ) by Cholesky; Z is centered, so the
/// intercept is ȳ.
fn ridge(z: &Array2<f64>, y: &Array1<f64>, y_mean: f64, lambda: f64) -> Result<Vec<f64>, String> {
    let p = z.ncols();
    let mut a = z.t().dot(z);
    for i in 0..p {
        a[(i, i)] += lambda.max(1e-9);
    }
    let centered = y.mapv(|v| v - y_mean);
    let b = z.t().dot(&centered);
    // Cholesky: a = L Lᵀ.
    let mut l = Array2::<f64>::zeros((p, p));
    for i in 0..p {
        for j in 0..=i {
            let mut s = a[(i, j)];
            for k in 0..j {
                s -= l[(i, k)] * l[(j, k)];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return Err("ridge system is not positive definite".into());
                }
                l[(i, i)] = s.sqrt();
            } else {
                l[(i, j)] = s / l[(j, j)];
            }
        }
    }
    let mut t = vec![0.0; p];
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= l[(i, k)] * t[k];
        }
        t[i] = s / l[(i, i)];
    }
    let mut w = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = t[i];
        for k in i + 1..p {
            s -= l[(k, i)] * w[k];
        }
        w[i] = s / l[(i, i)];
    }
    Ok(w)
}

/// Rows of one target split into fitting rows (all cut-offs of training
/// projects) and evaluation rows (grid cut-offs of held-out projects).
struct Split<'a> {
    train: Vec<&'a Snapshot>,
    train_y: Vec<f64>,
    eval: Vec<&'a Snapshot>,
    eval_y: Vec<f64>,
    train_projects: usize,
    eval_projects: usize,
}

fn split(target: Target, set: &TrainingSet) -> Split<'_> {
    let mut s = Split {
        train: Vec::new(),
        train_y: Vec::new(),
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
        }
    }
    s
}

/// Fits `target` on the training projects and evaluates on the held-out ones.
/// Synchronous and CPU-bound: run it on a blocking thread.
pub fn train(
    target: Target,
    set: &TrainingSet,
    opts: &TrainOptions,
) -> Result<(TrainedModel, TrainReport), TrainError> {
    let found = set.projects(target);
    let s = split(target, set);
    if found < opts.min_training_samples.max(2) || s.train_projects == 0 || s.eval_projects == 0 {
        return Err(TrainError::NotEnoughData {
            target,
            found,
            min: opts.min_training_samples,
        });
    }
    let width = feature_names().len();
    let started = Instant::now();
    let (params, learner) = match target {
        Target::Risk => fit_tree(&s),
        _ => {
            let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
            let (m, ridge) = fit_linear(&rows, &s.train_y, width).map_err(TrainError::Fit)?;
            let learner = if ridge {
                "ridge (fallback from singular OLS), standardized"
            } else {
                "linfa-linear OLS, standardized"
            };
            let learner = match target {
                Target::CompletionTime => format!("{learner}, days remaining"),
                _ => learner.to_string(),
            };
            (Params::Linear(m), learner)
        }
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    let model = TrainedModel {
        target,
        feature_set_version: FEATURE_SET_VERSION.to_string(),
        feature_names: feature_names().into_iter().map(String::from).collect(),
        learner,
        training_fingerprint: set.fingerprint(),
        params,
    };

    let eval_rows: Vec<FeatureRow> = s
        .eval
        .iter()
        .map(|r| FeatureRow {
            project_id: set.projects[r.project].id,
            as_of: crate::backend::time::day_start(r.cutoff),
            values: r.values.clone(),
            elapsed_days: r.elapsed_days,
            start_date: None,
            planned_days: None,
        })
        .collect();
    let preds = model.predict_many(&eval_rows);
    let starts: Vec<usize> = (0..s.eval.len()).filter(|&i| s.eval[i].at_start).collect();

    let (metric, holdout, start_metric, f1, baseline, baseline_name) = match target {
        Target::Risk => {
            let truth: Vec<usize> = s.eval_y.iter().map(|y| *y as usize).collect();
            let pred: Vec<usize> = preds
                .iter()
                .map(|p| {
                    p.class
                        .as_deref()
                        .and_then(|c| RiskClass::NAMES.iter().position(|n| *n == c))
                        .unwrap_or(0)
                })
                .collect();
            let mut counts = [0usize; 3];
            for y in &s.train_y {
                counts[(*y as usize).min(2)] += 1;
            }
            let majority = argmax(&counts.map(|c| c as f64));
            let baseline = accuracy(&vec![majority; truth.len()], &truth);
            let pick = |v: &[usize]| starts.iter().map(|&i| v[i]).collect::<Vec<_>>();
            (
                "accuracy",
                accuracy(&pred, &truth),
                accuracy(&pick(&pred), &pick(&truth)),
                Some(macro_f1(&pred, &truth, 3)),
                baseline,
                format!("majority class ({})", RiskClass::NAMES[majority]),
            )
        }
        _ => {
            let pred: Vec<f64> = match target {
                Target::CompletionTime => preds
                    .iter()
                    .map(|p| p.days_remaining.unwrap_or(0.0))
                    .collect(),
                _ => preds.iter().map(|p| p.value.unwrap_or(0.0)).collect(),
            };
            let med = median(&s.train_y);
            let median_mae = mae(&vec![med; s.eval_y.len()], &s.eval_y);
            let linear_mae = planning_linear_baseline(target, &s)?;
            let (baseline, name) = if linear_mae < median_mae {
                (linear_mae, "linear on planning attributes")
            } else {
                (median_mae, "median of training targets")
            };
            let pick = |v: &[f64]| starts.iter().map(|&i| v[i]).collect::<Vec<_>>();
            (
                "mae",
                mae(&pred, &s.eval_y),
                mae(&pick(&pred), &pick(&s.eval_y)),
                None,
                baseline,
                name.to_string(),
            )
        }
    };
    if !holdout.is_finite() {
        return Err(TrainError::Fit(format!(
            "{target}: hold-out {metric} is not finite"
        )));
    }
    let passed = match target {
        Target::Risk => holdout >= opts.threshold,
        _ => holdout <= opts.threshold,
    };
    let report = TrainReport {
        target,
        metric: metric.to_string(),
        holdout,
        baseline,
        baseline_name,
        threshold: opts.threshold,
        passed,
        rows: s.train.len(),
        projects: s.train_projects,
        holdout_rows: s.eval.len(),
        holdout_projects: s.eval_projects,
        fit_seconds,
        learner: model.learner.clone(),
        macro_f1: f1,
        start_snapshot_holdout: start_metric.is_finite().then_some(start_metric),
        skipped: set.skipped.clone(),
    };
    Ok((model, report))
}

/// MAE of a linear model on the planning attributes alone (no progress),
/// predicting the total (completion time: remaining = total - elapsed).
fn planning_linear_baseline(target: Target, s: &Split<'_>) -> Result<f64, TrainError> {
    let total = |r: &Snapshot, y: f64| match target {
        Target::CompletionTime => y + r.elapsed_days,
        _ => y,
    };
    let rows: Vec<&[f64]> = s
        .train
        .iter()
        .map(|r| &r.values[..FIRST_PROGRESS_FEATURE])
        .collect();
    let y: Vec<f64> = s
        .train
        .iter()
        .zip(&s.train_y)
        .map(|(r, y)| total(r, *y))
        .collect();
    let (m, _) = fit_linear(&rows, &y, FIRST_PROGRESS_FEATURE).map_err(TrainError::Fit)?;
    let pred: Vec<f64> = s
        .eval
        .iter()
        .map(|r| {
            let t = m.predict(&r.values[..FIRST_PROGRESS_FEATURE]);
            match target {
                Target::CompletionTime => (t - r.elapsed_days).max(0.0),
                _ => t.max(-1.0),
            }
        })
        .collect();
    Ok(mae(&pred, &s.eval_y))
}

fn fit_tree(s: &Split<'_>) -> (Params, String) {
    let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
    let labels: Vec<usize> = s.train_y.iter().map(|y| *y as usize).collect();
    let classes = RiskClass::NAMES.iter().map(|c| c.to_string()).collect();
    let model = tree::fit(
        &rows,
        &labels,
        classes,
        CartParams {
            max_depth: TREE_MAX_DEPTH,
            min_leaf: TREE_MIN_LEAF_ROWS,
            classes: RiskClass::NAMES.len(),
        },
    );
    let learner = format!(
        "CART decision tree (gini, max depth {TREE_MAX_DEPTH}, min leaf {TREE_MIN_LEAF_ROWS} rows, {} leaves)",
        model.leaves()
    );
    (Params::Tree(model), learner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_designs_still_fit() {
        // x1 duplicates x0 exactly; y = 3·x0 - 2·x2 + 5.
        let data: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let a = (i % 17) as f64;
                let c = ((i * 7) % 11) as f64;
                vec![a, a, c, 4.0]
            })
            .collect();
        let y: Vec<f64> = data.iter().map(|r| 3.0 * r[0] - 2.0 * r[2] + 5.0).collect();
        let rows: Vec<&[f64]> = data.iter().map(|r| r.as_slice()).collect();
        let (m, _) = fit_linear(&rows, &y, 4).unwrap();
        assert_eq!(m.weights[3], 0.0, "constant column is dropped");
        for (r, t) in rows.iter().zip(&y) {
            assert!((m.predict(r) - t).abs() < 1e-3, "{} vs {t}", m.predict(r));
        }
        let direct = ridge(
            &Array2::from_shape_fn((200, 2), |(i, j)| data[i][j] - 8.0),
            &Array1::from_vec(y.clone()),
            y.iter().sum::<f64>() / 200.0,
            1.0,
        )
        .unwrap();
        assert!((direct[0] - direct[1]).abs() < 1e-6, "{direct:?}");

        // More features than rows: least squares has no unique answer.
        let wide: Vec<Vec<f64>> = (0..3)
            .map(|i| (0..6).map(|j| ((i * 5 + j * 3) % 7) as f64).collect())
            .collect();
        let rows: Vec<&[f64]> = wide.iter().map(|r| r.as_slice()).collect();
        let (m, _) = fit_linear(&rows, &[1.0, 2.0, 3.0], 6).unwrap();
        for (r, t) in rows.iter().zip([1.0, 2.0, 3.0]) {
            assert!((m.predict(r) - t).abs() < 1e-6, "{m:?}");
        }

        assert!(usable_ols(&[1.0, -2.0], 3.0, 1.0));
        assert!(!usable_ols(&[1.0, f64::NAN], 3.0, 1.0));
        assert!(!usable_ols(&[1e5, -1e5], 3.0, 1.0));
        assert!(!usable_ols(&[1.0], f64::INFINITY, 1.0));
    }

    #[test]
    fn metrics_are_the_usual_ones() {
        assert_eq!(mae(&[1.0, 3.0], &[2.0, 1.0]), 1.5);
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]), 0.75);
        // Per class F1: 1, 2/3, 2/3.
        assert!((macro_f1(&[0, 1, 2, 2], &[0, 1, 1, 2], 3) - 7.0 / 9.0).abs() < 1e-12);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
    }
}
