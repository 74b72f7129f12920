//! Stage 4, the learners: the boosters' parameters and fits (a
//! squared-error booster on log(1 + y) for the regressions; for risk, a
//! log-loss booster for cancellation beside one on the overrun), the
//! wrapping into a `TrainedModel`, and the learner's description.

use crate::ml::Target;
use crate::ml::boost::{BoostParams, Booster, Columns, Objective};
use crate::ml::features::{FEATURE_SET_VERSION, feature_names};
use crate::ml::model::{
    BoostedRegressor, OrdinalBoosters, OverrunRisk, Params, TrainedModel, Transform,
};
use crate::ml::training::TrainingSet;

use super::TrainError;

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
        Target::CompletionTime | Target::BudgetVariance => Ok(Fitted::Regressor(
            fit_log_regressor(&Columns::from_rows(rows, width), y, params, seed)?,
        )),
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

pub(super) fn learner_name(target: Target, p: &BoostParams) -> String {
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

/// Predictions of `m` on `x`, on its transformed scale.
pub(super) fn centres(m: &BoostedRegressor, x: &Columns) -> Vec<f64> {
    m.booster
        .predict(x)
        .iter()
        .map(|score| m.mean + m.sd * score)
        .collect()
}
