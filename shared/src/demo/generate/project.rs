//! One demo project's life: its plan and the hidden forces behind its real
//! effort, then the work as it unfolds (tasks, logged hours, expenses,
//! pauses) up to `as_of`, written as the backend's rows.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::draws::{days, logistic, lognormal, maybe, pick_weighted, poisson, stamp, unit};
use super::{Ids, Member, Team};
use crate::backend::time::day_start;
use crate::demo::{
    DemoConfig, DemoData, ExpenseRow, ProjectMemberRow, ProjectRow, StampStyle, TaskRow,
    TimeEntryRow,
};

/// Productive hours per calendar day for a member at allocation 1.0.
const HOURS_PER_DAY: f64 = 6.0 * 5.0 / 7.0;
/// Projects start over this many days before `as_of` (about four years).
const HISTORY_DAYS: i64 = 4 * 365;
/// Projects may be planned to start up to this many days after `as_of`.
const FUTURE_DAYS: i64 = 60;
const LICENSE_PER_BOT_MONTH: f64 = 120.0;
/// Rate the books use when a member has no hourly rate on file.
const FALLBACK_RATE: f64 = 55.0;

const PROCESSES: [&str; 10] = [
    "Invoice processing",
    "Employee onboarding",
    "Claims intake",
    "Order to cash",
    "Vendor master data",
    "Payroll reconciliation",
    "Customer KYC",
    "Purchase requisitions",
    "Month-end close",
    "Ticket triage",
];

/// Maps progress through the work (0..1) to days after the start, with an
/// optional pause during which nothing happens.
struct Timeline {
    start: DateTime<Utc>,
    work_days: f64,
    pause_at: f64,
    pause_days: f64,
}

impl Timeline {
    fn offset(&self, f: f64) -> f64 {
        f * self.work_days
            + if f > self.pause_at {
                self.pause_days
            } else {
                0.0
            }
    }

    /// Working hours 08:00-18:00, rising with the fraction of the day so that
    /// events keep their order within a day.
    fn at_offset(&self, off: f64) -> DateTime<Utc> {
        let day = off.floor();
        let seconds = 8.0 * 3600.0 + (off - day) * 10.0 * 3600.0;
        self.start + Duration::days(day as i64) + Duration::seconds(seconds as i64)
    }
}

