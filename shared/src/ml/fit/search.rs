//! Stage 2, the search (`ENABLE_HYPERPARAMETER_TUNING`): seeded candidate
//! parameters scored by grouped k-fold CV on a sample of the training
//! projects, then a confirmation round at full scale before anything
//! replaces the defaults.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ml::boost::BoostParams;
use crate::ml::metrics::argmax;
use crate::ml::model::{CALIBRATION_GROUPS, OverrunRisk, TrainedModel};
use crate::ml::training::{Snapshot, TrainingSet};
use crate::ml::{Metric, Target};

use super::calibration::residual_groups;
use super::learners::{Fitted, default_params, fit_boosted, wrap};
use super::risk::RiskScores;
use super::split::{Split, newest_share, projects_of};
use super::{TrainError, TrainOptions, better, metric_of, predict_rows};

/// Grouped folds of the search.
const CV_FOLDS: usize = 3;
/// The search runs on at most this many training projects (drawn with the
/// seed), which keeps ten trials of three targets within a minute on two
/// cores; the chosen parameters are then fitted on all training projects.
const CV_MAX_PROJECTS: usize = 500;

/// Share of the training projects, most recently closed, that the
/// confirmation round validates on.
const CONFIRM_SHARE: f64 = 0.2;

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
pub(super) fn search(
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
        .map(|(d, b)| match target.metric() {
            Metric::Accuracy => b - d,
            Metric::Mae => d - b,
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
            // Risk's learner also needs overrun labels in its fold.
            let unlabelled = match target {
                Target::Risk => fit_overrun.iter().all(Option::is_none),
                Target::CompletionTime | Target::BudgetVariance => false,
            };
            if fit_rows.is_empty() || unlabelled {
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

/// One validation fold of a search trial.
enum FoldScores {
    Metric(f64),
    Risk { truth: Vec<f64>, scores: RiskScores },
}
