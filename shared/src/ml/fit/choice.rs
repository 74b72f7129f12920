//! Stage 4, part two, the learner choice for the regressions: which learner
//! a retrain ships is decided on validation rows inside the training data
//! (the most recently closed share of the training projects, in the
//! hold-out's image), never on the hold-out. The candidates are the booster,
//! OLS on every feature, and blends of the two; the baselines are scored on
//! the same rows, and when one of them beats every learner there, it is the
//! baseline that ships. Which learner wins depends on the backend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ml::Target;
use crate::ml::boost::BoostParams;
use crate::ml::features::{FIRST_PROGRESS_FEATURE, feature_names};
use crate::ml::linear::{LinearModel, fit_linear};
use crate::ml::metrics::{mae, median};
use crate::ml::model::clamp_answer;
use crate::ml::training::{Snapshot, TrainingSet};

use super::learners::{fit_boosted, wrap};
use super::split::{Split, newest_share, projects_of, values};
use super::{TrainError, predict_rows};

/// Share of the training projects, most recently closed, whose grid rows
/// validate the candidates.
const VALIDATION_SHARE: f64 = 0.2;
/// Fewer validation projects than this keep the booster without a choice.
const MIN_VALIDATION_PROJECTS: usize = 10;
/// Blend weights tried: the booster's share in steps of 1/BLEND_STEPS.
const BLEND_STEPS: usize = 10;

/// The learner a retrain shipped and why, with every candidate's and
/// baseline's validation MAE (in the target's units).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnerChoice {
    /// "booster", "linear_all_features", "blend", or the baseline
    /// ("median", "linear_planning") that beat every learner.
    pub chosen: String,
    pub reason: String,
    /// The booster's share in the shipped answer (1: booster alone, 0: OLS
    /// alone); `None` when a baseline ships.
    pub blend_weight: Option<f64>,
    /// Validation MAE of the candidates ("booster", "linear_all_features",
    /// "blend" at its best weight) and of the baselines ("median",
    /// "linear_planning").
    pub validation: BTreeMap<String, f64>,
    pub validation_rows: usize,
    pub validation_projects: usize,
}

/// What ships: a blend with the booster's share (1 and 0 included), or a
/// baseline's linear model refitted on every training row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pick {
    Blend(f64),
    Median,
    Planning,
}

impl Pick {
    fn name(self) -> &'static str {
        match self {
            Pick::Blend(w) if w >= 1.0 => "booster",
            Pick::Blend(w) if w <= 0.0 => "linear_all_features",
            Pick::Blend(_) => "blend",
            Pick::Median => "median",
            Pick::Planning => "linear_planning",
        }
    }
}

