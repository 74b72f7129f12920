//! Stage 3, calibration: what turns point predictions into honest
//! uncertainty. For risk, the overrun's residuals and the decision weights,
//! from the most recently closed training projects; for the regressions,
//! split-conformal interval radii from the hold-out, with cross-fitted
//! coverage.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::ml::Target;
use crate::ml::boost::{BoostParams, Columns};
use crate::ml::features::feature_names;
use crate::ml::metrics::conformal_quantile;
use crate::ml::model::{
    BoostedRegressor, CALIBRATION_GROUPS, Conformal, LEVELS, Params, TrainedModel,
    calibration_group, weighted_argmax,
};
use crate::ml::training::{Snapshot, TrainingSet};

use super::learners::{Fitted, centres, fit_boosted};
use super::risk::RiskScores;
use super::split::{Split, newest_share, projects_of, values};
use super::{TrainError, feature_rows, predict_rows};

/// Share of the training projects, most recently closed, that calibrate
/// risk's overrun distribution (the hold-out that reports accuracy is never
/// used for it).
pub(super) const CALIBRATION_SHARE: f64 = 0.2;
/// Below this many calibration rows in a group (start / later), the group
/// borrows the pooled radii.
const MIN_GROUP_ROWS: usize = 30;

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
    pub(super) residuals: Vec<Vec<f64>>,
    pub(super) weights: [f64; 3],
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
pub(super) fn holdout_conformal(
    model: &mut TrainedModel,
    s: &Split<'_>,
    seed: u64,
) -> Option<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let errors = match &model.params {
        Params::Boosted(m) => residuals(m, &s.eval, &s.eval_y),
        // A blend's own residuals on the booster's scale.
        Params::Blend(m) => {
            let t = m.boosted.transform;
            predict_rows(model, &s.eval)
                .iter()
                .zip(&s.eval_y)
                .map(|(p, y)| t.forward(*y) - t.forward(p.0))
                .collect()
        }
        _ => return None,
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
    for (r, e) in s.eval.iter().zip(errors) {
        let g = calibration_group(r.elapsed_days, &r.values);
        all[g].push(e);
        halves[half_of(r)][g].push(e);
    }
    let cross = [conformal_radii(&halves[1]), conformal_radii(&halves[0])];
    *conformal_slot(&mut model.params)? = conformal_radii(&all);
    let mut total = IntervalCounts::default();
    for (h, radii) in cross.into_iter().enumerate() {
        let mut judge = model.clone();
        if let Some(slot) = conformal_slot(&mut judge.params) {
            *slot = Some(radii?);
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

/// Where a regression keeps its conformal radii.
fn conformal_slot(params: &mut Params) -> Option<&mut Option<Conformal>> {
    match params {
        Params::Boosted(b) => Some(&mut b.intervals),
        Params::Blend(m) => Some(&mut m.boosted.intervals),
        _ => None,
    }
}

/// Sorted residuals per group; a group with too few rows borrows the pool.
pub(super) fn residual_groups(groups: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
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
            Target::BudgetVariance | Target::Risk => *y,
        };
        c.rows += 1;
        for (k, (lo, hi)) in [(lo80, hi80), (lo90, hi90)].into_iter().enumerate() {
            c.hits[k] += usize::from(t >= lo && t <= hi);
            c.width[k] += hi - lo;
        }
    }
    c
}
