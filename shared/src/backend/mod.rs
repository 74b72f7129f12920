//! Read-only access to the backend database (SQLite file or PostgreSQL).
//!
//! The service never writes the backend: SQLite is opened with `mode=ro`,
//! PostgreSQL sessions run with `default_transaction_read_only=on`.

mod raw;
mod stream;
pub mod time;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

pub(crate) use raw::Scope;
#[cfg(test)]
pub(crate) use raw::{ExpenseRecord, MemberRecord, ProjectRecord, TaskRecord, TimeEntryRecord};
pub(crate) use stream::{EntryRow, ExpenseRow, MemberRow, ProjectRow, RowSink, Selection, TaskRow};

/// How long to wait for a pooled connection before calling the backend unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's default limit on bound parameters was 999 before 3.32; staying
/// under it keeps us safe with any system SQLite a backend might have used.
pub(crate) const SQLITE_CHUNK: usize = 900;

#[derive(Debug, Clone)]
pub enum BackendDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Connection or I/O trouble, or a database busy for now (see
    /// `db_error::is_transient`); worth retrying later.
    #[error("backend database unreachable: {0}")]
    Unreachable(String),
    /// The database answered with an error; retrying will not help.
    #[error("backend query failed: {0}")]
    Query(String),
    #[error("backend database not found: {0}")]
    NotFound(String),
}

impl BackendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unreachable(_))
    }
}

impl From<sqlx::Error> for BackendError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db_error::is_transient(&e) {
            BackendError::Unreachable(e.to_string())
        } else {
            BackendError::Query(e.to_string())
        }
    }
}

/// True for URLs this module opens with SQLite: `sqlite:` schemes and bare
/// paths ending in `.sqlite`, `.sqlite3` or `.db`.
pub fn is_sqlite_url(url: &str) -> bool {
    sqlite_path(url).is_some()
}

/// The file a SQLite URL points to, without its query string.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let url = url.trim();
    let rest = if let Some(r) = url.strip_prefix("sqlite://") {
        r
    } else if let Some(r) = url.strip_prefix("sqlite:") {
        r
    } else if url.contains("://") {
        return None;
    } else {
        let path = url.split('?').next().unwrap_or(url);
        let lower = path.to_ascii_lowercase();
        if [".sqlite", ".sqlite3", ".db"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            path
        } else {
            return None;
        }
    };
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

