//! The worker roster: each worker process's heartbeat, read by the
//! reconciler (whose jobs lost their worker) and the ops API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};

/// A worker process's entry in the roster.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub queues: String,
    pub concurrency: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn heartbeat_worker(&self, w: &WorkerRow) -> Result<(), StoreError> {
        exec!(
            self,
            "INSERT INTO workers (name, host, pid, queues, concurrency, version, started_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
            &w.name,
            &w.host,
            w.pid,
            &w.queues,
            w.concurrency,
            &w.version,
            w.started_at,
            Utc::now(),
        )?;
        Ok(())
    }

    pub async fn mark_worker_stopped(&self, name: &str) -> Result<(), StoreError> {
        exec!(
            self,
            "UPDATE workers SET stopped_at = $2, last_seen = $2 WHERE name = $1",
            name,
            Utc::now(),
        )?;
        Ok(())
    }

    /// The worker roster, most recently seen first.
    pub async fn list_workers(&self, limit: i64) -> Result<Vec<WorkerRow>, StoreError> {
        fetch!(
            self,
            fetch_all,
            "SELECT name, host, pid, queues, concurrency, version, started_at, last_seen, stopped_at \
             FROM workers ORDER BY last_seen DESC LIMIT $1",
            limit,
        )
    }
}
