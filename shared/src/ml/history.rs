//! Backend rows parsed into per-project histories held in memory, so that
//! features at any number of cut-offs come from one load.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use crate::backend::time::{Parsed, day_start, parse_date, parse_timestamp};
use crate::backend::{
    BackendDb, BackendError, EntryRow, ExpenseRow, MemberRow, ProjectRow, RowSink, Scope,
    Selection, TaskRow,
};

/// Reason → count of values or rows that could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Skips(pub BTreeMap<String, u64>);

impl Skips {
    pub fn add(&mut self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        // Looked up before inserting: no String per count on a messy backend.
        match self.0.get_mut(reason) {
            Some(c) => *c += n,
            None => {
                self.0.insert(reason.to_string(), n);
            }
        }
    }

    pub fn bump(&mut self, reason: &str) {
        self.add(reason, 1);
    }

    fn timestamp<T: Copy>(&mut self, p: Parsed<T>) -> Option<T> {
        if p.is_bad() {
            self.bump("unparseable_timestamp");
        }
        p.ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closure {
    Completed,
    Cancelled,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskHist {
    pub created: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub estimate: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct MemberHist {
    pub allocation: f64,
    pub experience: Option<f64>,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ProjectHist {
    pub id: i64,
    pub team_id: Option<i64>,
    /// Trimmed and lower-cased: 'COMPLETED' and 'completed' mean the same.
    pub status: String,
    pub priority: Option<String>,
    pub complexity: Option<f64>,
    pub process_count: Option<f64>,
    pub bot_count: Option<f64>,
    pub systems: Option<f64>,
    /// Only positive budgets: 0 and negatives carry no plan.
    pub budget: Option<f64>,
    pub start: Option<NaiveDate>,
    pub planned_end: Option<NaiveDate>,
    pub actual_end: Option<NaiveDate>,
    pub members: Vec<MemberHist>,
    pub tasks: Vec<TaskHist>,
    /// (logged_at, hours), sorted by time.
    pub entries: Vec<(DateTime<Utc>, f64)>,
    /// (incurred_at, amount), sorted by time.
    pub expenses: Vec<(DateTime<Utc>, f64)>,
    /// All expense amounts, dated or not: the contract's actual cost.
    pub total_cost: f64,
}

impl ProjectHist {
    pub fn closure(&self) -> Option<Closure> {
        match self.status.as_str() {
            "completed" => Some(Closure::Completed),
            "cancelled" => Some(Closure::Cancelled),
            _ => None,
        }
    }

    pub fn planned_days(&self) -> Option<f64> {
        match (self.start, self.planned_end) {
            (Some(s), Some(e)) => Some((e - s).num_days() as f64),
            _ => None,
        }
    }
}

/// A closed project as part of its team's track record.
#[derive(Debug, Clone)]
pub(crate) struct TeamOutcome {
    pub project_id: i64,
    pub end: NaiveDate,
    pub cancelled: bool,
    /// (actual - planned) / planned days, for completed projects with a plan.
    pub slip: Option<f64>,
}

/// Track records per team, each sorted by end date.
#[derive(Debug, Clone, Default)]
pub(crate) struct TeamRecords(pub HashMap<i64, Vec<TeamOutcome>>);

impl TeamRecords {
    pub fn from_projects(projects: &[ProjectHist]) -> Self {
        let mut map: HashMap<i64, Vec<TeamOutcome>> = HashMap::new();
        for p in projects {
            let (Some(team), Some(closure), Some(start), Some(end)) =
                (p.team_id, p.closure(), p.start, p.actual_end)
            else {
                continue;
            };
            if end < start {
                continue;
            }
            let slip = match (closure, p.planned_days()) {
                (Closure::Completed, Some(planned)) if planned > 0.0 => {
                    Some(((end - start).num_days() as f64 - planned) / planned)
                }
                _ => None,
            };
            map.entry(team).or_default().push(TeamOutcome {
                project_id: p.id,
                end,
                cancelled: closure == Closure::Cancelled,
                slip,
            });
        }
        for v in map.values_mut() {
            v.sort_by_key(|o| (o.end, o.project_id));
        }
        TeamRecords(map)
    }

    /// The team's projects that closed strictly before `cutoff`, other than `exclude`.
    pub fn before(
        &self,
        team: Option<i64>,
        cutoff: DateTime<Utc>,
        exclude: i64,
    ) -> impl Iterator<Item = &TeamOutcome> {
        team.and_then(|t| self.0.get(&t))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .take_while(move |o| day_start(o.end) < cutoff)
            .filter(move |o| o.project_id != exclude)
    }
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// A count-like attribute: negative or absurd values are treated as missing.
fn count(v: Option<f64>, max: f64) -> Option<f64> {
    finite(v).filter(|x| *x >= 0.0 && *x <= max)
}

fn normalize(s: Option<&str>) -> Option<String> {
    s.map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

pub(crate) struct Loaded {
    pub projects: Vec<ProjectHist>,
    pub skips: Skips,
}

/// Parses rows into histories as they stream in. Unusable values become
/// NULL and are counted; rows that cannot be placed in time are dropped and
/// counted.
#[derive(Default)]
pub(crate) struct Assembler {
    skips: Skips,
    out: Vec<ProjectHist>,
    index: HashMap<i64, usize>,
    /// Amounts of expenses without a date, per project in `out`.
    undated: Vec<Vec<f64>>,
}

impl RowSink for Assembler {
    fn project(&mut self, r: &ProjectRow<'_>) {
        if self.index.contains_key(&r.id) {
            return;
        }
        let skips = &mut self.skips;
        let complexity = finite(r.complexity).filter(|c| (1.0..=5.0).contains(c));
        let budget = finite(r.budget).filter(|b| *b > 0.0);
        let hist = ProjectHist {
            id: r.id,
            team_id: r.team_id,
            status: crate::backend::normalize_status(r.status),
            priority: normalize(r.priority),
            complexity,
            process_count: count(r.process_count, 1e4),
            bot_count: count(r.bot_count, 1e4),
            systems: count(r.systems_integrated, 1e4),
            budget,
            start: skips.timestamp(parse_date(r.start_date)),
            planned_end: skips.timestamp(parse_date(r.planned_end_date)),
            actual_end: skips.timestamp(parse_date(r.actual_end_date)),
            members: Vec::new(),
            tasks: Vec::new(),
            entries: Vec::new(),
            expenses: Vec::new(),
            total_cost: 0.0,
        };
        self.index.insert(r.id, self.out.len());
        self.out.push(hist);
        self.undated.push(Vec::new());
    }

    fn task(&mut self, t: &TaskRow<'_>) {
        let Some(&i) = self.index.get(&t.project_id) else {
            return;
        };
        let skips = &mut self.skips;
        let created = skips.timestamp(parse_timestamp(t.created_at));
        let mut started = skips.timestamp(parse_timestamp(t.started_at));
        let mut completed = skips.timestamp(parse_timestamp(t.completed_at));
        let Some(created) = created else {
            skips.bump("task_without_created_at");
            return;
        };
        // `normalize(..) == "done"` without a String per task.
        let done = t
            .status
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("done"));
        if done && completed.is_none() {
            // The database does not say when; the last moment we know the
            // task was worked on is the best point-in-time guess.
            skips.bump("task_done_without_completed_at");
            completed = Some(started.unwrap_or(created));
        }
        if let (Some(s), Some(c)) = (started, completed)
            && c < s
        {
            skips.bump("task_completed_before_started");
            started = Some(c);
        }
        self.out[i].tasks.push(TaskHist {
            created,
            started,
            completed,
            estimate: finite(t.estimated_hours).filter(|h| *h >= 0.0),
        });
    }

    fn entry(&mut self, e: &EntryRow<'_>) {
        let Some(&i) = self.index.get(&e.project_id) else {
            return;
        };
        let at = self.skips.timestamp(parse_timestamp(e.logged_at));
        let (Some(at), Some(hours)) = (at, finite(e.hours)) else {
            self.skips.bump("time_entry_unusable");
            return;
        };
        self.out[i].entries.push((at, hours));
    }

    fn expense(&mut self, x: &ExpenseRow<'_>) {
        let Some(&i) = self.index.get(&x.project_id) else {
            return;
        };
        let Some(amount) = finite(x.amount) else {
            self.skips.bump("expense_without_amount");
            return;
        };
        match self.skips.timestamp(parse_timestamp(x.incurred_at)) {
            Some(at) => self.out[i].expenses.push((at, amount)),
            None => {
                self.skips.bump("expense_without_timestamp");
                self.undated[i].push(amount);
            }
        }
    }

    fn member(&mut self, m: &MemberRow) {
        let Some(&i) = self.index.get(&m.project_id) else {
            return;
        };
        let allocation = finite(m.allocation)
            .filter(|a| *a >= 0.0)
            .map(|a| a.min(1.0))
            .unwrap_or(1.0);
        self.out[i].members.push(MemberHist {
            allocation,
            experience: finite(m.experience_years).filter(|x| *x >= 0.0),
            rate: finite(m.hourly_rate).filter(|x| *x > 0.0),
        });
    }
}

impl Assembler {
    pub fn finish(mut self) -> Loaded {
        for (p, undated) in self.out.iter_mut().zip(&mut self.undated) {
            order(p, undated);
        }
        Loaded {
            projects: self.out,
            skips: self.skips,
        }
    }
}

/// Puts a project's rows in one order and sums its cost.
fn order(p: &mut ProjectHist, undated: &mut [f64]) {
    // Rows arrive in whatever order the database returns them; features
    // and targets must not depend on it, not even in the last bit of a sum.
    p.tasks.sort_by(|a, b| {
        (a.created, a.started, a.completed)
            .cmp(&(b.created, b.started, b.completed))
            .then(
                a.estimate
                    .unwrap_or(-1.0)
                    .total_cmp(&b.estimate.unwrap_or(-1.0)),
            )
    });
    p.entries
        .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.expenses
        .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    undated.sort_by(f64::total_cmp);
    p.total_cost = p.expenses.iter().map(|e| e.1).sum::<f64>() + undated.iter().sum::<f64>();
    p.members.sort_by(|a, b| {
        a.allocation
            .total_cmp(&b.allocation)
            .then(
                a.experience
                    .unwrap_or(-1.0)
                    .total_cmp(&b.experience.unwrap_or(-1.0)),
            )
            .then(a.rate.unwrap_or(-1.0).total_cmp(&b.rate.unwrap_or(-1.0)))
    });
}

/// Loads the histories of `scope`'s projects: five queries, whatever the count.
pub(crate) async fn load(db: &BackendDb, scope: Scope<'_>) -> Result<Loaded, BackendError> {
    let sel = match scope {
        Scope::All => Selection::All,
        Scope::Ids(ids) => Selection::Projects(ids.to_vec()),
    };
    Ok(db.read_rows(sel, Assembler::default()).await?.finish())
}

/// Track records of the given teams (one more query).
pub(crate) async fn load_team_records(
    db: &BackendDb,
    team_ids: &[i64],
) -> Result<TeamRecords, BackendError> {
    if team_ids.is_empty() {
        return Ok(TeamRecords::default());
    }
    let sel = Selection::TeamProjects(team_ids.to_vec());
    // Parse problems in other projects' dates are not this request's concern.
    let loaded = db.read_rows(sel, Assembler::default()).await?.finish();
    Ok(TeamRecords::from_projects(&loaded.projects))
}

/// The loading as it was before the streaming readers: record structs from
/// sqlx, parsed by chrono alone. Only for the tests that hold the new
/// loading to the same histories, features and counts.
#[cfg(test)]
pub(crate) mod reference {
    use super::*;
    use crate::backend::time::{
        parse_date_reference as parse_date, parse_timestamp_reference as parse_timestamp,
    };
    use crate::backend::{ExpenseRecord, MemberRecord, ProjectRecord, TaskRecord, TimeEntryRecord};

    /// Parses raw rows into histories. Unusable values become NULL and are
    /// counted; rows that cannot be placed in time are dropped and counted.
    pub(crate) fn assemble(
        projects: Vec<ProjectRecord>,
        tasks: Vec<TaskRecord>,
        entries: Vec<TimeEntryRecord>,
        expenses: Vec<ExpenseRecord>,
        members: Vec<MemberRecord>,
    ) -> Loaded {
        let mut skips = Skips::default();
        let mut out: Vec<ProjectHist> = Vec::with_capacity(projects.len());
        let mut index: HashMap<i64, usize> = HashMap::with_capacity(projects.len());
        for r in projects {
            if index.contains_key(&r.id) {
                continue;
            }
            let complexity = finite(r.complexity).filter(|c| (1.0..=5.0).contains(c));
            let budget = finite(r.budget).filter(|b| *b > 0.0);
            let hist = ProjectHist {
                id: r.id,
                team_id: r.team_id,
                status: crate::backend::normalize_status(r.status.as_deref()),
                priority: normalize(r.priority.as_deref()),
                complexity,
                process_count: count(r.process_count, 1e4),
                bot_count: count(r.bot_count, 1e4),
                systems: count(r.systems_integrated, 1e4),
                budget,
                start: skips.timestamp(parse_date(r.start_date.as_deref())),
                planned_end: skips.timestamp(parse_date(r.planned_end_date.as_deref())),
                actual_end: skips.timestamp(parse_date(r.actual_end_date.as_deref())),
                members: Vec::new(),
                tasks: Vec::new(),
                entries: Vec::new(),
                expenses: Vec::new(),
                total_cost: 0.0,
            };
            index.insert(r.id, out.len());
            out.push(hist);
        }

        for t in tasks {
            let Some(&i) = index.get(&t.project_id) else {
                continue;
            };
            let created = skips.timestamp(parse_timestamp(t.created_at.as_deref()));
            let mut started = skips.timestamp(parse_timestamp(t.started_at.as_deref()));
            let mut completed = skips.timestamp(parse_timestamp(t.completed_at.as_deref()));
            let Some(created) = created else {
                skips.bump("task_without_created_at");
                continue;
            };
            let done = normalize(t.status.as_deref()).is_some_and(|s| s == "done");
            if done && completed.is_none() {
                // The database does not say when; the last moment we know the
                // task was worked on is the best point-in-time guess.
                skips.bump("task_done_without_completed_at");
                completed = Some(started.unwrap_or(created));
            }
            if let (Some(s), Some(c)) = (started, completed)
                && c < s
            {
                skips.bump("task_completed_before_started");
                started = Some(c);
            }
            out[i].tasks.push(TaskHist {
                created,
                started,
                completed,
                estimate: finite(t.estimated_hours).filter(|h| *h >= 0.0),
            });
        }

        for e in entries {
            let Some(&i) = index.get(&e.project_id) else {
                continue;
            };
            let at = skips.timestamp(parse_timestamp(e.logged_at.as_deref()));
            let (Some(at), Some(hours)) = (at, finite(e.hours)) else {
                skips.bump("time_entry_unusable");
                continue;
            };
            out[i].entries.push((at, hours));
        }

        let mut undated: Vec<Vec<f64>> = vec![Vec::new(); out.len()];
        for x in expenses {
            let Some(&i) = index.get(&x.project_id) else {
                continue;
            };
            let Some(amount) = finite(x.amount) else {
                skips.bump("expense_without_amount");
                continue;
            };
            match skips.timestamp(parse_timestamp(x.incurred_at.as_deref())) {
                Some(at) => out[i].expenses.push((at, amount)),
                None => {
                    skips.bump("expense_without_timestamp");
                    undated[i].push(amount);
                }
            }
        }

        for m in members {
            let Some(&i) = index.get(&m.project_id) else {
                continue;
            };
            let allocation = finite(m.allocation)
                .filter(|a| *a >= 0.0)
                .map(|a| a.min(1.0))
                .unwrap_or(1.0);
            out[i].members.push(MemberHist {
                allocation,
                experience: finite(m.experience_years).filter(|x| *x >= 0.0),
                rate: finite(m.hourly_rate).filter(|x| *x > 0.0),
            });
        }

        for (p, undated) in out.iter_mut().zip(&mut undated) {
            super::order(p, undated);
        }
        Loaded {
            projects: out,
            skips,
        }
    }

    /// Loads the histories of `scope`'s projects: five queries, whatever the count.
    pub(crate) async fn load(db: &BackendDb, scope: Scope<'_>) -> Result<Loaded, BackendError> {
        let projects = db.load_projects(scope).await?;
        let tasks = db.load_tasks(scope).await?;
        let entries = db.load_time_entries(scope).await?;
        let expenses = db.load_expenses(scope).await?;
        let members = db.load_members(scope).await?;
        Ok(assemble(projects, tasks, entries, expenses, members))
    }

    /// Track records of the given teams (one more query).
    pub(crate) async fn load_team_records(
        db: &BackendDb,
        team_ids: &[i64],
    ) -> Result<TeamRecords, BackendError> {
        if team_ids.is_empty() {
            return Ok(TeamRecords::default());
        }
        let rows = db.load_team_projects(team_ids).await?;
        // Parse problems in other projects' dates are not this request's concern.
        let loaded = assemble(rows, Vec::new(), Vec::new(), Vec::new(), Vec::new());
        Ok(TeamRecords::from_projects(&loaded.projects))
    }
}
