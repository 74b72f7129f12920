//! The ML store: jobs, predictions, the model registry and the worker roster.
//!
//! One type over two databases. Every query is written once in the dialect
//! both SQLite and PostgreSQL accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, partial indexes) and run against whichever pool is open,
//! most of them through `exec!` and `fetch!`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection trouble, or a database busy for now (see
    /// `db_error::is_transient`).
    #[error("ML store unreachable: {0}")]
    Unreachable(String),
    #[error("ML store query failed: {0}")]
    Query(String),
    #[error("ML store migration failed: {0}")]
    Migrate(String),
    #[error("ML store row is malformed: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Trouble that may pass on its own.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db_error::is_transient(&e) {
            StoreError::Unreachable(e.to_string())
        } else {
            StoreError::Query(e.to_string())
        }
    }
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression against whichever pool this store holds.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

/// Runs one statement with its binds (`$1`, `$2`, … in order) on whichever
/// pool is open: `Result<u64, StoreError>`, the rows it touched.
macro_rules! exec {
    ($store:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        on_pool!($store, p => sqlx::query($sql)
            $(.bind($bind))*
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(StoreError::from))
    };
}

/// Runs one query with its binds and decodes the rows with `$how`
/// (`fetch_one`, `fetch_optional` or `fetch_all`) into the type the caller
/// names.
macro_rules! fetch {
    ($store:expr, $how:ident, $sql:expr $(, $bind:expr)* $(,)?) => {
        on_pool!($store, p => sqlx::query_as($sql)
            $(.bind($bind))*
            .$how(p)
            .await
            .map_err(StoreError::from))
    };
}

mod artifacts;
mod callbacks;
mod drift;
mod forecasts;
mod idempotency;
mod jobs;
mod lease;
mod maintenance;
mod models;
mod ops;
mod reconcile;
mod text;
mod workers;

pub use callbacks::{AttemptOutcome, CallbackCounts, CallbackRow, CallbackState};
pub use drift::{DriftReportRow, PredictionCount, StoredPrediction};
pub use forecasts::{ForecastSummary, LatestPrediction};
pub use idempotency::{IdempotencyKey, KeyedJob};
pub use jobs::{Claim, InsertOutcome, JobOutcome, JobRow, NewJob, PredictionRow};
pub use lease::{Checkpoint, Holder};
pub use maintenance::{Purged, RetentionCutoffs};
pub use models::{ModelDocument, ModelRow, ModelStage, NewModel};
pub use ops::{CancelOutcome, JobFilter, OpsJob, QueueCounts, RetryOutcome};
pub use reconcile::{Recovered, StaleJob};
pub use workers::WorkerRow;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A stored name (state, kind, queue, target, stage) read back into its type.
fn parse<T: FromStr<Err = String>>(s: &str) -> Result<T, StoreError> {
    T::from_str(s).map_err(StoreError::Corrupt)
}

impl Store {
    /// Opens the store named by `url` (`sqlite:`/path or `postgres://`),
    /// creating a SQLite file and its folder if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            let path = sqlite_path(url);
            if let Some(parent) = Path::new(&path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unreachable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match self {
            Store::Sqlite(p) => Some(p),
            Store::Postgres(_) => None,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            // PostgreSQL migrations hold an advisory lock, so processes
            // starting together take turns.
            Store::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
            // SQLite has no such lock: two processes starting on one file
            // (api and worker of the embedded setup) can both try the same
            // migration, and the later one fails on what the earlier one
            // just did. Running again then finds it recorded and goes on.
            Store::Sqlite(p) => {
                let mut attempt = 0;
                loop {
                    match SQLITE_MIGRATIONS.run(p).await {
                        Err(e) if attempt < 10 => {
                            attempt += 1;
                            tracing::debug!(error = %e, attempt, "SQLite migration raced another process; again");
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                        }
                        other => break other,
                    }
                }
            }
        }
        .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        exec!(self, "SELECT 1")?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// The file path inside a `sqlite:` URL (or a bare path).
pub fn sqlite_path(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest).to_string()
}
