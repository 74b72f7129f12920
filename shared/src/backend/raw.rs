//! Set-based loads of the backend rows the features are built from.
//!
//! Every column is read as text or a number via CAST, so one SQL text serves
//! both databases and odd storage (an INTEGER in a TEXT column, NUMERIC
//! budgets) decodes instead of failing the whole query.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow};

use super::{BackendDb, BackendError, SQLITE_CHUNK};

/// Which rows a load covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    All,
    /// Rows whose filter column is one of these ids.
    Ids(&'a [i64]),
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct ProjectRecord {
    pub id: i64,
    pub team_id: Option<i64>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub complexity: Option<f64>,
    pub process_count: Option<f64>,
    pub bot_count: Option<f64>,
    pub systems_integrated: Option<f64>,
    pub budget: Option<f64>,
    pub start_date: Option<String>,
    pub planned_end_date: Option<String>,
    pub actual_end_date: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct TaskRecord {
    pub project_id: i64,
    pub status: Option<String>,
    pub estimated_hours: Option<f64>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct TimeEntryRecord {
    pub project_id: i64,
    pub hours: Option<f64>,
    pub logged_at: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct ExpenseRecord {
    pub project_id: i64,
    pub amount: Option<f64>,
    pub incurred_at: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub(crate) struct MemberRecord {
    pub project_id: i64,
    pub allocation: Option<f64>,
    pub experience_years: Option<f64>,
    pub hourly_rate: Option<f64>,
}

const PROJECT_COLUMNS: &str = "SELECT CAST(id AS BIGINT) AS id, CAST(team_id AS BIGINT) AS team_id, \
     CAST(status AS TEXT) AS status, CAST(priority AS TEXT) AS priority, \
     CAST(complexity AS DOUBLE PRECISION) AS complexity, \
     CAST(process_count AS DOUBLE PRECISION) AS process_count, \
     CAST(bot_count AS DOUBLE PRECISION) AS bot_count, \
     CAST(systems_integrated AS DOUBLE PRECISION) AS systems_integrated, \
     CAST(budget AS DOUBLE PRECISION) AS budget, \
     CAST(start_date AS TEXT) AS start_date, CAST(planned_end_date AS TEXT) AS planned_end_date, \
     CAST(actual_end_date AS TEXT) AS actual_end_date \
     FROM projects WHERE {filter}";

impl BackendDb {
    /// Runs `template` with `{filter}` replaced by a restriction of `column`
    /// to the scope's ids: `IN (...)` chunks on SQLite, `= ANY($1)` on PostgreSQL.
    pub(crate) async fn fetch_scoped<T>(
        &self,
        template: &str,
        column: &str,
        scope: Scope<'_>,
    ) -> Result<Vec<T>, BackendError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        match (self, scope) {
            (BackendDb::Sqlite(pool), Scope::All) => {
                let sql = template.replace("{filter}", "1 = 1");
                Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
            }
            (BackendDb::Postgres(pool), Scope::All) => {
                let sql = template.replace("{filter}", "TRUE");
                Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
            }
            (BackendDb::Sqlite(pool), Scope::Ids(ids)) => {
                let mut out = Vec::new();
                for chunk in ids.chunks(SQLITE_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = template.replace("{filter}", &format!("{column} IN ({marks})"));
                    let mut q = sqlx::query_as::<_, T>(AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(pool).await?);
                }
                Ok(out)
            }
            (BackendDb::Postgres(pool), Scope::Ids(ids)) => {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = template.replace("{filter}", &format!("{column} = ANY($1::bigint[])"));
                Ok(sqlx::query_as(AssertSqlSafe(sql))
                    .bind(ids.to_vec())
                    .fetch_all(pool)
                    .await?)
            }
        }
    }

    pub(crate) async fn load_projects(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<ProjectRecord>, BackendError> {
        self.fetch_scoped(PROJECT_COLUMNS, "id", scope).await
    }

    /// Projects belonging to these teams (for the team's track record).
    pub(crate) async fn load_team_projects(
        &self,
        team_ids: &[i64],
    ) -> Result<Vec<ProjectRecord>, BackendError> {
        self.fetch_scoped(PROJECT_COLUMNS, "team_id", Scope::Ids(team_ids))
            .await
    }

    pub(crate) async fn load_tasks(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<TaskRecord>, BackendError> {
        self.fetch_scoped(
            "SELECT CAST(project_id AS BIGINT) AS project_id, CAST(status AS TEXT) AS status, \
             CAST(estimated_hours AS DOUBLE PRECISION) AS estimated_hours, \
             CAST(created_at AS TEXT) AS created_at, CAST(started_at AS TEXT) AS started_at, \
             CAST(completed_at AS TEXT) AS completed_at \
             FROM tasks WHERE {filter}",
            "project_id",
            scope,
        )
        .await
    }

    pub(crate) async fn load_time_entries(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<TimeEntryRecord>, BackendError> {
        self.fetch_scoped(
            "SELECT CAST(t.project_id AS BIGINT) AS project_id, \
             CAST(e.hours AS DOUBLE PRECISION) AS hours, CAST(e.logged_at AS TEXT) AS logged_at \
             FROM time_entries e JOIN tasks t ON t.id = e.task_id WHERE {filter}",
            "t.project_id",
            scope,
        )
        .await
    }

    pub(crate) async fn load_expenses(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<ExpenseRecord>, BackendError> {
        self.fetch_scoped(
            "SELECT CAST(project_id AS BIGINT) AS project_id, \
             CAST(amount AS DOUBLE PRECISION) AS amount, CAST(incurred_at AS TEXT) AS incurred_at \
             FROM expenses WHERE {filter}",
            "project_id",
            scope,
        )
        .await
    }

    pub(crate) async fn load_members(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<MemberRecord>, BackendError> {
        self.fetch_scoped(
            "SELECT CAST(pm.project_id AS BIGINT) AS project_id, \
             CAST(pm.allocation AS DOUBLE PRECISION) AS allocation, \
             CAST(m.experience_years AS DOUBLE PRECISION) AS experience_years, \
             CAST(m.hourly_rate AS DOUBLE PRECISION) AS hourly_rate \
             FROM project_members pm JOIN team_members m ON m.id = pm.member_id WHERE {filter}",
            "pm.project_id",
            scope,
        )
        .await
    }
}
