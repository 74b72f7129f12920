//! The backend rows features are built from, handed one at a time to a
//! [`RowSink`] as borrowed values: no record per row, no `String` per text
//! value.
//!
//! The SQL is the set-based, CAST-everything SQL of `raw.rs`, so what
//! decodes, what reads as NULL and which query fails are as before. What
//! changed is the reading: on SQLite a synchronous rusqlite statement in
//! `spawn_blocking` (sqlx-sqlite runs each connection on a worker thread and
//! sends every row over a channel, which cost more than the query), on
//! PostgreSQL sqlx's stream decoded in place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::TryStreamExt;
use rusqlite::types::ValueRef;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::raw::Dialect;
use super::{BackendDb, BackendError, SQLITE_CHUNK};

/// One `projects` row, as `raw::ProjectRecord` but borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProjectRow<'a> {
    pub id: i64,
    pub team_id: Option<i64>,
    pub status: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub complexity: Option<f64>,
    pub process_count: Option<f64>,
    pub bot_count: Option<f64>,
    pub systems_integrated: Option<f64>,
    pub budget: Option<f64>,
    pub start_date: Option<&'a str>,
    pub planned_end_date: Option<&'a str>,
    pub actual_end_date: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskRow<'a> {
    pub project_id: i64,
    pub status: Option<&'a str>,
    pub estimated_hours: Option<f64>,
    pub created_at: Option<&'a str>,
    pub started_at: Option<&'a str>,
    pub completed_at: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRow<'a> {
    pub project_id: i64,
    pub hours: Option<f64>,
    pub logged_at: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpenseRow<'a> {
    pub project_id: i64,
    pub amount: Option<f64>,
    pub incurred_at: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberRow {
    pub project_id: i64,
    pub allocation: Option<f64>,
    pub experience_years: Option<f64>,
    pub hourly_rate: Option<f64>,
}

/// Receives rows table by table: all projects first, then tasks, time
/// entries, expenses and members (when the selection reads them).
pub(crate) trait RowSink {
    fn project(&mut self, r: &ProjectRow<'_>);
    fn task(&mut self, r: &TaskRow<'_>);
    fn entry(&mut self, r: &EntryRow<'_>);
    fn expense(&mut self, r: &ExpenseRow<'_>);
    fn member(&mut self, r: &MemberRow);
}

/// Which rows a read covers.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// Every project and everything recorded against it.
    All,
    /// These projects and everything recorded against them.
    Projects(Vec<i64>),
    /// Only the `projects` rows of these teams (their track records).
    TeamProjects(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Projects,
    Tasks,
    Entries,
    Expenses,
    Members,
}

const CHILDREN: [Table; 4] = [
    Table::Tasks,
    Table::Entries,
    Table::Expenses,
    Table::Members,
];

impl Table {
    fn sql(self, d: Dialect) -> String {
        match self {
            Table::Projects => d.projects(),
            Table::Tasks => d.tasks(),
            Table::Entries => d.time_entries(),
            Table::Expenses => d.expenses(),
            Table::Members => d.members(),
        }
    }

    /// The column a project id selection restricts.
    fn project_column(self) -> &'static str {
        match self {
            Table::Projects => "id",
            Table::Tasks | Table::Expenses => "project_id",
            Table::Entries => "t.project_id",
            Table::Members => "pm.project_id",
        }
    }
}

/// The statements one selection runs: (table, SQL template, filter column, ids).
fn plan(d: Dialect, sel: &Selection) -> Vec<(Table, String, String, Option<&[i64]>)> {
    let all = std::iter::once(Table::Projects).chain(CHILDREN);
    match sel {
        Selection::All => all.map(|t| (t, t.sql(d), String::new(), None)).collect(),
        Selection::Projects(ids) => all
            .map(|t| {
                (
                    t,
                    t.sql(d),
                    t.project_column().to_string(),
                    Some(ids.as_slice()),
                )
            })
            .collect(),
        Selection::TeamProjects(ids) => vec![(
            Table::Projects,
            d.projects(),
            d.team_filter_column(),
            Some(ids.as_slice()),
        )],
    }
}

impl BackendDb {
    /// Streams the selection's rows into `sink` and hands it back.
    pub(crate) async fn read_rows<S>(&self, sel: Selection, sink: S) -> Result<S, BackendError>
    where
        S: RowSink + Send + 'static,
    {
        match self {
            BackendDb::Sqlite(pool) => {
                let path = pool.connect_options().get_filename().to_path_buf();
                tokio::task::spawn_blocking(move || read_sqlite(&path, &sel, sink))
                    .await
                    .map_err(|e| BackendError::Unreachable(format!("backend reader failed: {e}")))?
            }
            BackendDb::Postgres(pool) => read_postgres(pool, &sel, sink).await,
        }
    }
}

/// Enough for any backend this service reads; SQLite maps no more than the file.
const SQLITE_MMAP_BYTES: i64 = 1 << 30;

/// The same busy wait as the sqlx pool's connections.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        let transient = match &e {
            rusqlite::Error::SqliteFailure(f, _) => {
                crate::db_error::is_transient_sqlite_code(i64::from(f.extended_code))
            }
            _ => false,
        };
        if transient {
            BackendError::Unreachable(e.to_string())
        } else {
            BackendError::Query(e.to_string())
        }
    }
}

