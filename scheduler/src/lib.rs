//! The scheduler role: enqueues recurring jobs from cron expressions. It only
//! enqueues; workers do the work.
//!
//! - `RETRAIN_CRON` → a `retrain` of every target (queue `train`);
//! - `DRIFT_CRON` → a `drift` check (queue `maintenance`);
//! - `MAINTENANCE_CRON` → a `maintenance` pass (queue `maintenance`);
//! - `SCORE_CRON` → a `score` run of every open project (queue
//!   `predict_low`: batch scoring is low priority).
//!
//! Which kinds run on a schedule, and what a tick enqueues, is the table in
//! [`scheduled`].
//!
//! Any number of replicas may run. Each tick is claimed in the ML store's
//! `schedule_ticks` table, whose primary key (schedule, tick time) is the
//! idempotency key: exactly one replica wins the insert and enqueues. The
//! keys are deleted by the maintenance job after `SCHEDULE_TICK_TTL_DAYS`.
//! (apalis-cron is not used: every replica would enqueue every tick.)
//!
//! A scheduler that starts where an earlier one left history enqueues the
//! newest tick it missed, once, if that tick is younger than
//! `SCHEDULER_CATCHUP_MAX_AGE_SECS`. A first start enqueues nothing early.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::config::Config;
use rpa_ml_shared::jobs::{DriftJob, JobKind, JobPayload, MaintenanceJob, RetrainJob, ScoreJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::Store;
use rpa_ml_shared::submit::submit;
use rpa_ml_shared::telemetry::hostname;

/// A tick whose enqueue failed (store or queue down) is tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// A claimed tick with no job after this long was abandoned by its claimer.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// The job a tick enqueues, per kind the scheduler runs: its variable, its
/// cron expression and its payload. `None`: the kind runs only on request.
fn scheduled(
    kind: JobKind,
    config: &Config,
    reason: String,
) -> Option<(&'static str, &str, JobPayload)> {
    match kind {
        JobKind::Predict => None,
        JobKind::Score => Some((
            "SCORE_CRON",
            &config.score_cron,
            JobPayload::Score(ScoreJob { reason }),
        )),
        JobKind::Retrain => Some((
            "RETRAIN_CRON",
            &config.retrain_cron,
            JobPayload::Retrain(RetrainJob {
                targets: Target::ALL.into_iter().collect(),
                reason,
                promote_first: false,
            }),
        )),
        JobKind::Drift => Some((
            "DRIFT_CRON",
            &config.drift_cron,
            JobPayload::Drift(DriftJob { reason }),
        )),
        JobKind::Maintenance => Some((
            "MAINTENANCE_CRON",
            &config.maintenance_cron,
            JobPayload::Maintenance(MaintenanceJob { reason }),
        )),
    }
}

fn tick_reason(at: DateTime<Utc>) -> String {
    format!("scheduler {}", at.to_rfc3339())
}

struct Entry {
    kind: JobKind,
    schedule: Schedule,
}

/// Parses every kind's schedule; an invalid one is named by its variable.
fn schedules(config: &Config) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for kind in JobKind::ALL {
        if let Some((var, expr, _)) = scheduled(kind, config, String::new()) {
            out.push(Entry {
                kind,
                schedule: parse(var, expr)?,
            });
        }
    }
    Ok(out)
}

