//! Set-based loads of the backend rows the features are built from.
//!
//! Every column is read as text or a number via CAST, so one SQL text serves
//! both databases and odd storage (an INTEGER in a TEXT column, NUMERIC
//! budgets) decodes instead of failing the whole query. Numbers are read
//! through [`Dialect::number`], so text that is no number is a NULL in its
//! row on PostgreSQL too, not a failed query.

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

#[cfg(test)]
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

#[cfg(test)]
#[derive(Debug, Clone, FromRow)]
pub(crate) struct TaskRecord {
    pub project_id: i64,
    pub status: Option<String>,
    pub estimated_hours: Option<f64>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[cfg(test)]
#[derive(Debug, Clone, FromRow)]
pub(crate) struct TimeEntryRecord {
    pub project_id: i64,
    pub hours: Option<f64>,
    pub logged_at: Option<String>,
}

#[cfg(test)]
#[derive(Debug, Clone, FromRow)]
pub(crate) struct ExpenseRecord {
    pub project_id: i64,
    pub amount: Option<f64>,
    pub incurred_at: Option<String>,
}

#[cfg(test)]
#[derive(Debug, Clone, FromRow)]
pub(crate) struct MemberRecord {
    pub project_id: i64,
    pub allocation: Option<f64>,
    pub experience_years: Option<f64>,
    pub hourly_rate: Option<f64>,
}

/// How this database reads a column that should hold a number.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

/// A decimal number as PostgreSQL's `float8` input takes it, exponent of
/// at most two digits. With at most 40 characters in all, anything that
/// matches fits a double, so the cast after the test cannot fail.
const PG_NUMBER: &str =
    "'^[[:space:]]*[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]{1,2})?[[:space:]]*$'";
/// A whole number (`12`, `12.0`) that fits a BIGINT.
const PG_INTEGER: &str = "'^[[:space:]]*[-+]?[0-9]{1,18}([.]0*)?[[:space:]]*$'";
const PG_MAX_NUMBER_CHARS: usize = 40;
/// Column types whose every value casts to a BIGINT.
const PG_BINARY_INTEGERS: &str = "'integer'::regtype, 'bigint'::regtype, 'smallint'::regtype";
/// Column types whose every value casts to a double: read without the test
/// (which would print each value as text first).
const PG_BINARY_NUMBERS: &str = "'double precision'::regtype, 'real'::regtype, \
     'integer'::regtype, 'bigint'::regtype, 'smallint'::regtype";

impl Dialect {
    /// A numeric column as DOUBLE PRECISION, NULL when it holds no number.
    /// SQLite's `CAST` never fails (text reads as its leading number, or 0).
    /// PostgreSQL's fails the whole query on one text value that is not a
    /// number, so there the value is tested first and anything else (`n/a`,
    /// `high`, NaN, a 400-digit figure) reads as NULL, like a missing one.
    fn number(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({column} AS DOUBLE PRECISION)"),
            Dialect::Postgres => format!(
                "CASE WHEN pg_typeof({column}) IN ({PG_BINARY_NUMBERS}) \
                 THEN CAST({column} AS DOUBLE PRECISION) \
                 WHEN CAST({column} AS TEXT) ~ {PG_NUMBER} \
                 AND LENGTH(CAST({column} AS TEXT)) <= {PG_MAX_NUMBER_CHARS} \
                 THEN CAST({column} AS DOUBLE PRECISION) END"
            ),
        }
    }

