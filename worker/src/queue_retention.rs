//! The queue sweep: every finished job's message leaves the queue
//! `REDIS_RETENTION_SECS` after the job ended (the jobs table keeps the
//! job), so Redis holds work in progress, not history. Every worker that
//! reconciles runs the loop; one of them takes each period's turn.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::jobs::QueueName;
use rpa_ml_shared::queue::QueueError;
use rpa_ml_shared::queue_retention::QueueTrim;

use crate::state::WorkerState;

/// A quarter of the retention, between 1 s and a minute: a message is gone
/// at most that long after its retention ran out.
pub fn sweep_every(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

pub async fn run_loop(state: Arc<WorkerState>, shutdown: CancellationToken) {
    let every = sweep_every(state.config.redis_retention);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        match state
            .queue
            .take_turn("queue-retention", &state.name, every)
            .await
        {
            Ok(true) => match sweep(&state).await {
                Ok(t) if t.finished + t.gone_workers > 0 => tracing::debug!(
                    finished = t.finished,
                    gone_workers = t.gone_workers,
                    "finished messages removed from the queue"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "queue retention sweep failed; will try again")
                }
            },
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "queue retention sweep skipped"),
        }
    }
}

/// One pass over every queue, whoever else is sweeping.
pub async fn sweep(state: &WorkerState) -> Result<QueueTrim, QueueError> {
    let retention = chrono::Duration::from_std(state.config.redis_retention)
        .unwrap_or_else(|_| chrono::Duration::days(1));
    let cutoff = Utc::now() - retention;
    let mut total = QueueTrim::default();
    for queue in QueueName::ALL {
        total += state.queue.trim_finished(queue, cutoff).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::sweep_every;
    use std::time::Duration;

    #[test]
    fn the_sweep_runs_often_enough_for_the_retention_and_never_busily() {
        let s = Duration::from_secs;
        assert_eq!(sweep_every(s(0)), s(1));
        assert_eq!(sweep_every(s(20)), s(5));
        assert_eq!(sweep_every(s(300)), s(60));
        assert_eq!(sweep_every(s(86_400)), s(60));
    }
}
