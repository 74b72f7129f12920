//! Demo backend data: a synthetic RPA project portfolio with the structure
//! and the mess of a real backend (docs/DATA-CONTRACT.md), for the embedded
//! default and for tests.

mod generate;
mod write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub use generate::generate;
pub use write::{write_postgres, write_sqlite};

/// The backend's SQLite DDL, as the backend team publishes it (the file
/// beside this one).
pub const SOURCE_SCHEMA_SQLITE: &str = include_str!("source-schema.sql");

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub projects: usize,
    pub seed: u64,
    /// "Today" of the generated world: nothing happens on or after its midnight.
    pub as_of: NaiveDate,
    /// `Some(s)`: projects started in the last 90 days come from a population
    /// with more complexity, processes and integrated systems, scaled by `s`.
    pub shift: Option<f64>,
    /// `Some`: a young backend of slow projects (see [`LongProjects`]).
    pub long_projects: Option<LongProjects>,
}

/// A backend where long projects are common and history is short, so that
/// few of the long ones have closed yet: the closed projects are then a
/// biased sample of the projects started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongProjects {
    /// Projects start over this many days before `as_of` (instead of about
    /// four years).
    pub history_days: i64,
    /// Planned and actual durations are this many times the default ones
    /// (the team's capacity is divided by it).
    pub duration_scale: f64,
}

/// How a timestamp is spelled in SQLite; real backends mix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampStyle {
    /// '2026-03-01T09:30:00Z'
    IsoZ,
    /// '2026-03-01 09:30:00'
    Space,
    /// '2026-03-01' (the instant is midnight UTC)
    DateOnly,
}

/// A timestamp and the text style it is written in to SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub at: DateTime<Utc>,
    pub style: StampStyle,
}

