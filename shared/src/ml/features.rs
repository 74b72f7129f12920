//! The feature set: one list, versioned, computed point-in-time.
//!
//! Only what the database knew strictly before the cut-off is used: tasks
//! created before it (in their state at that moment), hours logged and
//! expenses incurred before it, and the team's projects closed before it.
//! Project status and actual end date are never features: they are today's
//! values, not the cut-off's.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::history::{self, ProjectHist, Skips, TeamRecords};
use crate::backend::time::day_start;
use crate::backend::{BackendDb, BackendError, Scope};

/// Bumped whenever a feature's meaning, order or fill changes; recorded with
/// every model so a model never meets features it was not trained on.
pub const FEATURE_SET_VERSION: &str = "fs-2";

/// Productive hours per allocated calendar day assumed when turning hours
/// into days (6 h on 5 days of 7).
const HOURS_PER_ALLOCATED_DAY: f64 = 6.0 * 5.0 / 7.0;
/// Tasks created within this many days of the start count as planned scope.
const PLANNING_WEEK_DAYS: i64 = 7;
/// Window for the "recent activity" features.
const RECENT_DAYS: i64 = 28;
/// Caps keep rate-based projections finite and out of the long tail when
/// almost no progress has been made.
const MAX_PROJECTED_DAYS: f64 = 1500.0;

const NAMES: [&str; 66] = [
    "complexity",
    "complexity_missing",
    "process_count",
    "process_count_missing",
    "bot_count",
    "bot_count_missing",
    "systems_integrated",
    "systems_integrated_missing",
    "log_budget",
    "budget_missing",
    "priority_low",
    "priority_high",
    "priority_critical",
    "priority_missing",
    "planned_days",
    "planned_days_missing",
    "team_members",
    "team_allocation",
    "team_experience",
    "team_experience_missing_share",
    "team_hourly_rate",
    "team_part_time_share",
    "team_prior_projects_log",
    "team_prior_slip",
    "team_prior_cancel_rate",
    "team_prior_missing",
    "start_missing",
    "planned_effort_days",
    "elapsed_days",
    "elapsed_over_planned",
    "planned_remaining_days",
    "tasks_known",
    "tasks_done",
    "tasks_in_progress",
    "task_done_share",
    "no_tasks",
    "estimated_hours_known",
    "estimated_hours_done_share",
    "logged_hours",
    "logged_over_estimate",
    "hours_last_28d",
    "tasks_done_last_28d",
    "tasks_created_last_28d",
    "days_since_activity",
    "spend",
    "spend_over_budget",
    "projected_remaining_by_pace",
    "remaining_effort_days",
    "pace_adjusted_remaining_days",
    "pace",
    "burn_rate_hours_per_day",
    "remaining_days_at_burn_rate",
    "projected_cost_over_budget",
    "overdue_days",
    "schedule_slack",
    "budget_slack",
    "projected_slip_by_pace",
    "projected_slip_by_burn_rate",
    "projected_slip_by_done_share",
    "scope_growth",
    "tasks_added_since_start",
    "utilization",
    "recent_burn_hours_per_day",
    "remaining_days_at_recent_burn",
    "cost_per_logged_hour",
    "earned_value_cost_over_budget",
];

/// Index of the first feature that depends on the cut-off's progress; the
/// ones before it describe the plan, the team and its track record.
pub(crate) const FIRST_PROGRESS_FEATURE: usize = 28;
/// Index of "elapsed_over_planned" (the calibration groups use it).
pub(crate) const ELAPSED_OVER_PLANNED: usize = 29;

pub fn feature_names() -> Vec<&'static str> {
    NAMES.to_vec()
}

/// Features of one project at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureRow {
    pub project_id: i64,
    pub as_of: DateTime<Utc>,
    /// In `feature_names()` order; never NaN (missing values are filled and flagged).
    pub values: Vec<f64>,
    pub elapsed_days: f64,
    pub start_date: Option<NaiveDate>,
    pub planned_days: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Extraction {
    /// One row per known project, in the order first requested.
    pub rows: Vec<FeatureRow>,
    /// Requested ids that are not in `projects`.
    pub unknown: Vec<i64>,
    /// Reason → count of values or rows that could not be used.
    pub skipped: BTreeMap<String, u64>,
}