/// Chooses the learner of a regression target on the validation slice of
/// the training projects; `None` when the slice is too small (the booster
/// ships, as before the choice existed).
pub(crate) fn choose(
    target: Target,
    set: &TrainingSet,
    s: &Split<'_>,
    params: &BoostParams,
    seed: u64,
) -> Result<Option<(Pick, LearnerChoice)>, TrainError> {
    let Some((_, newest)) = newest_share(
        set,
        &projects_of(&s.train),
        VALIDATION_SHARE,
        MIN_VALIDATION_PROJECTS,
    ) else {
        return Ok(None);
    };
    let mut is_val = vec![false; set.projects.len()];
    for i in &newest {
        is_val[*i] = true;
    }
    let mut v = Split {
        train: Vec::new(),
        train_y: Vec::new(),
        train_overrun: Vec::new(),
        eval: Vec::new(),
        eval_y: Vec::new(),
        train_projects: s.train_projects - newest.len(),
        eval_projects: newest.len(),
    };
    for ((r, y), o) in s.train.iter().zip(&s.train_y).zip(&s.train_overrun) {
        if is_val[r.project] {
            if r.on_grid {
                v.eval.push(*r);
                v.eval_y.push(*y);
            }
        } else {
            v.train.push(*r);
            v.train_y.push(*y);
            v.train_overrun.push(*o);
        }
    }
    if v.eval.is_empty() || v.train.len() < 2 {
        return Ok(None);
    }

    let rows = values(&v.train);
    let fitted = fit_boosted(target, &rows, &v.train_y, &v.train_overrun, params, seed)?;
    let booster = wrap(target, set, fitted, String::new());
    let pb: Vec<f64> = predict_rows(&booster, &v.eval)
        .iter()
        .map(|p| p.0)
        .collect();
    let linear = fit_all_features(&v.train, &v.train_y)?;
    let pl: Vec<f64> = v
        .eval
        .iter()
        .map(|r| clamp_answer(target, linear.predict(&r.values)))
        .collect();

    // Weight k / BLEND_STEPS on the booster; ties keep the larger weight.
    let blended = |w: f64| -> Vec<f64> {
        pb.iter()
            .zip(&pl)
            .map(|(b, l)| w * b + (1.0 - w) * l)
            .collect()
    };
    let figures: Vec<(f64, f64)> = (0..=BLEND_STEPS)
        .rev()
        .map(|k| {
            let w = k as f64 / BLEND_STEPS as f64;
            (w, mae(&blended(w), &v.eval_y))
        })
        .collect();
    let (best_w, best) = figures
        .iter()
        .copied()
        .filter(|(_, m)| m.is_finite())
        .fold(None::<(f64, f64)>, |acc, (w, m)| match acc {
            Some((_, b)) if m >= b => acc,
            _ => Some((w, m)),
        })
        .ok_or_else(|| TrainError::Fit(format!("{target}: validation MAE is not finite")))?;
    let interior = figures
        .iter()
        .copied()
        .filter(|(w, m)| *w > 0.0 && *w < 1.0 && m.is_finite())
        .fold(None::<(f64, f64)>, |acc, (w, m)| match acc {
            Some((_, b)) if m >= b => acc,
            _ => Some((w, m)),
        });

    let mut validation = BTreeMap::new();
    validation.insert("booster".to_string(), figures[0].1);
    validation.insert("linear_all_features".to_string(), figures[BLEND_STEPS].1);
    if let Some((_, m)) = interior {
        validation.insert("blend".to_string(), m);
    }
    let med = median(&v.train_y);
    let baselines = [
        (Pick::Median, mae(&vec![med; v.eval_y.len()], &v.eval_y)),
        (
            Pick::Planning,
            mae(
                &super::baselines::linear_baseline(target, &v, FIRST_PROGRESS_FEATURE, true)?,
                &v.eval_y,
            ),
        ),
    ];
    for (p, m) in baselines {
        validation.insert(p.name().to_string(), m);
    }
    let beaten_by = baselines
        .iter()
        .filter(|(_, m)| m.is_finite() && *m < best)
        .min_by(|a, b| a.1.total_cmp(&b.1));

    let (pick, reason) = match beaten_by {
        Some((p, m)) => (
            *p,
            format!(
                "the baseline {} ({m:.4}) beat every learner on validation (best {} {best:.4}), so it ships",
                p.name(),
                Pick::Blend(best_w).name()
            ),
        ),
        None => {
            let pick = Pick::Blend(best_w);
            let runner_up = validation
                .iter()
                .filter(|(k, _)| k.as_str() != pick.name())
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, m)| format!("; next {k} {m:.4}"))
                .unwrap_or_default();
            (
                pick,
                format!(
                    "lowest validation MAE: {} {best:.4} (booster weight {best_w:.1}){runner_up}",
                    pick.name()
                ),
            )
        }
    };
    Ok(Some((
        pick,
        LearnerChoice {
            chosen: pick.name().to_string(),
            reason,
            blend_weight: match pick {
                Pick::Blend(w) => Some(w),
                Pick::Median | Pick::Planning => None,
            },
            validation,
            validation_rows: v.eval.len(),
            validation_projects: v.eval_projects,
        },
    )))
}

/// OLS on every feature, predicting the target itself (days remaining or
/// the variance ratio).
pub(super) fn fit_all_features(rows: &[&Snapshot], y: &[f64]) -> Result<LinearModel, TrainError> {
    let width = feature_names().len();
    fit_linear(&values(rows), y, width)
        .map(|(m, _)| m)
        .map_err(TrainError::Fit)
}

/// A baseline as a shippable linear model on every training row: the median,
/// or OLS on the planning attributes (for completion time fitted on the
/// total duration, and the elapsed days folded back in so that it answers
/// days remaining).
pub(crate) fn fit_baseline(
    target: Target,
    pick: Pick,
    rows: &[&Snapshot],
    y: &[f64],
) -> Result<LinearModel, TrainError> {
    let width = feature_names().len();
    let m = match pick {
        Pick::Median | Pick::Blend(_) => LinearModel {
            means: vec![0.0; width],
            scales: vec![1.0; width],
            weights: vec![0.0; width],
            intercept: median(y),
        },
        Pick::Planning => {
            let total = matches!(target, Target::CompletionTime);
            let shift = |r: &Snapshot| if total { r.elapsed_days } else { 0.0 };
            let x: Vec<&[f64]> = rows
                .iter()
                .map(|r| &r.values[..FIRST_PROGRESS_FEATURE])
                .collect();
            let ty: Vec<f64> = rows.iter().zip(y).map(|(r, y)| y + shift(r)).collect();
            let (mut m, _) =
                fit_linear(&x, &ty, FIRST_PROGRESS_FEATURE).map_err(TrainError::Fit)?;
            m.means.resize(width, 0.0);
            m.scales.resize(width, 1.0);
            m.weights.resize(width, 0.0);
            if total {
                // remaining = total - elapsed: a weight of -1 per day on the
                // elapsed days, which is the first progress feature.
                let e = FIRST_PROGRESS_FEATURE;
                let n = rows.len().max(1) as f64;
                m.means[e] = rows.iter().map(|r| r.values[e]).sum::<f64>() / n;
                m.scales[e] = 1.0;
                m.weights[e] = -1.0;
                m.intercept -= m.means[e];
            }
            m
        }
    };
    Ok(m)
}
