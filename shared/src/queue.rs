//! The transport: apalis queues on Redis (at scale) or SQLite (embedded).
//!
//! Only job ids travel here; the jobs table is the truth. Every push uses a
//! fresh apalis task id, so a re-push after a lost message is never swallowed
//! by apalis' own "already have this id" check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::channel::mpsc;
use redis::AsyncCommands;
use sqlx::SqlitePool;

use crate::jobs::{JobMessage, QueueName};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unreachable: {0}")]
    Unreachable(String),
    #[error("queue error: {0}")]
    Other(String),
}

/// Settings that shape every queue connection.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Key prefix for Redis queues (`{prefix}:{queue}:...`).
    pub prefix: String,
    pub response_timeout: Duration,
}

#[derive(Clone)]
pub enum Queue {
    Redis(RedisQueue),
    Sqlite(SqliteQueue),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Queue::Redis(r) => write!(f, "Queue::Redis({})", r.prefix),
            Queue::Sqlite(_) => write!(f, "Queue::Sqlite"),
        }
    }
}

#[derive(Clone)]
pub struct RedisQueue {
    pub client: redis::Client,
    pub conn: ConnectionManager,
    pub prefix: String,
}

/// In-process wake-ups for the embedded queue: a push wakes the local
/// workers at once instead of waiting for their next poll.
#[derive(Clone, Default)]
pub struct SqliteQueue {
    pub pool: Option<SqlitePool>,
    wakers: Arc<Mutex<HashMap<QueueName, Vec<mpsc::Sender<()>>>>>,
}

/// Where a message stands on the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Waiting, scheduled, or held by a live worker.
    Present,
    Absent,
}

impl Queue {
    pub async fn connect_redis(url: &str, settings: &QueueSettings) -> Result<Queue, QueueError> {
        let client =
            redis::Client::open(url).map_err(|e| QueueError::Other(format!("REDIS_URL: {e}")))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(cfg)
            .await
            .map_err(|e| QueueError::Unreachable(e.to_string()))?;
        Ok(Queue::Redis(RedisQueue {
            client,
            conn,
            prefix: settings.prefix.clone(),
        }))
    }

    /// The embedded queue: a SQLite file of its own (apalis-sqlite keeps its
    /// own migration history, which would clash with the store's).
    pub async fn connect_sqlite_file(path: &str) -> Result<Queue, QueueError> {
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                QueueError::Other(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|e| QueueError::Unreachable(e.to_string()))?;
        Self::connect_sqlite(pool).await
    }

    pub async fn connect_sqlite(pool: SqlitePool) -> Result<Queue, QueueError> {
        // Processes started together on one new queue file (api and workers
        // of one host) race to apply apalis's migrations: the loser's
        // transaction rolls back (on the version already recorded, or on a
        // column the winner just added), and on a second look there is
        // nothing left to apply. Each migration runs in a transaction, so a
        // retry never finds one half applied.
        let mut tries = 0;
        loop {
            match SqliteStorage::setup(&pool).await {
                Ok(()) => break,
                Err(e) if tries < 5 && e.to_string().contains("migration") => {
                    tries += 1;
                    tracing::debug!(error = %e, "queue migrations raced another process; looking again");
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => return Err(QueueError::Other(format!("apalis-sqlite setup: {e}"))),
            }
        }
        Ok(Queue::Sqlite(SqliteQueue {
            pool: Some(pool),
            wakers: Arc::default(),
        }))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Queue::Redis(_) => "redis",
            Queue::Sqlite(_) => "sqlite",
        }
    }

    /// The apalis queue name for one of ours.
    pub fn apalis_queue_name(&self, queue: QueueName) -> String {
        match self {
            Queue::Redis(r) => format!("{}:{}", r.prefix, queue.as_str()),
            Queue::Sqlite(_) => format!("rpa-ml:{}", queue.as_str()),
        }
    }

    pub fn redis_config(&self, queue: QueueName) -> apalis_redis::Config {
        apalis_redis::Config::default().queue(self.apalis_queue_name(queue))
    }

    pub fn sqlite_config(&self, queue: QueueName) -> apalis_sqlite::Config {
        apalis_sqlite::Config::default().queue(self.apalis_queue_name(queue))
    }

    /// Pushes a message, to run at `run_at` (now if in the past). Returns
    /// the apalis task id it was pushed under.
    pub async fn push(
        &self,
        queue: QueueName,
        msg: &JobMessage,
        run_at: Option<DateTime<Utc>>,
    ) -> Result<String, QueueError> {
        let task_id = new_task_id();
        self.push_as(queue, msg, run_at, &task_id).await?;
        Ok(task_id)
    }

    /// Pushes under a task id chosen by the caller (so the job row can name
    /// it before the push happens).
    pub async fn push_as(
        &self,
        queue: QueueName,
        msg: &JobMessage,
        run_at: Option<DateTime<Utc>>,
        task_id: &str,
    ) -> Result<(), QueueError> {
        let mut builder = TaskBuilder::new(msg.clone()).task_id(TaskId::from_string(task_id));
        if let Some(at) = run_at
            && at > Utc::now()
        {
            builder = builder.run_at_timestamp(at.timestamp().max(0) as u64);
        }
        self.push_tasks(queue, vec![builder.build()]).await
    }

    /// Pushes several messages to one queue in one apalis call (one Lua
    /// script on Redis), each under its caller-chosen task id.
    pub async fn push_many(
        &self,
        queue: QueueName,
        items: &[(JobMessage, String)],
    ) -> Result<(), QueueError> {
        if items.is_empty() {
            return Ok(());
        }
        let tasks: Vec<_> = items
            .iter()
            .map(|(msg, id)| {
                TaskBuilder::new(msg.clone())
                    .task_id(TaskId::from_string(id))
                    .build()
            })
            .collect();
        self.push_tasks(queue, tasks).await
    }