/// `ids` without repeats, in first-seen order.
fn distinct(ids: &[i64]) -> Vec<i64> {
    let mut seen = HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// Point-in-time features for `project_ids` as of `as_of` (strictly earlier
/// timestamps only). Set-based: six queries whatever the number of ids.
pub async fn extract_features(
    db: &BackendDb,
    project_ids: &[i64],
    as_of: DateTime<Utc>,
) -> Result<Extraction, BackendError> {
    let ids = distinct(project_ids);
    let loaded = history::load(db, Scope::Ids(&ids)).await?;
    let records = history::load_team_records(db, &teams_of(&loaded)).await?;
    Ok(rows_of(&ids, loaded, &records, as_of))
}

/// [`extract_features`] through the loading as it was before the streaming
/// readers, for the tests that hold the two to the same answers.
#[cfg(test)]
pub(crate) async fn extract_features_reference(
    db: &BackendDb,
    project_ids: &[i64],
    as_of: DateTime<Utc>,
) -> Result<Extraction, BackendError> {
    let ids = distinct(project_ids);
    let loaded = history::reference::load(db, Scope::Ids(&ids)).await?;
    let records = history::reference::load_team_records(db, &teams_of(&loaded)).await?;
    Ok(rows_of(&ids, loaded, &records, as_of))
}

fn teams_of(loaded: &history::Loaded) -> Vec<i64> {
    let mut teams: Vec<i64> = loaded.projects.iter().filter_map(|p| p.team_id).collect();
    teams.sort_unstable();
    teams.dedup();
    teams
}

fn rows_of(
    ids: &[i64],
    loaded: history::Loaded,
    records: &TeamRecords,
    as_of: DateTime<Utc>,
) -> Extraction {
    let mut skips = loaded.skips;
    let by_id: std::collections::HashMap<i64, &ProjectHist> =
        loaded.projects.iter().map(|p| (p.id, p)).collect();
    let mut out = Extraction::default();
    for &id in ids {
        match by_id.get(&id) {
            Some(p) => {
                if p.start.is_none() {
                    skips.bump("missing_start_date");
                }
                out.rows.push(compute(p, records, as_of, &mut skips));
            }
            None => out.unknown.push(id),
        }
    }
    out.skipped = skips.0;
    out
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `value` or `fill`, and whether it was missing.
fn filled(value: Option<f64>, fill: f64) -> (f64, f64) {
    match value {
        Some(v) => (v, 0.0),
        None => (fill, 1.0),
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 1e-9 { num / den } else { 0.0 }
}

/// Features of `p` as of `cutoff`. Pure: the same history and cut-off give
/// the same row, which is what makes training and serving agree.
pub(crate) fn compute(
    p: &ProjectHist,
    teams: &TeamRecords,
    cutoff: DateTime<Utc>,
    skips: &mut Skips,
) -> FeatureRow {
    let mut v: Vec<f64> = Vec::with_capacity(NAMES.len());

    let (complexity, complexity_missing) = filled(p.complexity, 3.0);
    let (processes, processes_missing) = filled(p.process_count, 3.0);
    let (bots, bots_missing) = filled(p.bot_count, processes);
    let (systems, systems_missing) = filled(p.systems, 2.0);
    v.extend([
        complexity,
        complexity_missing,
        processes,
        processes_missing,
        bots,
        bots_missing,
        systems,
        systems_missing,
    ]);
    v.push(p.budget.map_or(0.0, |b| b.ln_1p()));
    v.push(flag(p.budget.is_none()));
    let priority = p.priority.as_deref();
    v.push(flag(priority == Some("low")));
    v.push(flag(priority == Some("high")));
    v.push(flag(priority == Some("critical")));
    v.push(flag(!matches!(
        priority,
        Some("low" | "medium" | "high" | "critical")
    )));

    let planned_days = p.planned_days().filter(|d| *d > 0.0);
    v.push(planned_days.unwrap_or(0.0));
    v.push(flag(planned_days.is_none()));

    // Team staffing.
    let allocation: f64 = p.members.iter().map(|m| m.allocation).sum();
    let weighted = |f: fn(&history::MemberHist) -> Option<f64>| -> Option<f64> {
        let (num, den) = p
            .members
            .iter()
            .filter_map(|m| f(m).map(|x| (x * m.allocation, m.allocation)))
            .fold((0.0, 0.0), |(a, b), (x, w)| (a + x, b + w));
        (den > 0.0).then(|| num / den)
    };
    let known_experience: f64 = p
        .members
        .iter()
        .filter(|m| m.experience.is_some())
        .map(|m| m.allocation)
        .sum();
    v.push(p.members.len() as f64);
    v.push(allocation);
    v.push(weighted(|m| m.experience).unwrap_or(5.0));
    v.push(if allocation > 0.0 {
        1.0 - known_experience / allocation
    } else {
        1.0
    });
    let team_rate = weighted(|m| m.rate).unwrap_or(60.0);
    v.push(team_rate);
    v.push(if p.members.is_empty() {
        0.0
    } else {
        p.members.iter().filter(|m| m.allocation <= 0.25).count() as f64 / p.members.len() as f64
    });

    // The team's track record up to the cut-off.
    let (mut prior, mut cancelled, mut slip_sum, mut slips) = (0usize, 0usize, 0.0, 0usize);
    for o in teams.before(p.team_id, cutoff, p.id) {
        prior += 1;
        cancelled += usize::from(o.cancelled);
        if let Some(s) = o.slip {
            slip_sum += s.clamp(-1.0, 5.0);
            slips += 1;
        }
    }
    v.push((prior as f64).ln_1p());
    v.push(if slips > 0 {
        slip_sum / slips as f64
    } else {
        0.0
    });
    v.push(ratio(cancelled as f64, prior as f64));
    v.push(flag(prior == 0));
    v.push(flag(p.start.is_none()));

    // Progress as of the cut-off.
    let capacity = allocation.max(0.25) * HOURS_PER_ALLOCATED_DAY;
    let start = p.start.map(day_start);
    let elapsed = start.map_or(0.0, |s| {
        ((cutoff - s).num_seconds() as f64 / 86_400.0).max(0.0)
    });
    let recent = cutoff
        .checked_sub_signed(Duration::days(RECENT_DAYS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);

    let visible: Vec<&history::TaskHist> = p.tasks.iter().filter(|t| t.created < cutoff).collect();
    // Tasks without an estimate count as the average estimated task.
    let (sum, n) = visible
        .iter()
        .filter_map(|t| t.estimate)
        .fold((0.0, 0usize), |(s, n), e| (s + e, n + 1));
    let mean_estimate = if n > 0 { sum / n as f64 } else { 0.0 };

    let known = visible.len();
    let mut done = 0usize;
    let mut in_progress = 0usize;
    let mut est_known = 0.0;
    let mut est_done = 0.0;
    let mut est_started = 0.0;
    let mut done_recent = 0usize;
    let mut created_recent = 0usize;
    let mut last_activity: Option<DateTime<Utc>> = None;
    // Scope as planned: tasks on the books by a week after the start (or
    // by the cut-off, if that is earlier).
    let planning_horizon = start
        .and_then(|s| s.checked_add_signed(Duration::days(PLANNING_WEEK_DAYS)))
        .map_or(cutoff, |h| h.min(cutoff));
    let mut est_planned = 0.0;
    let mut added_later = 0usize;
    for t in visible {
        created_recent += usize::from(t.created >= recent);
        let is_done = t.completed.is_some_and(|c| c < cutoff);
        let is_started = is_done || t.started.is_some_and(|s| s < cutoff);
        let e = t.estimate.unwrap_or(mean_estimate);
        est_known += e;
        if t.created < planning_horizon {
            est_planned += e;
        } else {
            added_later += 1;
        }
        if is_done {
            done += 1;
            est_done += e;
            if let Some(c) = t.completed {
                done_recent += usize::from(c >= recent);
                last_activity = last_activity.max(Some(c));
            }
        } else if is_started {
            in_progress += 1;
            est_started += e;
        }
    }
    let mut logged = 0.0;
    let mut logged_recent = 0.0;
    for (at, hours) in p.entries.iter().take_while(|(at, _)| *at < cutoff) {
        logged += hours;
        if *at >= recent {
            logged_recent += hours;
        }
        last_activity = last_activity.max(Some(*at));
    }
    let logged = logged.max(0.0);
    let spend: f64 = p
        .expenses
        .iter()
        .take_while(|(at, _)| *at < cutoff)
        .map(|(_, a)| a)
        .sum();

    let planned = planned_days.unwrap_or(0.0);
    let planned_effort_days = est_known / capacity;
    let done_share = if est_known > 0.0 {
        ratio(est_done, est_known)
    } else {
        ratio(done as f64, known as f64)
    };
    let planned_remaining = (planned - elapsed).max(0.0);
    let by_pace = if done_share > 0.02 {
        (elapsed * (1.0 - done_share) / done_share).min(MAX_PROJECTED_DAYS)
    } else if planned_days.is_some() {
        planned_remaining
    } else {
        planned_effort_days.min(MAX_PROJECTED_DAYS)
    };
    let remaining_effort = (est_known - est_done).max(0.0) / capacity;
    // Hours spent per estimated hour of finished (and half of started) work.
    let pace = if logged > 0.0 && est_done + est_started > 0.0 {
        (logged / (est_done + 0.5 * est_started)).clamp(0.3, 4.0)
    } else {
        1.0
    };
    let since_activity = match last_activity {
        Some(a) => ((cutoff - a).num_seconds() as f64 / 86_400.0).clamp(0.0, elapsed.max(0.0)),
        None => elapsed,
    };

    v.push(planned_effort_days.min(MAX_PROJECTED_DAYS));
    v.push(elapsed);
    v.push(ratio(elapsed, planned));
    v.push(planned_remaining);
    v.push(known as f64);
    v.push(done as f64);
    v.push(in_progress as f64);
    v.push(ratio(done as f64, known as f64));
    v.push(flag(known == 0));
    v.push(est_known);
    v.push(done_share);
    v.push(logged);
    v.push(ratio(logged, est_known).min(10.0));
    v.push(logged_recent);
    v.push(done_recent as f64);
    v.push(created_recent as f64);
    v.push(since_activity);
    v.push(spend);
    v.push(p.budget.map_or(0.0, |b| (spend / b).clamp(-1.0, 10.0)));
    v.push(by_pace);
    v.push(remaining_effort.min(MAX_PROJECTED_DAYS));
    v.push((remaining_effort * pace).min(MAX_PROJECTED_DAYS));
    v.push(pace);
    // Hours actually logged per calendar day: slower than planned when the
    // team is pulled elsewhere or the project stalls.
    let burn = if elapsed >= 7.0 {
        logged / elapsed
    } else {
        capacity
    };
    v.push(burn);
    let remaining_hours = (est_known - est_done).max(0.0) * pace;
    v.push((remaining_hours / burn.max(0.25 * capacity)).min(MAX_PROJECTED_DAYS));
    // Estimate at completion over budget, earned-value style: work known so
    // far at the pace seen so far, at the team's rate.
    v.push(p.budget.map_or(0.0, |b| {
        ((est_known * pace * team_rate) / b - 1.0).clamp(-1.0, 10.0)
    }));

    // fs-2: the plan's slack, and projections set against the plan. Trees
    // split on one feature at a time, so ratios they would need two
    // features for are given directly.
    v.push(planned_days.map_or(0.0, |d| (elapsed - d).max(0.0)));
    v.push(ratio(planned, planned_effort_days).min(20.0));
    v.push(
        p.budget
            .map_or(0.0, |b| ratio(b, est_known * team_rate).min(20.0)),
    );
    let slip = |remaining: f64| -> f64 {
        if planned > 0.0 {
            ((elapsed + remaining - planned) / planned).clamp(-1.0, 10.0)
        } else {
            0.0
        }
    };
    let pace_remaining = (remaining_effort * pace).min(MAX_PROJECTED_DAYS);
    let burn_remaining = (remaining_hours / burn.max(0.25 * capacity)).min(MAX_PROJECTED_DAYS);
    v.push(slip(pace_remaining));
    v.push(slip(burn_remaining));
    v.push(slip(by_pace));
    v.push(if est_planned > 0.0 {
        (est_known / est_planned).min(10.0)
    } else {
        1.0
    });
    v.push(added_later as f64);
    v.push(if elapsed >= 7.0 {
        (logged / (capacity * elapsed)).clamp(0.0, 5.0)
    } else {
        1.0
    });
    let recent_burn = if elapsed >= 7.0 {
        logged_recent.max(0.0) / elapsed.min(RECENT_DAYS as f64)
    } else {
        capacity
    };
    v.push(recent_burn);
    v.push((remaining_hours / recent_burn.max(0.25 * capacity)).min(MAX_PROJECTED_DAYS));
    v.push(if logged > 1.0 {
        (spend / logged).clamp(0.0, 10.0 * team_rate)
    } else {
        team_rate
    });
    // Earned value: cost to date over the share of work done.
    v.push(p.budget.map_or(0.0, |b| {
        if done_share > 0.05 {
            (spend / done_share / b - 1.0).clamp(-1.0, 10.0)
        } else {
            ((est_known * pace * team_rate) / b - 1.0).clamp(-1.0, 10.0)
        }
    }));
    debug_assert_eq!(v.len(), NAMES.len());

    let mut bad = 0;
    for x in &mut v {
        if !x.is_finite() {
            *x = 0.0;
            bad += 1;
        }
    }
    skips.add("non_finite_feature", bad);

    FeatureRow {
        project_id: p.id,
        as_of: cutoff,
        values: v,
        elapsed_days: elapsed,
        start_date: p.start,
        planned_days,
    }
}
