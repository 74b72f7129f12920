//! What rpa-ml leaves on Redis: the queue counts read every key whatever
//! type apalis gave it.

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