impl BackendDb {
    /// Opens the backend read-only. `url` is `sqlite://path`, `sqlite:path`,
    /// a bare path ending in `.sqlite`/`.db`, or `postgres://...`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, BackendError> {
        let max_connections = max_connections.max(1);
        if let Some(path) = sqlite_path(url) {
            return Self::connect_sqlite(&path, max_connections).await;
        }
        let trimmed = url.trim();
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(trimmed)
                .map_err(|e| BackendError::Query(format!("invalid PostgreSQL URL: {e}")))?
                // Text renderings of dates and timestamps are parsed by one
                // parser for both databases, so pin their zone and style.
                .options([
                    ("default_transaction_read_only", "on"),
                    ("TimeZone", "UTC"),
                    ("DateStyle", "ISO"),
                ]);
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            return Ok(BackendDb::Postgres(pool));
        }
        Err(BackendError::Query(format!(
            "unsupported backend URL {:?}: expected sqlite://path, a .sqlite/.db path, or postgres://",
            redact(trimmed)
        )))
    }

    async fn connect_sqlite(path: &Path, max_connections: u32) -> Result<Self, BackendError> {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(BackendError::NotFound(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound(format!(
                    "SQLite file {} does not exist",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(BackendError::Unreachable(format!(
                    "cannot stat {}: {e}",
                    path.display()
                )));
            }
        }
        // Not `immutable`: the backend keeps writing this file while we read it.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(BackendDb::Sqlite(pool))
    }

    pub async fn ping(&self) -> Result<(), BackendError> {
        match self {
            BackendDb::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            BackendDb::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The subset of `ids` present in `projects`.
    pub async fn existing_projects(&self, ids: &[i64]) -> Result<HashSet<i64>, BackendError> {
        let rows: Vec<(i64,)> = self
            .fetch_scoped(
                "SELECT CAST(id AS BIGINT) FROM projects WHERE {filter}",
                "id",
                Scope::Ids(ids),
            )
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The projects [`is_open`] calls open, ascending. The end date is
    /// read with the parser features use, so `all_open` and training agree
    /// on which projects have ended.
    pub async fn open_project_ids(&self) -> Result<Vec<i64>, BackendError> {
        let sql = "SELECT CAST(id AS BIGINT), CAST(status AS TEXT), CAST(actual_end_date AS TEXT) \
                   FROM projects ORDER BY id";
        let rows: Vec<(i64, Option<String>, Option<String>)> = match self {
            BackendDb::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
            BackendDb::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .filter(|(_, status, end)| {
                is_open(
                    &normalize_status(status.as_deref()),
                    time::parse_date(end.as_deref()).ok().is_some(),
                )
            })
            .map(|(id, _, _)| id)
            .collect())
    }
}

/// Statuses that close a project: its outcome is known.
pub const CLOSED_STATUSES: [&str; 2] = ["completed", "cancelled"];
/// Statuses that say a project is under way or waiting to start, whatever
/// its end date says.
pub const OPEN_STATUSES: [&str; 3] = ["planned", "active", "on_hold"];

/// A status as compared: trimmed and lower-cased, NULL as "".
pub fn normalize_status(status: Option<&str>) -> String {
    status
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a project (its status normalised) is open, i.e. scored by
/// `all_open`: not completed or cancelled, and either a known open status
/// or no readable actual end date. A project under another status (or
/// none) with an end date, such as `archived`, has ended with an unknown
/// outcome: neither scored nor learned from (training counts it as
/// `ended_with_unknown_status`).
pub fn is_open(status: &str, has_actual_end: bool) -> bool {
    !CLOSED_STATUSES.contains(&status) && (OPEN_STATUSES.contains(&status) || !has_actual_end)
}

/// Drops a password from a URL before it goes into an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recognises_sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/data/backend.db"),
            Some(PathBuf::from("/var/data/backend.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://data/backend.db?mode=ro"),
            Some(PathBuf::from("data/backend.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:backend.sqlite"),
            Some(PathBuf::from("backend.sqlite"))
        );
        assert_eq!(
            sqlite_path("./backend.sqlite"),
            Some(PathBuf::from("./backend.sqlite"))
        );
        assert_eq!(sqlite_path("/x/y.DB"), Some(PathBuf::from("/x/y.DB")));
        assert!(!is_sqlite_url("postgres://u@h/db"));
        assert!(!is_sqlite_url("backend.txt"));
        assert!(!is_sqlite_url("sqlite::memory:"));
    }

    #[test]
    fn classifies_errors() {
        assert!(BackendError::Unreachable("x".into()).is_transient());
        assert!(!BackendError::Query("x".into()).is_transient());
        assert!(!BackendError::NotFound("x".into()).is_transient());
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://***@h/db");
    }

    #[tokio::test]
    async fn missing_sqlite_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("absent.db").display());
        let err = BackendDb::connect(&url, 1).await.unwrap_err();
        assert!(matches!(err, BackendError::NotFound(_)), "{err}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn sqlite_is_opened_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let data = crate::demo::generate(&crate::demo::DemoConfig {
            projects: 20,
            seed: 1,
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shift: None,
            long_projects: None,
        });
        crate::demo::write_sqlite(&path, &data).await.unwrap();
        let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
        db.ping().await.unwrap();
        let BackendDb::Sqlite(pool) = &db else {
            panic!("expected sqlite")
        };
        let err = sqlx::query("DELETE FROM projects")
            .execute(pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");

        let found = db.existing_projects(&[1, 2, 999_999]).await.unwrap();
        assert_eq!(found, [1, 2].into_iter().collect());
        let open = db.open_project_ids().await.unwrap();
        assert!(open.windows(2).all(|w| w[0] < w[1]));
        let summary = data.summary();
        assert_eq!(open.len(), summary.open);
    }
}