    async fn push_tasks(
        &self,
        queue: QueueName,
        tasks: Vec<apalis_core::task::Task<JobMessage>>,
    ) -> Result<(), QueueError> {
        match self {
            Queue::Redis(r) => {
                let mut storage: RedisStorage<JobMessage> =
                    RedisStorage::new(r.conn.clone()).with_config(self.redis_config(queue));
                storage
                    .push_all(futures::stream::iter(tasks))
                    .await
                    .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                // apalis-redis files every new task under "scheduled" and
                // publishes nothing for those, so wake the workers ourselves.
                let mut conn = r.conn.clone();
                let _: Result<i64, _> = conn.publish(self.wake_channel(queue), 1).await;
            }
            Queue::Sqlite(s) => {
                let mut storage: SqliteStorage<JobMessage> =
                    SqliteStorage::new(s.pool()?).with_config(self.sqlite_config(queue));
                storage
                    .push_all(futures::stream::iter(tasks))
                    .await
                    .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                s.wake(queue);
            }
        }
        Ok(())
    }

    fn wake_channel(&self, queue: QueueName) -> String {
        format!("{}:wake", self.apalis_queue_name(queue))
    }

    /// Whether the message pushed under `task_id` is still somewhere a worker
    /// will find it.
    pub async fn presence(&self, queue: QueueName, task_id: &str) -> Result<Presence, QueueError> {
        let name = self.apalis_queue_name(queue);
        match self {
            Queue::Redis(r) => {
                let mut conn = r.conn.clone();
                let workers = queue_workers(&mut conn, &name).await?;
                let mut pipe = redis::pipe();
                pipe.zscore(format!("{name}:scheduled"), task_id);
                pipe.cmd("LPOS").arg(format!("{name}:active")).arg(task_id);
                for w in &workers {
                    pipe.sismember(format!("{name}:inflight:{w}"), task_id);
                }
                let (scheduled, active, inflight): (Option<f64>, Option<i64>, Vec<bool>) = {
                    let raw: Vec<redis::Value> =
                        pipe.query_async(&mut conn).await.map_err(redis_err)?;
                    let mut it = raw.into_iter();
                    let s: Option<f64> = it
                        .next()
                        .map(|v| redis::from_redis_value(v).unwrap_or(None))
                        .unwrap_or(None);
                    let a: Option<i64> = it
                        .next()
                        .map(|v| redis::from_redis_value(v).unwrap_or(None))
                        .unwrap_or(None);
                    let i: Vec<bool> = it
                        .map(|v| redis::from_redis_value(v).unwrap_or(false))
                        .collect();
                    (s, a, i)
                };
                if scheduled.is_some() || active.is_some() || inflight.iter().any(|b| *b) {
                    Ok(Presence::Present)
                } else {
                    Ok(Presence::Absent)
                }
            }
            Queue::Sqlite(s) => {
                let pool = s.pool()?;
                let status: Option<(String,)> =
                    sqlx::query_as("SELECT status FROM Jobs WHERE id = $1")
                        .bind(task_id)
                        .fetch_optional(pool)
                        .await
                        .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                Ok(match status.as_ref().map(|s| s.0.as_str()) {
                    Some("Pending" | "Queued" | "Running") => Presence::Present,
                    _ => Presence::Absent,
                })
            }
        }
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Queue::Redis(r) => {
                let mut conn = r.conn.clone();
                let _: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(())
            }
            Queue::Sqlite(s) => {
                let pool = s.pool()?;
                sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// A stream that yields whenever new work may be on `queue`: Redis
    /// pub/sub (our own notice, published after each push) or the
    /// in-process wake list. The
    /// worker still polls on an interval, so a lost wake-up costs latency,
    /// never a job.
    pub fn wake_stream(&self, queue: QueueName) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        match self {
            Queue::Redis(r) => {
                let channel = self.wake_channel(queue);
                let client = r.client.clone();
                tokio::spawn(redis_wake_loop(client, channel, tx));
            }
            Queue::Sqlite(s) => {
                if let Ok(mut w) = s.wakers.lock() {
                    w.entry(queue).or_default().push(tx);
                }
            }
        }
        rx
    }
}

impl SqliteQueue {
    fn pool(&self) -> Result<&SqlitePool, QueueError> {
        self.pool
            .as_ref()
            .ok_or_else(|| QueueError::Other("embedded queue has no database".into()))
    }

    fn wake(&self, queue: QueueName) {
        if let Ok(mut w) = self.wakers.lock()
            && let Some(senders) = w.get_mut(&queue)
        {
            senders.retain(|s| !s.is_closed());
            for s in senders.iter_mut() {
                // A full channel already holds a wake-up; that is enough.
                let _ = s.try_send(());
            }
        }
    }
}

async fn redis_wake_loop(client: redis::Client, channel: String, mut tx: mpsc::Sender<()>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if tx.is_closed() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    backoff = Duration::from_millis(200);
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        if tx.is_closed() {
                            return;
                        }
                        let _ = tx.try_send(());
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "queue wake-up subscription failed; polling only")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

pub fn new_task_id() -> String {
    ulid::Ulid::new().to_string()
}

pub(crate) fn redis_err(e: redis::RedisError) -> QueueError {
    QueueError::Unreachable(e.to_string())
}

/// The apalis workers registered on a Redis queue (each keeps its in-flight
/// messages in `{queue}:inflight:{worker}`).
pub(crate) async fn queue_workers(
    conn: &mut redis::aio::ConnectionManager,
    name: &str,
) -> Result<Vec<String>, QueueError> {
    conn.zrange(format!("{name}:workers"), 0, -1)
        .await
        .map_err(redis_err)
}
