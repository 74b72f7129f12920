//! The scheduler against the real stores: replicas enqueue each tick once,
//! a missed tick is caught up once, and the maintenance job it enqueues
//! deletes what has outlived its retention and nothing else.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Mode, TestEnv};

/// Cron expressions that never fire during a test.
const NEVER: &str = "0 0 0 1 1 * 2099";

fn migrate(env: &mut TestEnv) {
    let pid = env.spawn("migrate", &["migrate"], &[]);
    let status = env
        .wait_exit(pid, Duration::from_secs(60))
        .expect("migrate exits");
    assert!(status.success(), "migrate failed\n{}", env.dump_logs());
}

async fn rows(env: &TestEnv, sql: &'static str) -> i64 {
    env.store().await.count(sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scheduler_replicas_enqueue_each_tick_exactly_once() {
    let mut env = TestEnv::new(Mode::Scale).await;
    let crons = [
        ("MAINTENANCE_CRON", "*/2 * * * * *"),
        ("RETRAIN_CRON", NEVER),
        ("DRIFT_CRON", NEVER),
    ];
    migrate(&mut env);
    env.spawn(
        "worker",
        &["worker", "--queues", "maintenance", "--concurrency", "2"],
        &[],
    );
    let schedulers: Vec<u32> = (0..3)
        .map(|i| env.spawn(&format!("scheduler-{i}"), &["scheduler"], &crons))
        .collect();
    tokio::time::sleep(Duration::from_secs(9)).await;
    for pid in schedulers {
        env.term(pid);
    }
    // Let the last maintenance jobs finish.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ticks = rows(
        &env,
        "SELECT COUNT(*) FROM schedule_ticks WHERE schedule = 'maintenance'",
    )
    .await;
    let with_job = rows(
        &env,
        "SELECT COUNT(DISTINCT job_id) FROM schedule_ticks WHERE schedule = 'maintenance'",
    )
    .await;
    let jobs = rows(&env, "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance'").await;
    let done = rows(
        &env,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance' AND state = 'succeeded'",
    )
    .await;
    assert!(
        ticks >= 3,
        "expected at least 3 ticks in 9 s, got {ticks}\n{}",
        env.dump_logs()
    );
    assert_eq!(
        with_job,
        ticks,
        "every tick names its own job\n{}",
        env.dump_logs()
    );
    assert_eq!(
        jobs,
        ticks,
        "one job per tick, not one per replica\n{}",
        env.dump_logs()
    );
    assert_eq!(done, jobs, "maintenance jobs succeed\n{}", env.dump_logs());
    let other = rows(
        &env,
        "SELECT COUNT(*) FROM jobs WHERE kind <> 'maintenance'",
    )
    .await;
    assert_eq!(other, 0, "retrain and drift did not fire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_missed_while_no_scheduler_ran_is_enqueued_once_if_recent() {
    let mut env = TestEnv::new(Mode::Scale).await;
    migrate(&mut env);
    let store = env.store().await.store;
    // A scheduler ran three hours ago (hourly maintenance) and one ran a
    // year-start tick long ago; then every scheduler went away.
    let three_hours_ago = Utc::now() - chrono::Duration::hours(3);
    let hour = chrono::DurationRound::duration_trunc(three_hours_ago, chrono::Duration::hours(1))
        .expect("truncate to the hour");
    assert!(
        store
            .claim_tick("maintenance", hour, "old")
            .await
            .expect("claim")
    );
    let old = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .expect("date")
        .to_utc();
    assert!(store.claim_tick("drift", old, "old").await.expect("claim"));

    let crons = [
        ("MAINTENANCE_CRON", "0 0 * * * *"),
        // Yearly: its newest missed tick is far older than the window.
        ("DRIFT_CRON", "0 0 0 1 1 *"),
        ("RETRAIN_CRON", NEVER),
    ];
    let a = env.spawn("scheduler-a", &["scheduler"], &crons);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A second replica coming back later finds the tick already caught up.
    let b = env.spawn("scheduler-b", &["scheduler"], &crons);
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.term(a);
    env.term(b);

    let jobs = rows(&env, "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance'").await;
    assert_eq!(
        jobs,
        1,
        "the missed hourly tick is enqueued once\n{}",
        env.dump_logs()
    );
    let drift = rows(&env, "SELECT COUNT(*) FROM jobs WHERE kind = 'drift'").await;
    assert_eq!(
        drift, 0,
        "a tick older than the catch-up window is not enqueued"
    );
    let ticks = rows(
        &env,
        "SELECT COUNT(*) FROM schedule_ticks WHERE schedule = 'maintenance' AND job_id IS NOT NULL",
    )
    .await;
    assert_eq!(ticks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cron_expression_stops_start_up_naming_the_variable() {
    let mut env = TestEnv::new(Mode::Embedded).await;
    let pid = env.spawn("scheduler", &["scheduler"], &[("DRIFT_CRON", "every day")]);
    let status = env
        .wait_exit(pid, Duration::from_secs(20))
        .expect("scheduler exits");
    assert!(!status.success());
    let logs = env.dump_logs();
    assert!(logs.contains("DRIFT_CRON"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_deletes_expired_jobs_and_predictions_and_keeps_the_rest() {
    let mut env = TestEnv::new(Mode::Scale).await;
    migrate(&mut env);
    let probe = env.store().await;
    let rpa_ml_shared::store::Store::Postgres(pg) = &probe.store else {
        panic!("scale mode uses PostgreSQL");
    };
    // (id, state, finished days ago); the queued one is old but active.
    let seed = [
        ("old-ok", "succeeded", Some(10)),
        ("new-ok", "succeeded", Some(2)),
        ("old-failed", "failed", Some(20)),
        ("ancient-dead", "dead", Some(40)),
        ("old-queued", "queued", None),
    ];
    for (id, state, days) in seed {
        let finished = days.map(|d| Utc::now() - chrono::Duration::days(d));
        let created = Utc::now() - chrono::Duration::days(45);
        sqlx::query(
            "INSERT INTO jobs (id, kind, queue, payload, state, max_attempts, created_at, updated_at, run_at, finished_at) \
             VALUES ($1, 'predict', 'predict', '{\"kind\":\"predict\",\"targets\":[\"risk\"],\"projects\":{\"ids\":[1]}}'::jsonb, $2, 3, $3, $5, $3, $4)",
        )
        .bind(id)
        .bind(state)
        .bind(created)
        .bind(finished)
        // A finished row was last updated when it finished.
        .bind(finished.unwrap_or(created))
        .execute(pg)
        .await
        .expect("seed job");
    }
    for (job, days) in [("old-ok", 200), ("new-ok", 2)] {
        sqlx::query(
            "INSERT INTO predictions (job_id, project_id, target, value, created_at) VALUES ($1, 1, 'risk', 0.5, $2)",
        )
        .bind(job)
        .bind(Utc::now() - chrono::Duration::days(days))
        .execute(pg)
        .await
        .expect("seed prediction");
    }

    env.spawn(
        "worker",
        &["worker", "--queues", "maintenance", "--concurrency", "1"],
        &[],
    );
    let s = env.spawn(
        "scheduler",
        &["scheduler"],
        &[
            ("MAINTENANCE_CRON", "*/2 * * * * *"),
            ("RETRAIN_CRON", NEVER),
            ("DRIFT_CRON", NEVER),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = rows(
            &env,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance' AND state = 'succeeded'",
        )
        .await;
        if done > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no maintenance job succeeded\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    env.term(s);

    let left: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM jobs WHERE kind = 'predict' ORDER BY id")
            .fetch_all(pg)
            .await
            .expect("query");
    let left: Vec<&str> = left.iter().map(|r| r.0.as_str()).collect();
    // Succeeded after 7 days and failed/dead after 30 go; a failed job of
    // 20 days, a recent result and an active job stay.
    assert_eq!(left, ["new-ok", "old-failed", "old-queued"]);
    let preds: Vec<(String,)> = sqlx::query_as("SELECT job_id FROM predictions")
        .fetch_all(pg)
        .await
        .expect("query");
    assert_eq!(
        preds,
        [("new-ok".to_string(),)],
        "predictions past 180 days go"
    );
    let (result,): (serde_json::Value,) = sqlx::query_as(
        "SELECT result FROM jobs WHERE kind = 'maintenance' AND state = 'succeeded' LIMIT 1",
    )
    .fetch_one(pg)
    .await
    .expect("query");
    assert_eq!(result["retention"]["removed"]["jobs"], 1, "{result}");
    assert_eq!(result["retention"]["removed"]["failed_jobs"], 1, "{result}");
    assert_eq!(result["retention"]["removed"]["predictions"], 1, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_claimed_by_a_scheduler_that_died_before_enqueueing_is_taken_over() {
    let mut env = TestEnv::new(Mode::Scale).await;
    migrate(&mut env);
    let probe = env.store().await;
    let rpa_ml_shared::store::Store::Postgres(pg) = &probe.store else {
        panic!("scale mode uses PostgreSQL");
    };
    // The newest hourly tick was claimed two minutes ago by a scheduler
    // that died before enqueueing its job.
    let hour = chrono::DurationRound::duration_trunc(Utc::now(), chrono::Duration::hours(1))
        .expect("truncate to the hour");
    assert!(
        probe
            .store
            .claim_tick("maintenance", hour, "dead-scheduler")
            .await
            .expect("claim")
    );
    sqlx::query("UPDATE schedule_ticks SET claimed_at = claimed_at - interval '2 minutes'")
        .execute(pg)
        .await
        .expect("backdate the claim");

    let crons = [
        ("MAINTENANCE_CRON", "0 0 * * * *"),
        ("RETRAIN_CRON", NEVER),
        ("DRIFT_CRON", NEVER),
    ];
    let a = env.spawn("scheduler-a", &["scheduler"], &crons);
    let b = env.spawn("scheduler-b", &["scheduler"], &crons);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rows(&env, "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance'").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned tick was not taken over\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.term(a);
    env.term(b);
    let jobs = rows(&env, "SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance'").await;
    assert_eq!(
        jobs,
        1,
        "taken over once, by one of the two\n{}",
        env.dump_logs()
    );
    let recorded = rows(
        &env,
        "SELECT COUNT(*) FROM schedule_ticks WHERE schedule = 'maintenance' AND job_id IS NOT NULL",
    )
    .await;
    assert_eq!(recorded, 1);
}