pub async fn run(
    config: Arc<Config>,
    store: Store,
    queue: Queue,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let entries = schedules(&config)?;
    let me = format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let max_age = chrono::Duration::from_std(config.scheduler_catchup_max_age)
        .unwrap_or_else(|_| chrono::Duration::hours(6));
    let ctx = Ctx {
        config: &config,
        store: &store,
        queue: &queue,
        me: &me,
    };

    // Ticks that could not be enqueued yet: tried again until they are
    // older than the catch-up window.
    let mut pending: Vec<(JobKind, DateTime<Utc>)> = Vec::new();
    let start = Utc::now();
    for e in &entries {
        if let Some(next) = e.schedule.after(&start).next() {
            tracing::info!(schedule = e.kind.as_str(), next = %next, scheduler = %me, "scheduled");
        }
        match store.last_tick(e.kind.as_str()).await {
            Ok(last) => {
                if let Some(at) = missed_tick(&e.schedule, last, start, max_age) {
                    tracing::info!(schedule = e.kind.as_str(), tick = %at, "catching up a tick missed while no scheduler ran");
                    pending.push((e.kind, at));
                }
            }
            Err(err) => tracing::warn!(schedule = e.kind.as_str(), error = %err,
                "could not read the last tick; no catch-up this start"),
        }
    }

    // Every tick after `cursor` is handled in order, so a slow enqueue
    // never skips the one after it.
    let mut cursor = start;
    loop {
        let now = Utc::now();
        ctx.adopt_abandoned(&entries, now, max_age, &mut pending)
            .await;
        let mut still = Vec::new();
        for (kind, at) in pending.drain(..) {
            if now - at > max_age {
                tracing::error!(schedule = kind.as_str(), tick = %at,
                    "tick could not be enqueued within SCHEDULER_CATCHUP_MAX_AGE_SECS; dropped");
            } else if !ctx.fire(kind, at).await {
                still.push((kind, at));
            }
        }
        pending = still;

        let Some(at) = entries
            .iter()
            .filter_map(|e| e.schedule.after(&cursor).next())
            .min()
        else {
            if pending.is_empty() {
                tracing::warn!("no upcoming ticks; scheduler idle");
                shutdown.cancelled().await;
                return Ok(());
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RETRY_EVERY) => continue,
            }
        };
        // Wake at least once a minute to look for abandoned claims.
        let mut wait = (at - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(60));
        if !pending.is_empty() {
            wait = wait.min(RETRY_EVERY);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        if Utc::now() < at {
            continue; // woke early: retry pending ticks, look for abandoned ones
        }
        // Every schedule due at this instant fires (two may coincide).
        for e in &entries {
            if e.schedule.after(&cursor).next() == Some(at) && !ctx.fire(e.kind, at).await {
                pending.push((e.kind, at));
            }
        }
        cursor = at;
    }
}

struct Ctx<'a> {
    config: &'a Config,
    store: &'a Store,
    queue: &'a Queue,
    me: &'a str,
}

impl Ctx<'_> {
    /// Takes over ticks another scheduler claimed but never enqueued (it
    /// died in between): their claim is released and they join `pending`.
    /// A claim younger than [`ABANDONED_AFTER`] may still be in progress.
    async fn adopt_abandoned(
        &self,
        entries: &[Entry],
        now: DateTime<Utc>,
        max_age: chrono::Duration,
        pending: &mut Vec<(JobKind, DateTime<Utc>)>,
    ) {
        let claimed_before = now - ABANDONED_AFTER;
        let ticks = match self
            .store
            .abandoned_ticks(claimed_before, now - max_age)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "could not look for abandoned ticks");
                return;
            }
        };
        for (name, at) in ticks {
            let Some(kind) = entries.iter().map(|e| e.kind).find(|k| k.as_str() == name) else {
                continue;
            };
            if pending.contains(&(kind, at)) {
                continue;
            }
            tracing::warn!(schedule = name, tick = %at, "a scheduler claimed this tick but never enqueued it; taking it over");
            if self.store.release_tick(&name, at).await.is_ok() {
                pending.push((kind, at));
            }
        }
    }

    /// Claims and enqueues one tick. True when the tick is settled (this
    /// replica enqueued it, or another had already claimed it); false when
    /// it should be tried again.
    async fn fire(&self, kind: JobKind, at: DateTime<Utc>) -> bool {
        let name = kind.as_str();
        match self.store.claim_tick(name, at, self.me).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(schedule = name, tick = %at, "tick already claimed by another scheduler");
                return true;
            }
            Err(e) => {
                tracing::warn!(schedule = name, tick = %at, error = %e, "could not claim tick; will retry");
                return false;
            }
        }
        let Some((_, _, payload)) = scheduled(kind, self.config, tick_reason(at)) else {
            return true;
        };
        let max_attempts = self.config.job_max_attempts as i32;
        match submit(self.store, self.queue, payload, max_attempts, None).await {
            Ok(s) => {
                if s.created {
                    tracing::info!(schedule = name, tick = %at, job.id = %s.job.id, "scheduled job enqueued");
                } else {
                    tracing::info!(schedule = name, tick = %at, job.id = %s.job.id,
                        "an identical job is still active; this tick points at it");
                }
                if let Err(e) = self.store.set_tick_job(name, at, &s.job.id).await {
                    tracing::warn!(schedule = name, tick = %at, error = %e, "could not record the tick's job");
                }
                true
            }
            Err(e) => {
                tracing::warn!(schedule = name, tick = %at, error = %e, "could not enqueue tick; will retry");
                if let Err(e) = self.store.release_tick(name, at).await {
                    tracing::warn!(schedule = name, tick = %at, error = %e, "could not release the tick");
                }
                false
            }
        }
    }
}

