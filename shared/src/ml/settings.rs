//! Training settings from configuration: the one place that maps a target
//! to its quality gate, and builds the options every fit uses (the retrain
//! job, `rpa-ml train`, the api's monitoring view).

use crate::config::Config;

use super::{Target, TrainOptions};

/// The hold-out figure a new version must reach to be promoted
/// (`COMPLETION_TIME_MAE_THRESHOLD`, `BUDGET_VARIANCE_MAE_THRESHOLD`,
/// `RISK_SCORE_ACCURACY_THRESHOLD`); its direction is `target.metric()`'s.
pub fn quality_gate(config: &Config, target: Target) -> f64 {
    match target {
        Target::CompletionTime => config.completion_time_mae_threshold,
        Target::BudgetVariance => config.budget_variance_mae_threshold,
        Target::Risk => config.risk_score_accuracy_threshold,
    }
}

/// The training options for `target` from configuration.
pub fn train_options(config: &Config, target: Target) -> TrainOptions {
    TrainOptions {
        seed: 42,
        min_training_samples: config.min_training_samples,
        threshold: quality_gate(config, target),
        tuning: config.enable_hyperparameter_tuning,
        max_trials: config.max_trials as usize,
        progress: None,
    }
}