impl Stamp {
    pub fn sqlite_text(&self) -> String {
        match self.style {
            StampStyle::IsoZ => self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            StampStyle::Space => self.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            StampStyle::DateOnly => self.at.format("%Y-%m-%d").to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub created_at: Stamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub role: String,
    pub experience_years: Option<f64>,
    pub hourly_rate: Option<f64>,
    pub active: bool,
    pub joined_at: Stamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub id: i64,
    pub team_id: Option<i64>,
    pub name: String,
    pub status: String,
    pub priority: Option<String>,
    pub complexity: Option<i64>,
    pub process_count: Option<i64>,
    pub bot_count: Option<i64>,
    pub systems_integrated: Option<i64>,
    pub budget: Option<f64>,
    pub start_date: Option<NaiveDate>,
    /// A plan, so it may lie after `as_of` for open projects.
    pub planned_end_date: Option<NaiveDate>,
    pub actual_end_date: Option<NaiveDate>,
    pub created_at: Stamp,
    pub updated_at: Stamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectMemberRow {
    pub project_id: i64,
    pub member_id: i64,
    pub allocation: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub project_id: i64,
    pub assignee_id: Option<i64>,
    pub title: String,
    pub status: String,
    pub estimated_hours: Option<f64>,
    pub created_at: Stamp,
    pub started_at: Option<Stamp>,
    pub completed_at: Option<Stamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimeEntryRow {
    pub id: i64,
    pub task_id: i64,
    pub member_id: Option<i64>,
    pub hours: f64,
    pub logged_at: Stamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpenseRow {
    pub id: i64,
    pub project_id: i64,
    pub category: String,
    pub amount: f64,
    pub incurred_at: Stamp,
}

/// Rows for every table of source-schema.sql.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoData {
    pub as_of: NaiveDate,
    pub teams: Vec<TeamRow>,
    pub team_members: Vec<MemberRow>,
    pub projects: Vec<ProjectRow>,
    pub project_members: Vec<ProjectMemberRow>,
    pub tasks: Vec<TaskRow>,
    pub time_entries: Vec<TimeEntryRow>,
    pub expenses: Vec<ExpenseRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DemoSummary {
    pub projects: usize,
    /// Open as `BackendDb::open_project_ids` counts them (`backend::is_open`).
    pub open: usize,
    pub completed: usize,
    pub cancelled: usize,
    pub tasks: usize,
    pub time_entries: usize,
    pub expenses: usize,
}

impl DemoData {
    pub fn summary(&self) -> DemoSummary {
        let status = |p: &ProjectRow| p.status.trim().to_ascii_lowercase();
        let completed = self
            .projects
            .iter()
            .filter(|p| status(p) == "completed")
            .count();
        let cancelled = self
            .projects
            .iter()
            .filter(|p| status(p) == "cancelled")
            .count();
        let open = self
            .projects
            .iter()
            .filter(|p| {
                crate::backend::is_open(
                    &crate::backend::normalize_status(Some(&p.status)),
                    p.actual_end_date.is_some(),
                )
            })
            .count();
        DemoSummary {
            projects: self.projects.len(),
            open,
            completed,
            cancelled,
            tasks: self.tasks.len(),
            time_entries: self.time_entries.len(),
            expenses: self.expenses.len(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::time::day_start;
    use std::collections::HashSet;
    use std::time::Instant;

    fn cfg(projects: usize, seed: u64) -> DemoConfig {
        DemoConfig {
            projects,
            seed,
            as_of: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shift: None,
            long_projects: None,
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let a = generate(&cfg(300, 7));
        let b = generate(&cfg(300, 7));
        assert_eq!(a, b);
        let c = generate(&cfg(300, 8));
        assert_ne!(a.projects, c.projects);
    }

    #[test]
    fn nothing_happens_on_or_after_as_of() {
        let c = cfg(2000, 3);
        let data = generate(&c);
        let limit = day_start(c.as_of);
        let mut stamps: Vec<Stamp> = Vec::new();
        stamps.extend(data.teams.iter().map(|r| r.created_at));
        stamps.extend(data.team_members.iter().map(|r| r.joined_at));
        for p in &data.projects {
            stamps.push(p.created_at);
            stamps.push(p.updated_at);
            for d in [p.start_date, p.actual_end_date].into_iter().flatten() {
                assert!(d < c.as_of, "project {} dated {d}", p.id);
            }
        }
        for t in &data.tasks {
            stamps.push(t.created_at);
            stamps.extend(t.started_at);
            stamps.extend(t.completed_at);
        }
        stamps.extend(data.time_entries.iter().map(|r| r.logged_at));
        stamps.extend(data.expenses.iter().map(|r| r.incurred_at));
        assert!(stamps.len() > 10_000);
        for s in stamps {
            assert!(s.at < limit, "{s:?}");
        }
        // Open projects have nothing recorded as their end.
        for p in &data.projects {
            let status = p.status.as_str();
            if matches!(status, "active" | "on_hold" | "paused" | "planned") {
                assert_eq!(p.actual_end_date, None, "project {}", p.id);
            }
        }
    }

    #[test]
    fn the_mess_of_a_real_backend_is_present() {
        let data = generate(&cfg(3000, 11));
        let p = &data.projects;
        assert!(p.iter().any(|r| r.team_id.is_none()));
        assert!(p.iter().any(|r| r.priority.is_none()));
        assert!(p.iter().any(|r| r.complexity.is_none()));
        assert!(p.iter().any(|r| r.process_count.is_none()));
        assert!(p.iter().any(|r| r.bot_count.is_none()));
        assert!(p.iter().any(|r| r.systems_integrated.is_none()));
        assert!(p.iter().any(|r| r.budget.is_none()));
        assert!(p.iter().any(|r| r.budget == Some(0.0)));
        assert!(p.iter().any(|r| r.start_date.is_none()));
        assert!(p.iter().any(|r| r.planned_end_date.is_none()));
        assert!(
            p.iter()
                .any(|r| r.status == "completed" && r.actual_end_date.is_none())
        );
        assert!(p.iter().any(|r| r.status == "paused"));
        assert!(p.iter().any(|r| r.status == "ARCHIVED"));
        let with_tasks: HashSet<i64> = data.tasks.iter().map(|t| t.project_id).collect();
        assert!(
            p.iter()
                .any(|r| r.status == "completed" && !with_tasks.contains(&r.id))
        );
        let m = &data.team_members;
        assert!(m.iter().any(|r| r.experience_years.is_none()));
        assert!(m.iter().any(|r| r.hourly_rate.is_none()));
        let t = &data.tasks;
        assert!(t.iter().any(|r| r.assignee_id.is_none()));
        assert!(t.iter().any(|r| r.estimated_hours.is_none()));
        assert!(
            t.iter()
                .any(|r| r.status == "done" && r.completed_at.is_none())
        );
        assert!(t.iter().any(|r| r.status == "review"));
        assert!(t.iter().any(|r| match (r.started_at, r.completed_at) {
            (Some(s), Some(c)) => c.at < s.at,
            _ => false,
        }));
        assert!(data.time_entries.iter().any(|r| r.hours < 0.0));
        assert!(data.time_entries.iter().any(|r| r.member_id.is_none()));
        assert!(data.expenses.iter().any(|r| r.amount < 0.0));
        let styles: HashSet<String> = data
            .tasks
            .iter()
            .map(|r| format!("{:?}", r.created_at.style))
            .collect();
        assert_eq!(styles.len(), 3, "{styles:?}");
    }

    #[test]
    fn shift_changes_only_recent_projects() {
        let base = generate(&cfg(500, 5));
        let shifted = generate(&DemoConfig {
            shift: Some(1.0),
            long_projects: None,
            ..cfg(500, 5)
        });
        let recent = |p: &ProjectRow| {
            p.start_date
                .is_none_or(|d| d > base.as_of - chrono::Duration::days(90))
        };
        let mut changed = 0;
        for (a, b) in base.projects.iter().zip(&shifted.projects) {
            if recent(a) {
                changed += usize::from(a.systems_integrated != b.systems_integrated);
            } else {
                assert_eq!(a.systems_integrated, b.systems_integrated);
                assert_eq!(a.complexity, b.complexity);
            }
        }
        assert!(changed > 0);
    }

    #[tokio::test]
    async fn five_thousand_projects_write_to_sqlite() {
        let started = Instant::now();
        let data = generate(&cfg(5000, 42));
        let generated = started.elapsed();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.db");
        write_sqlite(&path, &data).await.unwrap();
        let total = started.elapsed();
        println!(
            "demo: 5000 projects generated in {:.2}s, generated+written in {:.2}s: {:?}",
            generated.as_secs_f64(),
            total.as_secs_f64(),
            data.summary()
        );
        let err = write_sqlite(&path, &data).await.unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");

        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM time_entries")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n as usize, data.time_entries.len());
        let (text,): (String,) =
            sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'tasks'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(text.contains("estimated_hours  REAL"), "{text}");
    }
}
