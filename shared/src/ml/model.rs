//! Fitted models and what they answer.
//!
//! Regressions are gradient-boosted trees fitted on the log scale (completion
//! time as log(1 + days remaining), budget variance as log(1 + variance),
//! i.e. the log of the cost ratio): squared error there aims at the median
//! in days, which is what a mean absolute error rewards, and multiplicative
//! errors suit durations and cost ratios whatever their scale. Intervals are
//! split-conformal on that scale, so they widen with the prediction, with
//! radii from the model's own residuals on the hold-out (see
//! `fit::calibration::holdout_conformal`).
//!
//! Risk follows the contract's definition instead of learning it from three
//! labels: a log-loss booster gives P(cancelled), a regression booster
//! predicts the overrun max(slip, variance) on the log scale, and the
//! calibration residuals of that regression turn its prediction into
//! P(overrun > 0.10) and P(overrun > 0.25). Measured against an ordinal pair
//! and one-vs-rest boosters on the demo backends it was the most accurate,
//! and its class probabilities are calibrated by construction. The answered
//! class weighs those probabilities so that each class is answered about as
//! often as it occurs (`OverrunRisk::decision_weights`). Linear models and
//! the CART tree remain as baselines and references; a regression may ship
//! as a blend of its booster and OLS when that wins on validation rows.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::Target;
use super::boost::Booster;
use super::features::{ELAPSED_OVER_PLANNED, FEATURE_SET_VERSION, FeatureRow, feature_names};
use super::linear::LinearModel;
use super::metrics::argmax;
use super::training::{RISK_HIGH_OVERRUN, RISK_MEDIUM_OVERRUN, RiskClass};
use super::tree::TreeModel;

/// No plan runs for a century.
pub(crate) const MAX_REMAINING_DAYS: f64 = 36_500.0;
/// Contributions listed with each prediction.
const TOP_CONTRIBUTIONS: usize = 5;
/// The interval levels every regression reports.
pub(crate) const LEVELS: [f64; 2] = [0.8, 0.9];

/// How a regression target is mapped before fitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transform {
    /// z = ln(1 + max(y, -0.99)); y = exp(z) - 1.
    Log1p,
}

impl Transform {
    pub fn forward(self, y: f64) -> f64 {
        match self {
            Transform::Log1p => y.max(-0.99).ln_1p(),
        }
    }

    pub fn inverse(self, z: f64) -> f64 {
        match self {
            Transform::Log1p => z.clamp(-700.0, 700.0).exp_m1(),
        }
    }
}

/// Split-conformal radii on the transformed scale, one per level in
/// `LEVELS`, per calibration group (see `calibration_group`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Conformal {
    pub groups: Vec<Vec<f64>>,
    /// Calibration rows behind each group (a group with too few borrows
    /// the pooled radii).
    pub rows: Vec<usize>,
}

/// Days after the start below which a row is "at the start" for intervals:
/// the first grid step.
pub(crate) const START_WINDOW_DAYS: f64 = 14.0;
/// Later rows are split by elapsed share of the planned duration: errors
/// shrink as a project shows its pace, and the mix of early and late rows
/// differs between the rows that set the radii and those scored later.
const PROGRESS_BOUNDS: [f64; 2] = [0.5, 1.0];
pub(crate) const CALIBRATION_GROUPS: usize = 2 + PROGRESS_BOUNDS.len();

/// 0 for the start window (the planning view), then 1.. by elapsed share of
/// the plan (no plan counts as early).
pub(crate) fn calibration_group(elapsed_days: f64, values: &[f64]) -> usize {
    if elapsed_days < START_WINDOW_DAYS {
        return 0;
    }
    let progress = values.get(ELAPSED_OVER_PLANNED).copied().unwrap_or(0.0);
    1 + PROGRESS_BOUNDS.iter().filter(|b| progress >= **b).count()
}

