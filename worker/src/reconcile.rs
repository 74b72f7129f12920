//! The reconciler makes the jobs table and the queue agree again:
//! - a `running` job whose worker left the roster (crash, kill -9, lost
//!   host) goes back to `queued`, or to `dead` once its attempts are spent;
//! - a `queued` job whose message is nowhere on the queue (a push that
//!   failed after the row was written, a Redis that lost its data) is
//!   pushed again.
//!
//! Both steps are safe to run from many processes at once: the row update
//! is conditional, and a duplicate message is dropped at claim time.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::jobs::{JobMessage, JobState};
use rpa_ml_shared::queue::Presence;

use crate::state::WorkerState;

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReconcileReport {
    pub requeued_orphans: usize,
    pub dead_orphans: usize,
    pub repushed: usize,
}

pub async fn run_loop(state: Arc<WorkerState>, shutdown: CancellationToken) {
    let every = state.config.reconcile_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        match reconcile_once(&state).await {
            Ok(r) if r.requeued_orphans + r.dead_orphans + r.repushed > 0 => {
                tracing::info!(
                    requeued = r.requeued_orphans,
                    dead = r.dead_orphans,
                    repushed = r.repushed,
                    "reconciled jobs"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciliation failed; will try again"),
        }
    }
}

pub async fn reconcile_once(state: &WorkerState) -> anyhow::Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let dead_before = Utc::now()
        - chrono::Duration::from_std(state.config.worker_dead_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(10));
    for r in state.store.recover_orphans(dead_before).await? {
        match r.state {
            JobState::Dead => {
                report.dead_orphans += 1;
                tracing::warn!(job.id = %r.id, worker = r.worker.as_deref().unwrap_or(""), "job killed its worker too often; dead");
            }
            _ => {
                report.requeued_orphans += 1;
                let msg = JobMessage {
                    job_id: r.id.clone(),
                    kind: r.kind,
                    request_id: None,
                };
                match state.queue.push(r.queue, &msg, None).await {
                    Ok(task_id) => state.store.mark_pushed(&r.id, &task_id).await?,
                    Err(e) => state.store.mark_push_failed(&r.id, &e.to_string()).await?,
                }
            }
        }
    }
    let before = Utc::now()
        - chrono::Duration::from_std(state.config.requeue_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
    for job in state.store.stale_queued_jobs(before, 1000).await? {
        let present = match &job.queue_task_id {
            Some(t) => state.queue.presence(job.queue, t).await? == Presence::Present,
            None => false,
        };
        if present {
            continue;
        }
        let msg = JobMessage {
            job_id: job.id.clone(),
            kind: job.kind,
            request_id: job.request_id.clone(),
        };
        let task_id = state.queue.push(job.queue, &msg, Some(job.run_at)).await?;
        state.store.mark_pushed(&job.id, &task_id).await?;
        report.repushed += 1;
        tracing::info!(job.id = %job.id, "queued job had no message on the queue; pushed again");
    }
    Ok(report)
}