/// Read-only connections kept between reads, with the backend file they
/// were opened on. A fresh connection parses the schema, prepares every
/// statement and starts with an empty page cache, which cost about as much
/// as a 1,000-project job's rows; a kept one starts warm.
static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());
/// Connections kept per process: one per concurrent read is enough.
const IDLE_MAX: usize = 8;
/// Prepared statements kept per connection (five tables, a few chunk sizes).
const STATEMENT_CACHE: usize = 32;

struct Idle {
    path: PathBuf,
    /// Device and inode: a file replaced under the same name (a new demo
    /// backend, a restored copy) is a different database, never read
    /// through a connection opened on the old one.
    file: (u64, u64),
    conn: rusqlite::Connection,
}

fn file_id(path: &Path) -> Result<(u64, u64), BackendError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        BackendError::Unreachable(format!("backend database {}: {e}", path.display()))
    })?;
    Ok((meta.dev(), meta.ino()))
}

fn checkout(path: &Path) -> Result<Idle, BackendError> {
    use rusqlite::OpenFlags;
    let file = file_id(path)?;
    {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| c.path != path || c.file == file);
        if let Some(i) = idle.iter().position(|c| c.path == path) {
            return Ok(idle.swap_remove(i));
        }
    }
    // Read-only like the sqlx pool.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    // Read pages through the mapping instead of a pread and a copy each.
    conn.pragma_update(None, "mmap_size", SQLITE_MMAP_BYTES)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(Idle {
        path: path.to_path_buf(),
        file,
        conn,
    })
}

fn checkin(c: Idle) {
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    if idle.len() < IDLE_MAX {
        idle.push(c);
    }
}

fn read_sqlite<S: RowSink>(path: &Path, sel: &Selection, mut sink: S) -> Result<S, BackendError> {
    let c = checkout(path)?;
    for (table, template, column, ids) in plan(Dialect::Sqlite, sel) {
        match ids {
            None => {
                let sql = template.replace("{filter}", "1 = 1");
                sqlite_rows(&c.conn, &sql, &[], table, &mut sink)?;
            }
            Some(ids) => {
                for chunk in ids.chunks(SQLITE_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = template.replace("{filter}", &format!("{column} IN ({marks})"));
                    sqlite_rows(&c.conn, &sql, chunk, table, &mut sink)?;
                }
            }
        }
    }
    // Kept only after a read that worked: a failed one may have met a
    // database that is going away.
    checkin(c);
    Ok(sink)
}

fn sqlite_rows<S: RowSink>(
    conn: &rusqlite::Connection,
    sql: &str,
    ids: &[i64],
    table: Table,
    sink: &mut S,
) -> Result<(), BackendError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(ids))?;
    while let Some(r) = rows.next()? {
        match table {
            Table::Projects => sink.project(&ProjectRow {
                id: lite_id(r, 0)?,
                team_id: lite_int(r, 1)?,
                status: lite_text(r, 2)?,
                priority: lite_text(r, 3)?,
                complexity: lite_real(r, 4)?,
                process_count: lite_real(r, 5)?,
                bot_count: lite_real(r, 6)?,
                systems_integrated: lite_real(r, 7)?,
                budget: lite_real(r, 8)?,
                start_date: lite_text(r, 9)?,
                planned_end_date: lite_text(r, 10)?,
                actual_end_date: lite_text(r, 11)?,
            }),
            Table::Tasks => sink.task(&TaskRow {
                project_id: lite_id(r, 0)?,
                status: lite_text(r, 1)?,
                estimated_hours: lite_real(r, 2)?,
                created_at: lite_text(r, 3)?,
                started_at: lite_text(r, 4)?,
                completed_at: lite_text(r, 5)?,
            }),
            Table::Entries => sink.entry(&EntryRow {
                project_id: lite_id(r, 0)?,
                hours: lite_real(r, 1)?,
                logged_at: lite_text(r, 2)?,
            }),
            Table::Expenses => sink.expense(&ExpenseRow {
                project_id: lite_id(r, 0)?,
                amount: lite_real(r, 1)?,
                incurred_at: lite_text(r, 2)?,
            }),
            Table::Members => sink.member(&MemberRow {
                project_id: lite_id(r, 0)?,
                allocation: lite_real(r, 1)?,
                experience_years: lite_real(r, 2)?,
                hourly_rate: lite_real(r, 3)?,
            }),
        }
    }
    Ok(())
}

