//! Training sets: snapshots of closed projects on the contract's grid, plus
//! outcome-independent random cut-offs for training only.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::Target;
use super::features::{FEATURE_SET_VERSION, FeatureRow, compute, feature_names};
use super::history::{self, Closure, ProjectHist, Skips, TeamRecords};
use crate::backend::time::day_start;
use crate::backend::{BackendDb, BackendError, Scope};

/// Days between grid snapshots (docs/DATA-CONTRACT.md, section 5).
pub(crate) const GRID_DAYS: i64 = 14;
/// Share of closed projects, most recently closed, held out for evaluation.
pub(crate) const HOLDOUT_SHARE: f64 = 0.2;
/// Longer "projects" are data-entry errors (ten years).
const MAX_PROJECT_DAYS: i64 = 3650;
/// Fixed so that the same database always yields the same training set.
const AUGMENT_SEED: u64 = 0x5eed_cafe_f00d_0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RiskClass {
    Low = 0,
    Medium = 1,
    High = 2,
}

impl RiskClass {
    pub const NAMES: [&'static str; 3] = ["low", "medium", "high"];
}

#[derive(Debug, Clone)]
pub(crate) struct ClosedProject {
    pub id: i64,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub completed: bool,
    pub budget_variance: Option<f64>,
    pub risk: Option<RiskClass>,
    /// max(slip, budget variance) of a completed project with a plan and a
    /// budget: its risk class is this quantity against 0.10 and 0.25.
    pub overrun: Option<f64>,
    pub holdout: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Index into `TrainingSet::projects`.
    pub project: usize,
    pub cutoff: NaiveDate,
    /// On the contract's evaluation grid (start + 14k days); otherwise a
    /// random training-only cut-off.
    pub on_grid: bool,
    /// The start snapshot (the planning view).
    pub at_start: bool,
    pub elapsed_days: f64,
    pub values: Vec<f64>,
}

/// Snapshot rows of closed projects with their targets and hold-out split.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub(crate) projects: Vec<ClosedProject>,
    pub(crate) rows: Vec<Snapshot>,
    /// Every project that had started when the set was built, open or
    /// closed, as of its start (in id order): the population the drift
    /// reference is drawn from, observed exactly as the drift check
    /// observes the projects of its window. Not part of the fingerprint
    /// (no target depends on it).
    pub(crate) starts: Vec<FeatureRow>,
    /// Reason → count of values, rows or projects that could not be used.
    pub skipped: BTreeMap<String, u64>,
}

impl TrainingSet {
    /// Closed projects the target is defined for.
    pub fn projects(&self, target: Target) -> usize {
        self.projects
            .iter()
            .filter(|p| self.defined(target, p))
            .count()
    }

    /// Snapshot rows (grid and training-only) of those projects.
    pub fn rows(&self, target: Target) -> usize {
        self.rows
            .iter()
            .filter(|r| self.defined(target, &self.projects[r.project]))
            .count()
    }

    /// Closed projects held out for evaluation (all targets).
    pub fn holdout_projects(&self) -> usize {
        self.projects.iter().filter(|p| p.holdout).count()
    }

    pub(crate) fn defined(&self, target: Target, p: &ClosedProject) -> bool {
        match target {
            Target::CompletionTime => p.completed,
            Target::BudgetVariance => p.budget_variance.is_some(),
            Target::Risk => p.risk.is_some(),
        }
    }

    /// The target's value for a row: remaining days, variance, or class index.
    pub(crate) fn value(&self, target: Target, row: &Snapshot) -> Option<f64> {
        let p = &self.projects[row.project];
        match target {
            Target::CompletionTime => p.completed.then(|| (p.end - row.cutoff).num_days() as f64),
            Target::BudgetVariance => p.budget_variance,
            Target::Risk => p.risk.map(|r| r as usize as f64),
        }
    }

    /// The risk target's overrun for a row's project (see `ClosedProject`).
    pub(crate) fn overrun(&self, row: &Snapshot) -> Option<f64> {
        self.projects[row.project].overrun
    }

