//! The scheduler role: enqueues recurring jobs from cron expressions. It only
//! enqueues; workers do the work.
//!
//! Today it enqueues the weekly retrain (`RETRAIN_CRON`). A retrain that is
//! already queued or running absorbs a second one (the jobs table's active
//! dedup key), so extra replicas cannot stack retrains. Drift and
//! maintenance ticks are logged until their jobs exist.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::config::Config;
use rpa_ml_shared::jobs::{JobPayload, RetrainJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::Store;
use rpa_ml_shared::submit::submit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    Retrain,
    Drift,
    Maintenance,
}

impl Tick {
    fn name(self) -> &'static str {
        match self {
            Tick::Retrain => "retrain",
            Tick::Drift => "drift",
            Tick::Maintenance => "maintenance",
        }
    }
}

pub async fn run(
    config: Arc<Config>,
    store: Store,
    queue: Queue,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let schedules = [
        (Tick::Retrain, parse("RETRAIN_CRON", &config.retrain_cron)?),
        (Tick::Drift, parse("DRIFT_CRON", &config.drift_cron)?),
        (
            Tick::Maintenance,
            parse("MAINTENANCE_CRON", &config.maintenance_cron)?,
        ),
    ];
    for (tick, s) in &schedules {
        if let Some(next) = s.upcoming(Utc).next() {
            tracing::info!(schedule = tick.name(), next = %next, "scheduled");
        }
    }
    loop {
        let now = Utc::now();
        let Some((tick, at)) = schedules
            .iter()
            .filter_map(|(t, s)| s.after(&now).next().map(|at| (*t, at)))
            .min_by_key(|(_, at)| *at)
        else {
            tracing::warn!("no upcoming ticks; scheduler idle");
            shutdown.cancelled().await;
            return Ok(());
        };
        let wait = (at - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        fire(&config, &store, &queue, tick, at).await;
    }
}

async fn fire(config: &Config, store: &Store, queue: &Queue, tick: Tick, at: DateTime<Utc>) {
    match tick {
        Tick::Retrain => {
            let payload = JobPayload::Retrain(RetrainJob {
                targets: Target::ALL.into_iter().collect(),
                reason: format!("scheduler {at}"),
            });
            match submit(store, queue, payload, config.job_max_attempts as i32, None).await {
                Ok(s) if s.created => {
                    tracing::info!(job.id = %s.job.id, tick = %at, "scheduled retrain enqueued")
                }
                Ok(s) => {
                    tracing::info!(job.id = %s.job.id, tick = %at, "retrain already active; not enqueued again")
                }
                Err(e) => {
                    tracing::error!(error = %e, tick = %at, "could not enqueue the scheduled retrain")
                }
            }
        }
        other => tracing::info!(
            schedule = other.name(),
            tick = %at,
            "tick (no job of this kind yet)"
        ),
    }
}

fn parse(var: &str, expr: &str) -> anyhow::Result<Schedule> {
    Schedule::from_str(expr)
        .map_err(|e| anyhow::anyhow!("{var}: invalid cron expression {expr:?}: {e}"))
}