fn decode_error(i: usize, what: &str) -> BackendError {
    BackendError::Query(format!("error decoding column {i}: {what}"))
}

/// A non-NULL id column; NULL fails the query, as sqlx's decoding of a
/// non-optional column did.
fn lite_id(r: &rusqlite::Row<'_>, i: usize) -> Result<i64, BackendError> {
    lite_int(r, i)?.ok_or_else(|| decode_error(i, "unexpected null"))
}

fn lite_int(r: &rusqlite::Row<'_>, i: usize) -> Result<Option<i64>, BackendError> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(v) => Ok(Some(v)),
        _ => Err(decode_error(i, "expected an integer")),
    }
}

fn lite_real(r: &rusqlite::Row<'_>, i: usize) -> Result<Option<f64>, BackendError> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Real(v) => Ok(Some(v)),
        ValueRef::Integer(v) => Ok(Some(v as f64)),
        _ => Err(decode_error(i, "expected a number")),
    }
}

/// Text that is not UTF-8 fails the query, as it did through sqlx.
fn lite_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>, BackendError> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(|e| decode_error(i, &e.to_string())),
        _ => Err(decode_error(i, "expected text")),
    }
}

async fn read_postgres<S: RowSink>(
    pool: &sqlx::PgPool,
    sel: &Selection,
    mut sink: S,
) -> Result<S, BackendError> {
    for (table, template, column, ids) in plan(Dialect::Postgres, sel) {
        let sql = match ids {
            None => template.replace("{filter}", "TRUE"),
            Some([]) => continue,
            Some(_) => template.replace("{filter}", &format!("{column} = ANY($1::bigint[])")),
        };
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(ids) = ids {
            q = q.bind(ids);
        }
        let mut rows = q.fetch(pool);
        while let Some(r) = rows.try_next().await? {
            pg_row(&r, table, &mut sink)?;
        }
    }
    Ok(sink)
}

fn pg_row<S: RowSink>(r: &PgRow, table: Table, sink: &mut S) -> Result<(), sqlx::Error> {
    match table {
        Table::Projects => sink.project(&ProjectRow {
            id: r.try_get(0)?,
            team_id: r.try_get(1)?,
            status: r.try_get(2)?,
            priority: r.try_get(3)?,
            complexity: r.try_get(4)?,
            process_count: r.try_get(5)?,
            bot_count: r.try_get(6)?,
            systems_integrated: r.try_get(7)?,
            budget: r.try_get(8)?,
            start_date: r.try_get(9)?,
            planned_end_date: r.try_get(10)?,
            actual_end_date: r.try_get(11)?,
        }),
        Table::Tasks => sink.task(&TaskRow {
            project_id: r.try_get(0)?,
            status: r.try_get(1)?,
            estimated_hours: r.try_get(2)?,
            created_at: r.try_get(3)?,
            started_at: r.try_get(4)?,
            completed_at: r.try_get(5)?,
        }),
        Table::Entries => sink.entry(&EntryRow {
            project_id: r.try_get(0)?,
            hours: r.try_get(1)?,
            logged_at: r.try_get(2)?,
        }),
        Table::Expenses => sink.expense(&ExpenseRow {
            project_id: r.try_get(0)?,
            amount: r.try_get(1)?,
            incurred_at: r.try_get(2)?,
        }),
        Table::Members => sink.member(&MemberRow {
            project_id: r.try_get(0)?,
            allocation: r.try_get(1)?,
            experience_years: r.try_get(2)?,
            hourly_rate: r.try_get(3)?,
        }),
    }
    Ok(())
}
