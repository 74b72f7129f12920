//! Process-level plumbing: one supervised apalis worker per served queue,
//! the roster heartbeat, the reconciler, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::jobs::{JobMessage, QueueName};
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::WorkerRow;

use crate::kernel::handle_message;
use crate::state::WorkerState;
use crate::{callbacks, queue_retention, reconcile};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The queues asked for; `predict` stands for every prediction lane
    /// ([`QueueName::served_with`]).
    pub queues: Vec<QueueName>,
    /// Concurrent jobs per prediction lane (see [`slots`]). Training runs
    /// one job at a time per process; maintenance too.
    pub concurrency: usize,
    /// Run the reconciler and the queue retention sweep in this process.
    pub reconcile: bool,
}

/// Runs until `shutdown` is cancelled, then stops fetching, lets in-flight
/// jobs finish, and leaves the roster.
pub async fn run(
    state: Arc<WorkerState>,
    opts: WorkerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut queues: Vec<QueueName> = Vec::new();
    for q in opts.queues.iter().flat_map(|q| q.served_with()) {
        if !queues.contains(q) {
            queues.push(*q);
        }
    }
    let roster = WorkerRow {
        name: state.name.clone(),
        host: rpa_ml_shared::telemetry::hostname(),
        pid: std::process::id() as i32,
        // As asked: `predict` stands for its three lanes.
        queues: opts
            .queues
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(","),
        concurrency: opts.concurrency as i32,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: Utc::now(),
        last_seen: Utc::now(),
        stopped_at: None,
    };
    state.store.heartbeat_worker(&roster).await?;
    tracing::info!(worker = %state.name, queues = %roster.queues, concurrency = opts.concurrency, "worker started");

    let mut tasks = tokio::task::JoinSet::new();
    {
        let state = state.clone();
        let shutdown = shutdown.clone();
        let every = state.config.worker_heartbeat;
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = state.store.heartbeat_worker(&roster).await {
                    tracing::warn!(error = %e, "roster heartbeat failed");
                }
            }
        });
    }
    if opts.reconcile {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { reconcile::run_loop(state, shutdown).await });
    }
    {
        // Every worker delivers callbacks; the outbox's leases share them out.
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { callbacks::run_loop(state, shutdown).await });
    }
    if opts.reconcile {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { queue_retention::run_loop(state, shutdown).await });
    }
    for &queue in &queues {
        let concurrency = slots(queue, opts.concurrency);
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { supervise(state, queue, concurrency, shutdown).await });
    }
    while tasks.join_next().await.is_some() {}
    if let Err(e) = state.store.mark_worker_stopped(&state.name).await {
        tracing::warn!(error = %e, "could not mark worker stopped");
    }
    tracing::info!(worker = %state.name, "worker stopped");
    Ok(())
}

/// The slots (concurrent jobs) of each queue, for a `--concurrency` of `c`:
/// the prediction lanes are weighted 2 : 2 : 1. High and normal each have
/// `c` slots of their own, so an interactive prediction never waits behind
/// a backlog in another lane; low has half as many, at least one, so a
/// backlog of batch work never takes more than that and still moves.
pub fn slots(queue: QueueName, c: usize) -> usize {
    let c = c.max(1);
    match queue {
        QueueName::PredictHigh | QueueName::Predict => c,
        QueueName::PredictLow => c.div_ceil(2),
        QueueName::Train | QueueName::Maintenance => 1,
    }
}

/// Keeps one apalis worker alive on `queue`: a Redis error ends an apalis
/// worker, so it is rebuilt under a fresh name after a growing pause.
async fn supervise(
    state: Arc<WorkerState>,
    queue: QueueName,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    let mut generation = 0u32;
    while !shutdown.is_cancelled() {
        generation += 1;
        let name = format!("{}-{}-{}", state.name, queue.as_str(), generation);
        let started = std::time::Instant::now();
        let res = run_one(state.clone(), queue, concurrency, &name, shutdown.clone()).await;
        if shutdown.is_cancelled() {
            break;
        }
        match res {
            Ok(()) => tracing::warn!(apalis.worker = %name, "queue worker ended; restarting"),
            Err(e) => {
                tracing::warn!(apalis.worker = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "queue worker failed; restarting")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn run_one(
    state: Arc<WorkerState>,
    queue: QueueName,
    concurrency: usize,
    name: &str,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let poll = state.config.poll_interval;
    let heartbeat = state.config.worker_heartbeat;
    let signal = async move {
        shutdown.cancelled().await;
        Ok::<(), std::io::Error>(())
    };
    let strategy = Strategy::new()
        .stream(state.queue.wake_stream(queue))
        .interval(poll);
    match &state.queue {
        Queue::Redis(r) => {
            let config = state
                .queue
                .redis_config(queue)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(5)
                .batch_size(concurrency.clamp(1, 50));
            let backend = RedisStorage::<JobMessage>::new(r.conn.clone())
                .with_config(config)
                .poll_with_strategy(strategy);
            WorkerBuilder::new(name)
                .backend(backend)
                .data(state.clone())
                .concurrency(concurrency)
                .build(task)
                .run_until(signal)
                .await
        }
        Queue::Sqlite(s) => {
            let pool = s.pool.clone().ok_or_else(|| {
                WorkerError::IoError(std::io::Error::other("embedded queue has no database"))
            })?;
            let config = state
                .queue
                .sqlite_config(queue)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(5)
                .batch_size(concurrency.clamp(1, 50));
            let backend = SqliteStorage::<JobMessage>::new(&pool)
                .with_config(config)
                .poll_with_strategy(strategy);
            WorkerBuilder::new(name)
                .backend(backend)
                .data(state.clone())
                .concurrency(concurrency)
                .build(task)
                .run_until(signal)
                .await
        }
    }
}

/// Each job runs as its own tokio task, so concurrent jobs use every core
/// and a panic is contained to its job (a panic in the handler itself fails
/// the job in the kernel).
async fn task(msg: JobMessage, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    let state: Arc<WorkerState> = (*state).clone();
    let job_id = msg.job_id.clone();
    match tokio::spawn(handle_message(state, msg)).await {
        Ok(res) => res.map_err(|e| e.into()),
        Err(e) => {
            // Outside the handler: the row, if claimed, is no longer
            // confirmed, and the reconciler takes it back when its lease
            // runs out.
            tracing::error!(job.id = %job_id, error = %e, "job task panicked");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_weighted_two_two_one_and_low_always_has_a_slot() {
        assert_eq!(slots(QueueName::PredictHigh, 4), 4);
        assert_eq!(slots(QueueName::Predict, 4), 4);
        assert_eq!(slots(QueueName::PredictLow, 4), 2);
        assert_eq!(slots(QueueName::PredictLow, 1), 1);
        assert_eq!(slots(QueueName::PredictLow, 5), 3);
        assert_eq!(slots(QueueName::Train, 8), 1);
        let served: Vec<QueueName> = QueueName::Predict.served_with().to_vec();
        assert_eq!(
            served,
            [
                QueueName::PredictHigh,
                QueueName::Predict,
                QueueName::PredictLow
            ]
        );
    }
}
