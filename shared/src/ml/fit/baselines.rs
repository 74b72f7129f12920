//! Part of stage 5, the baselines: plain models fitted on the same
//! training rows and scored on the same held-out rows as the model (OLS /
//! ordinal logistic on the planning attributes or on every feature), and
//! the CART tree kept as an interpretable reference for risk.

use crate::ml::Target;
use crate::ml::linear::{LinearModel, fit_linear, fit_logistic};
use crate::ml::metrics::argmax;
use crate::ml::model::{MAX_REMAINING_DAYS, ordinal_probabilities};
use crate::ml::training::{RiskClass, Snapshot};
use crate::ml::tree::{self, CartParams, TreeModel};

use super::TrainError;
use super::split::{Split, values};

/// The reference CART tree for risk (tree.rs): depth and leaf size.
const TREE_MAX_DEPTH: usize = 7;
/// Snapshots of one project are alike; a leaf must hold more than a couple of projects' worth.
const TREE_MIN_LEAF_ROWS: usize = 20;

/// MAE of OLS on the first `width` features. With `total`, it predicts the
/// total (completion time: remaining = total - elapsed), as a planner would.
pub(super) fn linear_baseline(
    target: Target,
    s: &Split<'_>,
    width: usize,
    total: bool,
) -> Result<Vec<f64>, TrainError> {
    let shift = |r: &Snapshot| match target {
        Target::CompletionTime if total => r.elapsed_days,
        Target::CompletionTime | Target::BudgetVariance | Target::Risk => 0.0,
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
                Target::BudgetVariance | Target::Risk => t.max(-1.0),
            }
        })
        .collect();
    Ok(pred)
}

/// The answers (most probable class) of an ordinal pair of logistic
/// regressions on the first `width` features for the hold-out rows; `None`
/// if either cannot be fitted.
pub(super) fn logistic_baseline(s: &Split<'_>, width: usize) -> Option<Vec<usize>> {
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