    /// A reference to another row (`team_id`) as BIGINT, NULL when it is
    /// not a whole number, on the same terms as [`Dialect::number`].
    fn integer(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({column} AS BIGINT)"),
            Dialect::Postgres => format!(
                "CASE WHEN pg_typeof({column}) IN ({PG_BINARY_INTEGERS}) \
                 THEN CAST({column} AS BIGINT) \
                 WHEN CAST({column} AS TEXT) ~ {PG_INTEGER} \
                 THEN CAST(CAST({column} AS NUMERIC) AS BIGINT) END"
            ),
        }
    }

    pub(super) fn projects(self) -> String {
        format!(
            "SELECT CAST(id AS BIGINT) AS id, {} AS team_id, \
             CAST(status AS TEXT) AS status, CAST(priority AS TEXT) AS priority, \
             {} AS complexity, {} AS process_count, {} AS bot_count, \
             {} AS systems_integrated, {} AS budget, \
             CAST(start_date AS TEXT) AS start_date, CAST(planned_end_date AS TEXT) AS planned_end_date, \
             CAST(actual_end_date AS TEXT) AS actual_end_date \
             FROM projects WHERE {{filter}}",
            self.integer("team_id"),
            self.number("complexity"),
            self.number("process_count"),
            self.number("bot_count"),
            self.number("systems_integrated"),
            self.number("budget"),
        )
    }

    /// The team column compared as read, so a team id stored as text cannot
    /// fail the query.
    pub(super) fn team_filter_column(self) -> String {
        match self {
            Dialect::Sqlite => "team_id".to_string(),
            Dialect::Postgres => self.integer("team_id"),
        }
    }

    pub(super) fn tasks(self) -> String {
        format!(
            "SELECT CAST(project_id AS BIGINT) AS project_id, CAST(status AS TEXT) AS status, \
             {} AS estimated_hours, \
             CAST(created_at AS TEXT) AS created_at, CAST(started_at AS TEXT) AS started_at, \
             CAST(completed_at AS TEXT) AS completed_at \
             FROM tasks WHERE {{filter}}",
            self.number("estimated_hours")
        )
    }

    pub(super) fn time_entries(self) -> String {
        format!(
            "SELECT CAST(t.project_id AS BIGINT) AS project_id, \
             {} AS hours, CAST(e.logged_at AS TEXT) AS logged_at \
             FROM time_entries e JOIN tasks t ON t.id = e.task_id WHERE {{filter}}",
            self.number("e.hours")
        )
    }

    pub(super) fn expenses(self) -> String {
        format!(
            "SELECT CAST(project_id AS BIGINT) AS project_id, \
             {} AS amount, CAST(incurred_at AS TEXT) AS incurred_at \
             FROM expenses WHERE {{filter}}",
            self.number("amount")
        )
    }

    pub(super) fn members(self) -> String {
        format!(
            "SELECT CAST(pm.project_id AS BIGINT) AS project_id, \
             {} AS allocation, {} AS experience_years, {} AS hourly_rate \
             FROM project_members pm JOIN team_members m ON m.id = pm.member_id WHERE {{filter}}",
            self.number("pm.allocation"),
            self.number("m.experience_years"),
            self.number("m.hourly_rate"),
        )
    }
}

impl BackendDb {
    #[cfg(test)]
    fn dialect(&self) -> Dialect {
        match self {
            BackendDb::Sqlite(_) => Dialect::Sqlite,
            BackendDb::Postgres(_) => Dialect::Postgres,
        }
    }

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

    // The record loaders below are the reading as it was before
    // `stream.rs`: kept for the tests that hold the two to the same rows.

    #[cfg(test)]
    pub(crate) async fn load_projects(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<ProjectRecord>, BackendError> {
        self.fetch_scoped(&self.dialect().projects(), "id", scope)
            .await
    }

    /// Projects belonging to these teams (for the team's track record).
    #[cfg(test)]
    pub(crate) async fn load_team_projects(
        &self,
        team_ids: &[i64],
    ) -> Result<Vec<ProjectRecord>, BackendError> {
        let d = self.dialect();
        self.fetch_scoped(&d.projects(), &d.team_filter_column(), Scope::Ids(team_ids))
            .await
    }

    #[cfg(test)]
    pub(crate) async fn load_tasks(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<TaskRecord>, BackendError> {
        self.fetch_scoped(&self.dialect().tasks(), "project_id", scope)
            .await
    }

    #[cfg(test)]
    pub(crate) async fn load_time_entries(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<TimeEntryRecord>, BackendError> {
        self.fetch_scoped(&self.dialect().time_entries(), "t.project_id", scope)
            .await
    }

    #[cfg(test)]
    pub(crate) async fn load_expenses(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<ExpenseRecord>, BackendError> {
        self.fetch_scoped(&self.dialect().expenses(), "project_id", scope)
            .await
    }

    #[cfg(test)]
    pub(crate) async fn load_members(
        &self,
        scope: Scope<'_>,
    ) -> Result<Vec<MemberRecord>, BackendError> {
        self.fetch_scoped(&self.dialect().members(), "pm.project_id", scope)
            .await
    }
}