struct SimTask {
    estimate: f64,
    true_hours: f64,
    created_off: f64,
    order_key: f64,
    start_f: f64,
    finish_f: f64,
    assignee: i64,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn generate_project(
    rng: &mut ChaCha8Rng,
    cfg: &DemoConfig,
    as_of_t: DateTime<Utc>,
    teams: &[Team],
    id: i64,
    ids: &mut Ids,
    data: &mut DemoData,
) {
    let as_of = cfg.as_of;
    let style = if rng.gen_bool(0.5) {
        StampStyle::IsoZ
    } else {
        StampStyle::Space
    };
    let history = cfg
        .long_projects
        .map_or(HISTORY_DAYS, |l| l.history_days.max(1));
    let start_day = as_of - Duration::days(rng.gen_range(-FUTURE_DAYS..=history));
    let team = &teams[rng.gen_range(0..teams.len())];

    let mut complexity = pick_weighted(rng, &[0.10, 0.25, 0.30, 0.22, 0.13]) as i64 + 1;
    let mut processes = 1 + poisson(rng, 0.6 + 0.8 * complexity as f64);
    let bots = (processes + rng.gen_range(-1..=2)).max(1);
    let mut systems = 1 + poisson(rng, 0.3 + 0.6 * complexity as f64);
    if let Some(s) = cfg.shift
        && start_day > as_of - Duration::days(90)
        && s.is_finite()
    {
        complexity = (complexity + s.round() as i64).clamp(1, 5);
        systems = ((systems as f64) * (1.0 + s)).round().max(1.0) as i64;
        processes = ((processes as f64) * (1.0 + s / 2.0)).round().max(1.0) as i64;
    }
    let priority =
        ["low", "medium", "high", "critical"][pick_weighted(rng, &[0.2, 0.45, 0.25, 0.1])];

    // Staffing: a few members of the team, often part-time.
    let k = rng.gen_range(2..=team.members.len().min(5));
    let mut pool: Vec<&Member> = team.members.iter().collect();
    pool.shuffle(rng);
    let staff: Vec<(&Member, f64)> = pool[..k]
        .iter()
        .map(|m| {
            let alloc = [0.25, 0.5, 0.75, 1.0][pick_weighted(rng, &[0.15, 0.3, 0.25, 0.3])];
            (*m, alloc)
        })
        .collect();
    let allocation: f64 = staff.iter().map(|(_, a)| a).sum();
    let experience = staff.iter().map(|(m, a)| m.experience * a).sum::<f64>() / allocation;
    let rate = staff.iter().map(|(m, a)| m.rate * a).sum::<f64>() / allocation;
    let part_time_share =
        staff.iter().filter(|(_, a)| *a <= 0.25).count() as f64 / staff.len() as f64;
    let capacity = allocation * HOURS_PER_DAY
        / cfg
            .long_projects
            .map_or(1.0, |l| l.duration_scale.max(f64::MIN_POSITIVE));

    // Planning view.
    let c = complexity as f64;
    let base_hours = 55.0
        * (processes as f64).powf(0.85)
        * (1.0 + 0.3 * (c - 1.0))
        * (1.0 + 0.07 * systems as f64)
        * (1.0 + 0.1 * bots as f64 / processes as f64);
    let estimate = base_hours * lognormal(rng, 0.12);
    let planned_days = (estimate / capacity * 1.1 + 5.0).ceil();

    // What really happens.
    let experience_factor = (experience / 5.0).powf(-0.3).clamp(0.7, 1.6);
    let systems_factor = 1.0 + 0.05 * ((systems - 2).max(0) as f64).powf(1.4);
    let overrun_p = (0.04
        + 0.03 * (c - 1.0)
        + 0.03 * (systems - 3).max(0) as f64
        + if experience < 3.0 { 0.05 } else { 0.0 })
    .min(0.4);
    let overrun = unit(rng) < overrun_p;
    // Planners know the average overhead (the 1.12), not this project's.
    let ratio = experience_factor / 1.12
        * systems_factor
        * team.efficiency
        * (1.0 + 0.2 * part_time_share)
        * lognormal(rng, 0.15)
        * if overrun {
            rng.gen_range(1.3..1.9)
        } else {
            1.0
        };
    let actual_hours = base_hours * ratio;
    let (pause_at, pause_days) = if unit(rng) < 0.08 {
        (rng.gen_range(0.2..0.8), rng.gen_range(14.0..60.0))
    } else {
        (2.0, 0.0)
    };
    let timeline = Timeline {
        start: day_start(start_day),
        work_days: (actual_hours / capacity).max(3.0),
        pause_at,
        pause_days,
    };
    let cancel_logit = -3.4
        + 0.35 * (c - 3.0)
        + 0.3 * (systems - 3).max(0) as f64
        + if overrun { 1.4 } else { 0.0 }
        + if priority == "low" { 0.5 } else { 0.0 }
        + if ratio > 1.5 { 0.8 } else { 0.0 };
    let cancelled_at_f = if unit(rng) < logistic(cancel_logit) {
        Some(rng.gen_range(0.15..0.75))
    } else {
        None
    };
    let end_off = timeline.offset(cancelled_at_f.unwrap_or(1.0));
    let end_day = start_day + Duration::days(end_off.floor() as i64);

    let not_started = start_day >= as_of;
    let closed = !not_started && end_day < as_of;
    let now_days = (as_of - start_day).num_days() as f64;
    // Whether an event at `off` days after the start is in the data.
    let visible = |off: f64| -> bool {
        if not_started {
            false
        } else if closed {
            off <= end_off
        } else {
            off.floor() < now_days
        }
    };

    let created_gap = rng.gen_range(3.0..45.0);
    let mut created_at = timeline.start - days(created_gap);
    if created_at >= as_of_t {
        created_at = as_of_t - days(rng.gen_range(1.0..30.0));
    }

    // Tasks: planned at the start, more discovered along the way when the
    // work turns out bigger than estimated.
    let n_init = ((estimate / 30.0) * lognormal(rng, 0.2))
        .round()
        .clamp(3.0, 40.0) as usize;
    let n_extra = ((n_init as f64) * (ratio - 1.0).max(0.0) * 0.5 + poisson(rng, 0.5) as f64)
        .round()
        .min(30.0) as usize;
    let planning_tasks = unit(rng) < 0.45;
    // Work is handed out in proportion to each member's allocation.
    let allocations: Vec<f64> = staff.iter().map(|(_, a)| *a).collect();
    let mut sim: Vec<SimTask> = Vec::with_capacity(n_init + n_extra);
    for i in 0..n_init + n_extra {
        let extra = i >= n_init;
        let est = (estimate / n_init as f64 * lognormal(rng, 0.35) * 2.0)
            .round()
            .max(1.0)
            / 2.0;
        let (created_off, order_key) = if extra {
            let f = rng.gen_range(0.1..0.6);
            (timeline.offset(f), f + rng.gen_range(0.0..0.15))
        } else if planning_tasks {
            (
                -rng.gen_range(0.1..created_gap.min(14.0)),
                rng.gen_range(0.0..0.6),
            )
        } else {
            (
                timeline.offset(rng.gen_range(0.0..0.03)),
                rng.gen_range(0.0..0.6),
            )
        };
        sim.push(SimTask {
            estimate: est,
            true_hours: est * lognormal(rng, 0.25),
            created_off,
            order_key,
            start_f: 0.0,
            finish_f: 0.0,
            assignee: staff[pick_weighted(rng, &allocations)].0.id,
        });
    }
    let weight: f64 = sim.iter().map(|t| t.true_hours).sum();
    for t in &mut sim {
        t.true_hours *= actual_hours / weight;
    }
    sim.sort_by(|a, b| a.order_key.total_cmp(&b.order_key));
    let parallel = staff.len().clamp(1, 5) as f64;
    let mut done_hours = 0.0;
    for t in &mut sim {
        done_hours += t.true_hours;
        let created_f = (t.created_off / timeline.work_days).max(0.0);
        t.finish_f = (done_hours / actual_hours).max(created_f + 0.02).min(1.0);
        let span = t.true_hours / actual_hours * parallel * rng.gen_range(0.8..1.5);
        t.start_f = (t.finish_f - span).max(created_f).min(t.finish_f);
    }

    let has_tasks = unit(rng) > 0.01;
    let rate_of = |member: i64| {
        staff
            .iter()
            .find(|(m, _)| m.id == member)
            .map_or(FALLBACK_RATE, |(m, _)| m.rate)
    };
    // (day offset, hours, rate) of all work, written or not, for the labor invoices.
    let mut work_log: Vec<(f64, f64, f64)> = Vec::new();
    let mut last_event = created_at;
    let reference_f = if closed {
        cancelled_at_f.unwrap_or(1.0)
    } else {
        f64::INFINITY
    };
    for t in &sim {
        let created_t = timeline.at_offset(t.created_off);
        if !(visible(t.created_off) || (t.created_off < 0.0 && created_t < as_of_t)) {
            continue;
        }
        let start_off = timeline.offset(t.start_f);
        let finish_off = timeline.offset(t.finish_f);
        let started = visible(start_off) && t.start_f <= reference_f;
        let finished = visible(finish_off) && t.finish_f <= reference_f;
        let status = if finished {
            "done"
        } else if started {
            match rng.gen_range(0..100) {
                0..=5 => "blocked",
                6 => "review",
                _ => "in_progress",
            }
        } else {
            "todo"
        };
        let mut started_at = started.then(|| timeline.at_offset(start_off));
        let mut completed_at = finished.then(|| timeline.at_offset(finish_off));
        if let (Some(s), Some(_)) = (started_at, completed_at)
            && unit(rng) < 0.005
        {
            // Out of order: a completion recorded before the start.
            completed_at = Some(s - days(rng.gen_range(1.0..3.0)));
        }
        if finished && unit(rng) < 0.01 {
            completed_at = None;
        }
        if started_at.is_some() && unit(rng) < 0.02 {
            started_at = None;
        }
        let task_id = if has_tasks {
            ids.task += 1;
            ids.task
        } else {
            0
        };

        let k = (t.true_hours / 10.0).ceil().clamp(1.0, 6.0) as usize;
        for _ in 0..k {
            let f = t.start_f + (t.finish_f - t.start_f) * unit(rng);
            let off = timeline.offset(f);
            if !visible(off) || f > reference_f {
                continue;
            }
            let mut hours = ((t.true_hours / k as f64 * rng.gen_range(0.7..1.3)) * 4.0)
                .round()
                .max(1.0)
                / 4.0;
            let member = if unit(rng) < 0.1 {
                staff[rng.gen_range(0..staff.len())].0.id
            } else {
                t.assignee
            };
            let mut logged = timeline.at_offset(off);
            if unit(rng) < 0.005 {
                logged = created_t - days(rng.gen_range(1.0..5.0));
            }
            let correction = unit(rng) < 0.015;
            let extra = if correction {
                (rng.gen_range(1.0..4.0_f64) * 4.0).round() / 4.0
            } else {
                0.0
            };
            hours += extra;
            work_log.push((off, hours - extra, rate_of(member)));
            if has_tasks {
                ids.entry += 1;
                data.time_entries.push(TimeEntryRow {
                    id: ids.entry,
                    task_id,
                    member_id: maybe(rng, 0.01, member),
                    hours,
                    logged_at: stamp(rng, logged, style),
                });
                last_event = last_event.max(logged);
                let fix_off = off + rng.gen_range(1.0..10.0);
                if correction && visible(fix_off) {
                    ids.entry += 1;
                    let fixed = timeline.at_offset(fix_off);
                    data.time_entries.push(TimeEntryRow {
                        id: ids.entry,
                        task_id,
                        member_id: Some(member),
                        hours: -extra,
                        logged_at: stamp(rng, fixed, style),
                    });
                    last_event = last_event.max(fixed);
                }
            }
        }
        if !has_tasks {
            continue;
        }
        for ts in [Some(created_t), started_at, completed_at]
            .into_iter()
            .flatten()
        {
            last_event = last_event.max(ts);
        }
        let assignee = if unit(rng) < 0.03 {
            None
        } else {
            Some(t.assignee)
        };
        data.tasks.push(TaskRow {
            id: task_id,
            project_id: id,
            assignee_id: assignee,
            title: format!("Task {task_id}"),
            status: status.to_string(),
            estimated_hours: maybe(rng, 0.03, t.estimate),
            created_at: stamp(rng, created_t, style),
            started_at: started_at.map(|s| stamp(rng, s, style)),
            completed_at: completed_at.map(|s| stamp(rng, s, style)),
        });
    }

    // Expenses: monthly labor invoices from the hours worked, bot licenses
    // once bots are deployed, infrastructure up front, a few others.
    let mut push_expense = |rng: &mut ChaCha8Rng, off: f64, category: &str, amount: f64| {
        if !visible(off) {
            return;
        }
        ids.expense += 1;
        let at = timeline.at_offset(off);
        last_event = last_event.max(at);
        data.expenses.push(ExpenseRow {
            id: ids.expense,
            project_id: id,
            category: category.to_string(),
            amount: (amount * 100.0).round() / 100.0,
            incurred_at: stamp(rng, at, style),
        });
    };
    let mut month: f64 = 1.0;
    loop {
        let window_end = (30.0 * month).min(end_off);
        let amount: f64 = work_log
            .iter()
            .filter(|(off, _, _)| *off < window_end && *off >= window_end - 30.0)
            .map(|(_, h, r)| h * r)
            .sum();
        if amount > 0.0 {
            push_expense(rng, window_end, "labor", amount);
        }
        if window_end >= end_off || !visible(window_end) {
            break;
        }
        month += 1.0;
    }
    let deploy = timeline.offset(0.35);
    let mut license_off = deploy;
    while license_off <= end_off && visible(license_off) {
        let amount = bots as f64 * LICENSE_PER_BOT_MONTH * rng.gen_range(0.97..1.03);
        push_expense(rng, license_off, "license", amount);
        license_off += 30.0;
    }
    let infra = (400.0 + 250.0 * systems as f64) * rng.gen_range(0.8..1.4);
    let infra_off = rng.gen_range(0.0..7.0);
    push_expense(rng, infra_off, "infrastructure", infra);
    if systems >= 4 {
        let amount = 150.0 * systems as f64 * rng.gen_range(0.8..1.2);
        push_expense(rng, timeline.offset(0.5), "infrastructure", amount);
    }
    if unit(rng) < 0.12 {
        let off = timeline.offset(rng.gen_range(0.0..1.0));
        let amount = rng.gen_range(200.0..2500.0);
        push_expense(rng, off, "other", amount);
    }
    if unit(rng) < 0.005 {
        let off = timeline.offset(rng.gen_range(0.3..1.0));
        let amount = -rng.gen_range(100.0..800.0);
        push_expense(rng, off, "other", amount);
    }

    let planned_cost = estimate * rate
        + bots as f64 * LICENSE_PER_BOT_MONTH * (planned_days * 0.65 / 30.0)
        + (400.0 + 250.0 * systems as f64) * 1.1
        + if systems >= 4 {
            150.0 * systems as f64
        } else {
            0.0
        };
    let budget = (planned_cost * rng.gen_range(1.0..1.15) / 100.0).round() * 100.0;
    let budget = match rng.gen_range(0..100) {
        0 | 1 => None,
        2 => Some(0.0),
        _ => Some(budget),
    };

    let mut status = if not_started {
        "planned"
    } else if closed {
        if cancelled_at_f.is_some() {
            "cancelled"
        } else {
            "completed"
        }
    } else {
        ["active", "on_hold", "paused"][pick_weighted(rng, &[0.9, 0.08, 0.02])]
    };
    if closed && unit(rng) < 0.004 {
        status = "ARCHIVED";
    }
    let mut actual_end = closed.then_some(end_day);
    if status == "completed" && unit(rng) < 0.005 {
        actual_end = None;
    }
    let mut start_date = (!not_started).then_some(start_day);
    if status == "active" && unit(rng) < 0.003 {
        start_date = None;
    }
    let planned_end = if not_started && unit(rng) < 0.6 {
        None
    } else {
        maybe(rng, 0.02, start_day + Duration::days(planned_days as i64))
    };
    let updated = if closed {
        timeline.at_offset(end_off.floor() + 0.9).max(last_event)
    } else {
        last_event
    };

    for (m, alloc) in &staff {
        data.project_members.push(ProjectMemberRow {
            project_id: id,
            member_id: m.id,
            allocation: *alloc,
        });
    }
    data.projects.push(ProjectRow {
        id,
        team_id: maybe(rng, 0.01, team.id),
        name: format!(
            "{} automation #{id}",
            PROCESSES[rng.gen_range(0..PROCESSES.len())]
        ),
        status: status.to_string(),
        priority: maybe(rng, 0.04, priority.to_string()),
        complexity: maybe(rng, 0.03, complexity),
        process_count: maybe(rng, 0.02, processes),
        bot_count: maybe(rng, 0.02, bots),
        systems_integrated: maybe(rng, 0.02, systems),
        budget,
        start_date,
        planned_end_date: planned_end,
        actual_end_date: actual_end,
        created_at: stamp(rng, created_at, style),
        updated_at: stamp(rng, updated, style),
    });
}