/// The newest tick at or before `now` that no scheduler claimed, if one
/// ran before (`last` is the newest claimed tick) and it is younger than
/// `max_age`. Only one tick is returned however many were missed: a
/// retrain or a drift check twice in a row says nothing more.
fn missed_tick(
    schedule: &Schedule,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Option<DateTime<Utc>> {
    let last = last?;
    let newest = schedule.after(&last).take_while(|t| *t <= now).last()?;
    (now - newest <= max_age).then_some(newest)
}

fn parse(var: &str, expr: &str) -> anyhow::Result<Schedule> {
    Schedule::from_str(expr)
        .map_err(|e| anyhow::anyhow!("{var}: invalid cron expression {expr:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn first_start_catches_nothing_up() {
        let hourly = parse("X", "0 0 * * * *").expect("cron");
        assert_eq!(
            missed_tick(&hourly, None, at(10, 30), chrono::Duration::hours(6)),
            None
        );
    }

    #[test]
    fn only_the_newest_missed_tick_is_caught_up() {
        let hourly = parse("X", "0 0 * * * *").expect("cron");
        // Last claimed 07:00; down until 10:30: 08, 09 and 10 were missed.
        assert_eq!(
            missed_tick(
                &hourly,
                Some(at(7, 0)),
                at(10, 30),
                chrono::Duration::hours(6)
            ),
            Some(at(10, 0))
        );
    }

    #[test]
    fn nothing_is_missed_when_the_last_tick_is_current() {
        let hourly = parse("X", "0 0 * * * *").expect("cron");
        assert_eq!(
            missed_tick(
                &hourly,
                Some(at(10, 0)),
                at(10, 30),
                chrono::Duration::hours(6)
            ),
            None
        );
    }

    #[test]
    fn a_missed_tick_older_than_the_window_is_not_caught_up() {
        let daily = parse("X", "0 0 2 * * *").expect("cron");
        // Last claimed two days ago at 02:00; now 10:30: today's 02:00 is
        // 8.5 h old, beyond a 6 h window.
        let last = Utc
            .with_ymd_and_hms(2026, 11, 24, 2, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            missed_tick(&daily, Some(last), at(10, 30), chrono::Duration::hours(6)),
            None
        );
        assert_eq!(
            missed_tick(&daily, Some(last), at(10, 30), chrono::Duration::hours(12)),
            Some(at(2, 0))
        );
    }

    #[test]
    fn invalid_expressions_name_their_variable() {
        let err = parse("DRIFT_CRON", "every day")
            .expect_err("invalid")
            .to_string();
        assert!(
            err.starts_with("DRIFT_CRON: invalid cron expression"),
            "{err}"
        );
    }
}