    /// SHA-256 (hex) of the canonical rows: feature set, features and targets.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(FEATURE_SET_VERSION.as_bytes());
        for name in feature_names() {
            h.update(name.as_bytes());
            h.update([0]);
        }
        for p in &self.projects {
            h.update(p.id.to_le_bytes());
            h.update(p.end.to_string().as_bytes());
            h.update([u8::from(p.completed), u8::from(p.holdout)]);
            h.update(
                p.budget_variance
                    .map_or(u64::MAX, f64::to_bits)
                    .to_le_bytes(),
            );
            h.update([p.risk.map_or(255, |r| r as u8)]);
        }
        for r in &self.rows {
            h.update((r.project as u64).to_le_bytes());
            h.update(r.cutoff.to_string().as_bytes());
            h.update([u8::from(r.on_grid), u8::from(r.at_start)]);
            for v in &r.values {
                h.update(v.to_bits().to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

/// Loads every project's history once and computes all snapshots in memory.
pub async fn build_training_set(db: &BackendDb) -> Result<TrainingSet, BackendError> {
    let loaded = history::load(db, Scope::All).await?;
    Ok(from_histories(&loaded.projects, loaded.skips, Utc::now()))
}

/// Overrun (slip or budget variance) above which a project is medium risk.
pub(crate) const RISK_MEDIUM_OVERRUN: f64 = 0.10;
/// Overrun above which a project is high risk.
pub(crate) const RISK_HIGH_OVERRUN: f64 = 0.25;

fn risk_class(cancelled: bool, slip: f64, variance: f64) -> RiskClass {
    if cancelled || slip > RISK_HIGH_OVERRUN || variance > RISK_HIGH_OVERRUN {
        RiskClass::High
    } else if slip > RISK_MEDIUM_OVERRUN || variance > RISK_MEDIUM_OVERRUN {
        RiskClass::Medium
    } else {
        RiskClass::Low
    }
}

/// A closed project's targets (docs/DATA-CONTRACT.md), or `None` when it is not
/// closed or its dates make it unusable (counted in `skips`). The one place
/// targets are computed: training and realised performance both use it.
pub(crate) fn closed_project(p: &ProjectHist, skips: &mut Skips) -> Option<ClosedProject> {
    let Some(closure) = p.closure() else {
        // Ended under a status that does not say how (`archived`): neither
        // a completion nor a cancellation to learn from.
        if !crate::backend::is_open(&p.status, p.actual_end.is_some()) {
            skips.bump("ended_with_unknown_status");
        }
        return None;
    };
    let (Some(start), Some(end)) = (p.start, p.actual_end) else {
        if p.start.is_none() {
            skips.bump("closed_without_start_date");
        }
        if p.actual_end.is_none() {
            skips.bump("closed_without_actual_end_date");
        }
        return None;
    };
    if end <= start {
        skips.bump(if end < start {
            "closed_end_before_start"
        } else {
            "closed_zero_duration"
        });
        return None;
    }
    if (end - start).num_days() > MAX_PROJECT_DAYS {
        // A typo'd year would otherwise turn one row into thousands of snapshots.
        skips.bump("closed_implausible_duration");
        return None;
    }
    let completed = closure == Closure::Completed;
    let duration = (end - start).num_days() as f64;
    let variance = p.budget.map(|b| (p.total_cost - b) / b);
    let planned = p.planned_days().filter(|d| *d > 0.0);
    let risk = match (variance, planned) {
        (Some(var), Some(planned)) => {
            Some(risk_class(!completed, (duration - planned) / planned, var))
        }
        _ => None,
    };
    if p.budget.is_none() {
        skips.bump("closed_without_budget");
    }
    if p.budget.is_some() && planned.is_none() {
        skips.bump("closed_without_planned_duration");
    }
    Some(ClosedProject {
        id: p.id,
        start,
        end,
        completed,
        budget_variance: if completed { variance } else { None },
        risk,
        overrun: match (completed, variance, planned) {
            (true, Some(var), Some(planned)) => Some(((duration - planned) / planned).max(var)),
            _ => None,
        },
        holdout: false,
    })
}

/// `now`: projects starting on or after it are not in `starts`.
pub(crate) fn from_histories(
    histories: &[ProjectHist],
    mut skips: Skips,
    now: DateTime<Utc>,
) -> TrainingSet {
    let teams = TeamRecords::from_projects(histories);
    let mut ordered: Vec<&ProjectHist> = histories.iter().collect();
    ordered.sort_by_key(|p| p.id);

    // The same extraction as the drift window's (`monitor::monitoring_data`);
    // its skips are the window's concern, not the training set's.
    let mut ignored = Skips::default();
    let starts: Vec<FeatureRow> = ordered
        .iter()
        .filter_map(|p| {
            let s = day_start(p.start?);
            (s < now).then(|| compute(p, &teams, s, &mut ignored))
        })
        .collect();

    let mut projects = Vec::new();
    let mut rows = Vec::new();
    for p in ordered {
        let Some(closed) = closed_project(p, &mut skips) else {
            continue;
        };
        let (start, end) = (closed.start, closed.end);
        let index = projects.len();
        projects.push(closed);

        let mut rng = ChaCha8Rng::seed_from_u64(AUGMENT_SEED ^ (p.id as u64));
        let mut k = 0;
        loop {
            let grid = start + Duration::days(GRID_DAYS * k);
            if grid >= end {
                break;
            }
            let mut cutoffs = vec![(grid, true)];
            // One random day inside each 14-day window keeps the model from
            // fitting the grid alone: trained on the grid only, its error at
            // other days was about a quarter worse.
            let random = grid + Duration::days(rng.gen_range(1..GRID_DAYS));
            if random < end {
                cutoffs.push((random, false));
            }
            for (cutoff, on_grid) in cutoffs {
                let row = compute(p, &teams, day_start(cutoff), &mut skips);
                rows.push(Snapshot {
                    project: index,
                    cutoff,
                    on_grid,
                    at_start: on_grid && k == 0,
                    elapsed_days: row.elapsed_days,
                    values: row.values,
                });
            }
            k += 1;
        }
    }

    // Hold out the most recently closed projects, whole (ties by id).
    let mut order: Vec<usize> = (0..projects.len()).collect();
    order.sort_by_key(|&i| (projects[i].end, projects[i].id));
    let n_holdout = (projects.len() as f64 * HOLDOUT_SHARE).ceil() as usize;
    for &i in order.iter().rev().take(n_holdout) {
        projects[i].holdout = true;
    }

    TrainingSet {
        projects,
        rows,
        starts,
        skipped: skips.0,
    }
}
