//! The reconciler makes the jobs table and the queue agree again:
//! - a `running` job whose lease ran out (its worker crashed, was killed,
//!   lost its host, or no longer runs it) goes back to `queued`, or to
//!   `dead` once its attempts are spent; a job whose lease is live stays;
//! - a `queued` job whose message is nowhere on the queue (a push that
//!   failed after the row was written, a Redis that lost its data) is
//!   pushed again.
//!
//! Both steps are safe to run from many processes at once: the row update
//! is conditional (same attempt, lease still over), and a duplicate message
//! is dropped at claim time.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::Instant;
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
    // Leases are judged only by rounds that start a full lease after this
    // process last found the store unreachable (None: the last round
    // failed). A lease that ran out while the store was away belongs to a
    // worker that may still run the job and renews it as soon as it reaches
    // the store again; it gets that chance before anyone takes the job.
    let mut judge_from = Some(Instant::now());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let leases = match judge_from {
            Some(t) if Instant::now() >= t => Leases::Judge,
            _ => Leases::Wait,
        };
        match reconcile(&state, leases).await {
            Ok(r) => {
                if judge_from.is_none() {
                    judge_from = Some(Instant::now() + state.config.job_lease);
                }
                if r.requeued_orphans + r.dead_orphans + r.repushed > 0 {
                    tracing::info!(
                        requeued = r.requeued_orphans,
                        dead = r.dead_orphans,
                        repushed = r.repushed,
                        "reconciled jobs"
                    );
                }
            }
            Err(e) => {
                judge_from = None;
                tracing::warn!(error = %e, "reconciliation failed; will try again");
            }
        }
    }
}

/// Whether this round takes back running jobs whose lease ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leases {
    Judge,
    /// The store was away from here less than a lease length ago.
    Wait,
}

pub async fn reconcile_once(state: &WorkerState) -> anyhow::Result<ReconcileReport> {
    reconcile(state, Leases::Judge).await
}

async fn reconcile(state: &WorkerState, leases: Leases) -> anyhow::Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let dead_before = Utc::now()
        - chrono::Duration::from_std(state.config.worker_dead_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(10));
    let recovered = match leases {
        Leases::Judge => state.store.recover_orphans(dead_before).await?,
        Leases::Wait => Vec::new(),
    };
    for r in recovered {
        match r.state {
            JobState::Dead => {
                report.dead_orphans += 1;
                tracing::warn!(job.id = %r.id, worker = r.worker.as_deref().unwrap_or(""), "job's lease ran out too often; dead");
            }
            _ => {
                report.requeued_orphans += 1;
                tracing::warn!(job.id = %r.id, worker = r.worker.as_deref().unwrap_or(""), "job's lease ran out; requeued");
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
        // The list was read before the queue was asked, one job at a time:
        // under a backlog a job may have been claimed or finished meanwhile
        // (its message consumed, hence missing). Only a row still queued
        // for the same run is pushed again (a retry has its own run_at and
        // its own push).
        let now = state.store.get_job(&job.id).await?;
        if !now.is_some_and(|n| n.state == JobState::Queued && n.run_at == job.run_at) {
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