impl Conformal {
    fn radii(&self, elapsed_days: f64, values: &[f64]) -> &[f64] {
        self.groups
            .get(calibration_group(elapsed_days, values))
            .map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct BoostedRegressor {
    pub booster: Booster,
    pub transform: Transform,
    /// The booster predicts (z - mean) / sd.
    pub mean: f64,
    pub sd: f64,
    pub intervals: Option<Conformal>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct OrdinalBoosters {
    /// Log-odds of risk ≥ medium.
    pub at_least_medium: Booster,
    /// Log-odds of risk = high.
    pub high: Booster,
}

/// Risk from P(cancelled) and the predictive distribution of the overrun.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct OverrunRisk {
    /// Log-odds of cancellation.
    pub cancel: Booster,
    /// log(1 + max(slip, variance)) of completed projects.
    pub overrun: BoostedRegressor,
    /// Sorted signed calibration residuals (truth - prediction) of `overrun`
    /// on its log scale, per calibration group.
    pub residuals: Vec<Vec<f64>>,
    /// Per-class weights of the answer: the class with the largest weighted
    /// probability. Plain argmax almost never answers "medium", a narrow
    /// band between two likelier ones, so it would predict far fewer medium
    /// projects than occur; these weights are set on the calibration slice
    /// so the answered classes occur as often as the observed ones.
    /// Probabilities are not changed by them.
    #[serde(default = "unit_weights")]
    pub decision_weights: [f64; 3],
}

fn unit_weights() -> [f64; 3] {
    [1.0; 3]
}

impl OverrunRisk {
    /// Low / medium / high for an overrun prediction `z` (log scale) and a
    /// cancellation log-odds.
    pub fn probabilities(&self, z: f64, cancel_logit: f64, row: &FeatureRow) -> [f64; 3] {
        let residuals = self
            .residuals
            .get(calibration_group(row.elapsed_days, &row.values))
            .map_or(&[][..], Vec::as_slice);
        overrun_probabilities(z, sigmoid(cancel_logit), residuals)
    }

    /// The answered class for probabilities `p`.
    pub fn decide(&self, p: &[f64; 3]) -> usize {
        weighted_argmax(p, &self.decision_weights)
    }
}

pub(crate) fn weighted_argmax(p: &[f64; 3], w: &[f64; 3]) -> usize {
    argmax(&[p[0] * w[0], p[1] * w[1], p[2] * w[2]])
}

/// Class probabilities when the log overrun is `z + r`, `r` drawn from the
/// calibration residuals (just `z` without any), and cancellation has
/// probability `cancel`.
pub(crate) fn overrun_probabilities(z: f64, cancel: f64, sorted_residuals: &[f64]) -> [f64; 3] {
    let n = sorted_residuals.len();
    let above = |threshold: f64| -> f64 {
        let t = threshold.ln_1p() - z;
        if n == 0 {
            return f64::from(u8::from(0.0 > t));
        }
        let at_or_below = sorted_residuals.partition_point(|r| *r <= t);
        (n - at_or_below) as f64 / n as f64
    };
    let medium_or_more = above(RISK_MEDIUM_OVERRUN);
    let high = above(RISK_HIGH_OVERRUN).min(medium_or_more);
    let cancel = cancel.clamp(0.0, 1.0);
    let go = 1.0 - cancel;
    [
        go * (1.0 - medium_or_more),
        go * (medium_or_more - high),
        cancel + go * high,
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Params {
    /// Predicts days remaining (completion time) or the variance ratio.
    Linear(LinearModel),
    Tree(TreeModel),
    Boosted(BoostedRegressor),
    Ordinal(OrdinalBoosters),
    Overrun(OverrunRisk),
    /// A regression answered as `weight` × the booster's answer plus
    /// (1 - `weight`) × the linear model's, each clamped to the target's
    /// range first; chosen per retrain on validation rows (see
    /// `fit::choice`). Intervals are the booster's conformal radii (set on
    /// this blend's own residuals) around the blended answer.
    Blend(BlendedRegressor),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct BlendedRegressor {
    pub boosted: BoostedRegressor,
    /// Predicts days remaining (completion time) or the variance ratio.
    pub linear: LinearModel,
    /// The booster's share, 0..=1.
    pub weight: f64,
}

/// A regression answer kept in the target's range: days remaining are not
/// negative nor beyond a century, a variance not below -1.
pub(crate) fn clamp_answer(target: Target, v: f64) -> f64 {
    match target {
        Target::CompletionTime => v.clamp(0.0, MAX_REMAINING_DAYS),
        Target::BudgetVariance | Target::Risk => v.max(-1.0),
    }
}

/// Everything needed to predict, serde-able as the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainedModel {
    pub(crate) target: Target,
    pub(crate) feature_set_version: String,
    pub(crate) feature_names: Vec<String>,
    pub(crate) learner: String,
    /// Fingerprint of the training set the model was fitted on.
    pub(crate) training_fingerprint: String,
    pub(crate) params: Params,
}

/// One feature's signed part in a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    /// The feature's value in the row.
    pub value: f64,
    /// Signed: positive pushes the prediction up. Completion time: days;
    /// budget variance: variance ratio; risk: the predicted overrun on its
    /// log scale, log(1 + max(slip, variance)), so positive means riskier
    /// (when cancellation is what makes a project high risk, the log-odds
    /// of cancellation instead).
    pub contribution: f64,
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
    /// Split-conformal intervals in the units of `value` (total days for
    /// completion time), when the model was calibrated.
    #[serde(default)]
    pub interval_80: Option<[f64; 2]>,
    #[serde(default)]
    pub interval_90: Option<[f64; 2]>,
    /// The largest contributions by magnitude, at most five.
    #[serde(default)]
    pub contributions: Vec<Contribution>,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// Low / medium / high from the two ordinal log-odds.
pub(crate) fn ordinal_probabilities(at_least_medium: f64, high: f64) -> [f64; 3] {
    let ge = sigmoid(at_least_medium);
    let h = sigmoid(high).min(ge);
    [1.0 - ge, ge - h, h]
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
        self.predict_many(std::slice::from_ref(row))
            .pop()
            .unwrap_or_default()
    }

    /// Predictions in row order; rows of the wrong width get empty ones.
    pub fn predict_many(&self, rows: &[FeatureRow]) -> Vec<Prediction> {
        let width = self.feature_names.len();
        let good: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].values.len() == width)
            .collect();
        // One contiguous row-major matrix: the forest walks it without a
        // copy per row or per tree.
        let mut x = Vec::with_capacity(good.len() * width);
        for &i in &good {
            x.extend_from_slice(&rows[i].values);
        }
        let mut out = vec![Prediction::default(); rows.len()];
        if let Some(raw) = self.raw(&x, good.len()) {
            for (k, &i) in good.iter().enumerate() {
                out[i] = self.finish(&rows[i], &raw.row(k));
            }
        }
        out
    }

    /// Bytes the model's boosters hold for scoring (their flat layouts).
    pub fn scoring_bytes(&self) -> usize {
        self.boosters().iter().map(|b| b.heap_bytes()).sum()
    }

    /// Every booster the model scores with.
    pub(crate) fn boosters(&self) -> Vec<&Booster> {
        match &self.params {
            Params::Linear(_) | Params::Tree(_) => Vec::new(),
            Params::Boosted(b) => vec![&b.booster],
            Params::Blend(m) => vec![&m.boosted.booster],
            Params::Ordinal(o) => vec![&o.at_least_medium, &o.high],
            Params::Overrun(o) => vec![&o.overrun.booster, &o.cancel],
        }
    }

    /// Scores on the model's own scale with per-feature contributions, for
    /// `n` rows of the row-major matrix `x`; None when a booster cannot
    /// read rows this wide (a damaged artifact).
    fn raw(&self, x: &[f64], n: usize) -> Option<Raw> {
        let width = self.feature_names.len();
        let stride = width + 1;
        let rows = || x.chunks_exact(width.max(1)).take(n);
        let scored = |b: &Booster| {
            let (s, c) = b.score_rows(x, width);
            (s.len() == n && c.len() == n * stride).then_some((s, c))
        };
        if n == 0 {
            return Some(Raw::default());
        }
        let raw = match &self.params {
            Params::Linear(m) => {
                let mut parts = vec![0.0; n * stride];
                for (r, p) in rows().zip(parts.chunks_exact_mut(stride)) {
                    for (d, c) in p.iter_mut().zip(m.contributions(r)) {
                        *d = c;
                    }
                }
                Raw {
                    k: 1,
                    scores: rows().map(|r| m.predict(r)).collect(),
                    parts: vec![parts],
                    stride,
                }
            }
            Params::Tree(t) => {
                let k = t.classes.len();
                let mut scores = Vec::with_capacity(n * k);
                for r in rows() {
                    let mut p = t.probabilities(r);
                    p.resize(k, 0.0);
                    scores.extend(p);
                }
                Raw {
                    k,
                    scores,
                    parts: Vec::new(),
                    stride,
                }
            }
            Params::Boosted(b) => {
                let (s, c) = scored(&b.booster)?;
                boosted_raw(b, s, c, stride)
            }
            Params::Blend(m) => {
                let (s, c) = scored(&m.boosted.booster)?;
                let base = boosted_raw(&m.boosted, s, c, stride);
                let mut scores = Vec::with_capacity(2 * n);
                let mut linear = vec![0.0; n * stride];
                for ((r, z), p) in rows()
                    .zip(&base.scores)
                    .zip(linear.chunks_exact_mut(stride))
                {
                    scores.extend([*z, m.linear.predict(r)]);
                    for (d, c) in p.iter_mut().zip(m.linear.contributions(r)) {
                        *d = c;
                    }
                }
                let mut parts = base.parts;
                parts.push(linear);
                Raw {
                    k: 2,
                    scores,
                    parts,
                    stride,
                }
            }
            Params::Overrun(o) => {
                let (z, mut cz) = scored(&o.overrun.booster)?;
                let (c, cc) = scored(&o.cancel)?;
                for v in &mut cz {
                    *v *= o.overrun.sd;
                }
                let scores = z
                    .iter()
                    .zip(&c)
                    .flat_map(|(z, c)| [o.overrun.mean + o.overrun.sd * z, *c])
                    .collect();
                Raw {
                    k: 2,
                    scores,
                    parts: vec![cz, cc],
                    stride,
                }
            }
            Params::Ordinal(o) => {
                let (ge, cge) = scored(&o.at_least_medium)?;
                let (hi, chi) = scored(&o.high)?;
                let scores = ge.iter().zip(&hi).flat_map(|(a, b)| [*a, *b]).collect();
                Raw {
                    k: 2,
                    scores,
                    parts: vec![cge, chi],
                    stride,
                }
            }
        };
        Some(raw)
    }

    fn finish(&self, row: &FeatureRow, raw: &RawRow<'_>) -> Prediction {
        match (&self.params, self.target) {
            (Params::Tree(t), _) => {
                let best = argmax(raw.scores);
                Prediction {
                    class: t.classes.get(best).cloned(),
                    probabilities: Some(
                        t.classes.iter().cloned().zip(raw.scores.to_vec()).collect(),
                    ),
                    ..Prediction::default()
                }
            }
            (Params::Overrun(o), _) => {
                let (z, cancel) = (raw.scores[0], raw.scores[1]);
                let p = o.probabilities(z, cancel, row);
                let best = o.decide(&p);
                let by_cancel = best == 2 && sigmoid(cancel) > p[2] - sigmoid(cancel);
                let parts = raw.contributions[usize::from(by_cancel)];
                let parts = &parts[..parts.len().saturating_sub(1)];
                self.risk_prediction(&row.values, p, best, parts)
            }
            (Params::Ordinal(_), _) => {
                let p = ordinal_probabilities(raw.scores[0], raw.scores[1]);
                let best = argmax(&p);
                let contributions = match best {
                    0 => raw.contributions[0].iter().map(|v| -v).collect(),
                    1 => raw.contributions[0].to_vec(),
                    _ => raw.contributions[1].to_vec(),
                };
                self.risk_prediction(&row.values, p, best, &contributions)
            }
            (params, target) => {
                let (value, interval, contributions) = match params {
                    Params::Boosted(b) => {
                        let z = raw.scores[0];
                        let (y, parts) = boosted_answer(b, z, raw.contributions[0]);
                        (y, intervals(b, z, row), parts)
                    }
                    Params::Blend(m) => {
                        let (b, w) = (&m.boosted, m.weight);
                        let (y, parts) = boosted_answer(b, raw.scores[0], raw.contributions[0]);
                        let value = w * clamp_answer(target, y)
                            + (1.0 - w) * clamp_answer(target, raw.scores[1]);
                        let parts = parts
                            .iter()
                            .zip(raw.contributions[1])
                            .map(|(p, l)| w * p + (1.0 - w) * l)
                            .collect();
                        (value, intervals(b, b.transform.forward(value), row), parts)
                    }
                    Params::Linear(_) => (raw.scores[0], None, raw.contributions[0].to_vec()),
                    _ => return Prediction::default(),
                };
                let contributions = self.top(&row.values, &contributions);
                match target {
                    Target::CompletionTime => {
                        // Not finished yet, so not in the past.
                        let remaining = value.clamp(0.0, MAX_REMAINING_DAYS);
                        let end = Duration::try_seconds((remaining * 86_400.0).round() as i64)
                            .and_then(|d| row.as_of.checked_add_signed(d));
                        let total = |v: f64| row.elapsed_days + v.clamp(0.0, MAX_REMAINING_DAYS);
                        let iv = |k: usize| {
                            interval
                                .as_ref()
                                .and_then(|v| v.get(k))
                                .map(|[lo, hi]| [total(*lo), total(*hi)])
                        };
                        Prediction {
                            value: Some(row.elapsed_days + remaining),
                            days_remaining: Some(remaining),
                            predicted_end_date: end.map(|e| e.date_naive()),
                            interval_80: iv(0),
                            interval_90: iv(1),
                            contributions,
                            ..Prediction::default()
                        }
                    }
                    Target::BudgetVariance | Target::Risk => {
                        // Variance is defined only against a positive budget.
                        let no_budget = self
                            .feature_names
                            .iter()
                            .position(|n| n == "budget_missing")
                            .is_some_and(|i| row.values[i] >= 0.5);
                        if no_budget {
                            return Prediction::default();
                        }
                        // A project cannot cost less than nothing.
                        let clamp = |v: f64| v.max(-1.0);
                        let iv = |k: usize| {
                            interval
                                .as_ref()
                                .and_then(|v| v.get(k))
                                .map(|[lo, hi]| [clamp(*lo), clamp(*hi)])
                        };
                        Prediction {
                            value: Some(clamp(value)),
                            interval_80: iv(0),
                            interval_90: iv(1),
                            contributions,
                            ..Prediction::default()
                        }
                    }
                }
            }
        }
    }

    /// The largest contributions by magnitude (ties by feature order).
    /// A risk answer: the most probable class, all three probabilities, and
    /// the top contributions behind it.
    fn risk_prediction(
        &self,
        values: &[f64],
        p: [f64; 3],
        class: usize,
        contributions: &[f64],
    ) -> Prediction {
        Prediction {
            class: RiskClass::NAMES.get(class).map(|c| c.to_string()),
            probabilities: Some(
                RiskClass::NAMES
                    .iter()
                    .map(|c| c.to_string())
                    .zip(p)
                    .collect(),
            ),
            contributions: self.top(values, contributions),
            ..Prediction::default()
        }
    }

    fn top(&self, values: &[f64], contributions: &[f64]) -> Vec<Contribution> {
        let mut idx: Vec<usize> = (0..contributions.len().min(self.feature_names.len()))
            .filter(|&i| contributions[i] != 0.0 && contributions[i].is_finite())
            .collect();
        idx.sort_by(|&a, &b| {
            contributions[b]
                .abs()
                .total_cmp(&contributions[a].abs())
                .then(a.cmp(&b))
        });
        idx.truncate(TOP_CONTRIBUTIONS);
        idx.into_iter()
            .map(|i| Contribution {
                feature: self.feature_names[i].clone(),
                value: values.get(i).copied().unwrap_or(f64::NAN),
                contribution: contributions[i],
            })
            .collect()
    }
}

/// A booster's scores on its transformed scale, with its contributions
/// there (features, then the bias carrying the mean).
fn boosted_raw(b: &BoostedRegressor, scores: Vec<f64>, mut parts: Vec<f64>, stride: usize) -> Raw {
    // Back to the transformed scale: z = mean + sd·score.
    let scores = scores.iter().map(|s| b.mean + b.sd * s).collect();
    for c in parts.chunks_exact_mut(stride) {
        for v in c.iter_mut() {
            *v *= b.sd;
        }
        if let Some(bias) = c.last_mut() {
            *bias += b.mean;
        }
    }
    Raw {
        k: 1,
        scores,
        parts: vec![parts],
        stride,
    }
}

/// The booster's answer in units for its score `z`, and the features'
/// parts of it: the log-scale parts scaled by the secant slope of the
/// inverse between the bias and the prediction (signs kept, and they add up
/// to prediction - bias in units).
fn boosted_answer(b: &BoostedRegressor, z: f64, c: &[f64]) -> (f64, Vec<f64>) {
    let y = b.transform.inverse(z);
    let bias = c.last().copied().unwrap_or(z);
    let slope = if (z - bias).abs() > 1e-9 {
        (y - b.transform.inverse(bias)) / (z - bias)
    } else {
        z.clamp(-700.0, 700.0).exp()
    };
    let parts = c[..c.len().saturating_sub(1)]
        .iter()
        .map(|v| v * slope)
        .collect();
    (y, parts)
}

/// The conformal intervals (in units) around `z` on the transformed scale.
fn intervals(b: &BoostedRegressor, z: f64, row: &FeatureRow) -> Option<Vec<[f64; 2]>> {
    b.intervals.as_ref().map(|cal| {
        cal.radii(row.elapsed_days, &row.values)
            .iter()
            .map(|r| [b.transform.inverse(z - r), b.transform.inverse(z + r)])
            .collect()
    })
}

/// Rows' scores on the model's scale (`k` a row) and each score's
/// contributions, one row-major matrix per score (features, then the bias
/// for boosters; `stride` values a row).
#[derive(Default)]
struct Raw {
    k: usize,
    scores: Vec<f64>,
    parts: Vec<Vec<f64>>,
    stride: usize,
}

impl Raw {
    fn row(&self, i: usize) -> RawRow<'_> {
        let part = |p: usize| {
            self.parts
                .get(p)
                .and_then(|m| m.get(i * self.stride..(i + 1) * self.stride))
                .unwrap_or(&[])
        };
        RawRow {
            scores: self.scores.get(i * self.k..(i + 1) * self.k).unwrap_or(&[]),
            contributions: [part(0), part(1)],
        }
    }
}

/// One row of a `Raw`.
struct RawRow<'a> {
    scores: &'a [f64],
    contributions: [&'a [f64]; 2],
}
