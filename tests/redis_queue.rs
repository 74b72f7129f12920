//! What rpa-ml leaves on Redis: the queue counts read every key whatever
//! type apalis gave it, and finished jobs' messages do not pile up (on the
//! embedded queue either).

mod common;

use std::time::{Duration, Instant};

use common::{Mode, TestEnv, open_projects, shared_backend};
use serde_json::Value;

fn queue<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == name))
        .unwrap_or_else(|| panic!("no queue {name}: {queues}"))
}

/// Submits `n` one-project predictions and waits for each to end. No model
/// is trained, so each fails for good: a finished job all the same, acked
/// to apalis like a success.
async fn run_jobs(env: &TestEnv, n: usize) -> Vec<String> {
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let mut jobs = Vec::new();
    for _ in 0..n {
        jobs.push(c.predict(&["risk"], &ids).await);
    }
    for id in &jobs {
        let job = c.wait_job(id, 60).await;
        assert_eq!(job["status"], "failed", "{job}\n{}", env.dump_logs());
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_counts_read_redis_once_jobs_have_finished() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker", "--queues", "predict"], &[]);
    env.wait_ready().await;
    run_jobs(&env, 3).await;

    // apalis acks a message just after its handler returns: wait for the
    // three done entries.
    let c = env.client();
    let deadline = Instant::now() + Duration::from_secs(15);
    let p = loop {
        let (s, queues) = c.get("/api/v1/queues").await;
        assert_eq!(s, 200, "{queues}");
        let p = queue(&queues, "predict").clone();
        if p["transport"]["done"] == 3 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the done entries never showed: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(p["transport_error"].is_null(), "{p}");
    let t = &p["transport"];
    for (key, want) in [
        ("active", 0),
        ("scheduled", 0),
        ("inflight", 0),
        ("dead", 0),
        ("failed", 0),
        ("workers", 1),
    ] {
        assert_eq!(t[key], want, "{key}: {p}");
    }
    assert_eq!(p["failed"], 3, "the jobs table agrees: {p}");
    // The other queues answer too, with nothing on them.
    let (_, queues) = c.get("/api/v1/queues").await;
    for name in ["train", "maintenance"] {
        let q = queue(&queues, name);
        assert!(q["transport_error"].is_null(), "{q}");
        assert_eq!(q["transport"]["done"], 0, "{q}");
    }
}

/// What this test's prefix holds on Redis: every key, less the sweep's
/// turn marker (it expires on its own each period).
fn redis_keys(env: &TestEnv) -> Vec<String> {
    let client = redis::Client::open(env.redis_url.clone()).expect("redis client");
    let mut conn = client.get_connection().expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", env.prefix))
        .query(&mut conn)
        .expect("keys");
    let mut keys: Vec<String> = keys.into_iter().filter(|k| !k.contains(":turn:")).collect();
    keys.sort();
    keys
}

/// Entries of the predict queue's payload hash (finished messages whose
/// payload is still held, plus any not finished).
fn payloads(env: &TestEnv) -> i64 {
    let client = redis::Client::open(env.redis_url.clone()).expect("redis client");
    let mut conn = client.get_connection().expect("redis");
    redis::cmd("HLEN")
        .arg(format!("{}:predict:data", env.prefix))
        .query(&mut conn)
        .expect("hlen")
}

/// Waits until no finished message of the predict queue is left: no status
/// key, no payload, no done entry.
async fn wait_swept(env: &TestEnv, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let keys = redis_keys(env);
        let left = keys
            .iter()
            .filter(|k| k.contains(":meta:") || k.ends_with(":done") || k.ends_with(":dead"))
            .count();
        if left == 0 && payloads(env) == 0 {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "finished messages stayed on Redis ({left} keys, {} payloads): {keys:?}\n{}",
            payloads(env),
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_messages_leave_redis_so_its_keys_do_not_grow_with_jobs() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("REDIS_RETENTION_SECS".into(), "0".into());
    env.spawn("api", &["api"], &[]);
    let first = env.spawn("worker-1", &["worker", "--queues", "predict"], &[]);
    env.wait_ready().await;

    run_jobs(&env, 10).await;
    let after_10 = wait_swept(&env, 30).await;

    // A worker that dies leaves its apalis registration behind; its
    // successor's sweep clears it once apalis has declared it gone.
    env.kill9(first);
    env.spawn("worker-2", &["worker", "--queues", "predict"], &[]);
    run_jobs(&env, 40).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let after_50 = loop {
        let keys = wait_swept(&env, 30).await;
        if keys.len() <= after_10.len() {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "Redis keys grew with the jobs: {} after 10 jobs {after_10:?}, {} after 50 {keys:?}\n{}",
            after_10.len(),
            keys.len(),
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // apalis names a worker after its process: host-pid-suffix-queue-n.
    let dead = format!("-{first}-");
    assert!(
        after_50.iter().all(|k| !k.contains(&dead)),
        "the dead worker's registration is gone: {after_50:?}"
    );

    // Swept queues still work, and the counts read them.
    run_jobs(&env, 2).await;
    let (s, queues) = env.client().get("/api/v1/queues").await;
    assert_eq!(s, 200, "{queues}");
    assert!(
        queue(&queues, "predict")["transport_error"].is_null(),
        "{queues}"
    );
}

/// The figure for the issue: keys on Redis after 10,000 one-project
/// predictions with the retention in effect. A measurement, not a check
/// to run every time:
///
/// `cargo test --test redis_queue keys_on_redis_after_many_jobs -- --ignored --nocapture`
///
/// `RPA_ML_MEASURE_JOBS` (default 10000) and `RPA_ML_MEASURE_RETENTION_SECS`
/// (default 30) change the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of several minutes"]
async fn keys_on_redis_after_many_jobs() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let jobs = var("RPA_ML_MEASURE_JOBS", 10_000);
    let retention = var("RPA_ML_MEASURE_RETENTION_SECS", 30);
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra
        .insert("REDIS_RETENTION_SECS".into(), retention.to_string());
    env.extra.insert("LOG_LEVEL".into(), "warn".into());
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker", "--concurrency", "8"], &[]);
    env.wait_ready().await;
    env.train().await;

    let started = Instant::now();
    let (jobs_arg, base) = (jobs.to_string(), env.base());
    let bench = env.spawn(
        "bench",
        &[
            "bench",
            "--url",
            &base,
            "--jobs",
            &jobs_arg,
            "--projects-per-job",
            "1",
            "--concurrency",
            "32",
            "--latency-samples",
            "0",
        ],
        &[],
    );
    let status = env
        .wait_exit(bench, Duration::from_secs(3600))
        .expect("bench ends within the hour");
    let log = std::fs::read_to_string(env.dir.join("bench.log")).unwrap_or_default();
    assert!(
        status.success(),
        "bench failed:\n{log}\n{}",
        env.dump_logs()
    );
    println!("{log}");
    let ran = started.elapsed();
    let probe = env.store().await;
    let succeeded = probe
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'predict' AND state = 'succeeded'")
        .await;
    assert_eq!(succeeded, jobs as i64, "every job succeeded");
    let at_end = redis_keys(&env).len();
    let settled = Instant::now();
    let keys = wait_swept(&env, retention + 120).await;
    println!(
        "redis keys after {jobs} one-project predictions ({:.0} s), retention {retention} s: \
         {at_end} when the last finished, {} after {:.0} s more: {keys:?}",
        ran.as_secs_f64(),
        keys.len(),
        settled.elapsed().as_secs_f64()
    );
    assert!(keys.len() < 20, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_queue_forgets_finished_messages_too() {
    let mut env = TestEnv::new(Mode::Embedded).await;
    env.extra.insert("REDIS_RETENTION_SECS".into(), "0".into());
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker", "--queues", "predict"], &[]);
    env.wait_ready().await;
    run_jobs(&env, 5).await;

    // apalis-sqlite's own table, in the queue file beside the store.
    let queue = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        env.dir.join("ml-store-queue.sqlite").display()
    ))
    .await
    .expect("queue file");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM Jobs")
            .fetch_one(&queue)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} finished messages stayed on the embedded queue\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The jobs table keeps them.
    let probe = env.store().await;
    assert_eq!(
        probe
            .count("SELECT COUNT(*) FROM jobs WHERE state = 'failed'")
            .await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_job_sweeps_the_queue_where_no_worker_does() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("REDIS_RETENTION_SECS".into(), "0".into());
    env.spawn("api", &["api"], &[]);
    // No sweep loop in this worker: only the maintenance job sweeps.
    env.spawn(
        "worker",
        &[
            "worker",
            "--queues",
            "predict,maintenance",
            "--no-reconcile",
        ],
        &[],
    );
    env.wait_ready().await;
    run_jobs(&env, 5).await;
    let never = "0 0 0 1 1 * 2099";
    env.spawn(
        "scheduler",
        &["scheduler"],
        &[
            ("MAINTENANCE_CRON", "*/2 * * * * *"),
            ("RETRAIN_CRON", never),
            ("DRIFT_CRON", never),
        ],
    );
    let probe = env.store().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .count("SELECT COUNT(*) FROM jobs WHERE kind = 'maintenance' AND state = 'succeeded'")
        .await
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "no maintenance job succeeded\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let keys = redis_keys(&env);
    assert!(
        !keys.iter().any(|k| k.contains(":predict:meta:")),
        "the five predictions' messages are gone: {keys:?}"
    );
    assert_eq!(payloads(&env), 0, "{keys:?}");
}
