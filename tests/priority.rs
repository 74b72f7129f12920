//! Priorities on Redis + PostgreSQL: with a backlog of low predict jobs
//! queued, high ones submitted after it are answered before the backlog is
//! drained, and the low lane keeps moving meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::{Mode, TestEnv};
use serde_json::json;

const LOW_UNFINISHED: &str = "SELECT COUNT(*) FROM jobs WHERE kind = 'predict' \
     AND queue = 'predict_low' AND state IN ('queued', 'running')";
const LOW_SUCCEEDED: &str = "SELECT COUNT(*) FROM jobs WHERE kind = 'predict' \
     AND queue = 'predict_low' AND state = 'succeeded'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_jobs_pass_a_low_backlog_and_low_still_progresses() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.api_with_models().await;
    let c = env.client();
    let probe = env.store().await;

    // The backlog, queued before any predict worker runs: every project of
    // the backend (closed ones are scored as of now too), every target.
    let all: Vec<i64> = (1..=400).collect();
    const BACKLOG: i64 = 150;
    for _ in 0..BACKLOG {
        let (status, body) = c
            .post(
                "/api/v1/predict",
                json!({"targets": ["completion_time", "budget_variance", "risk"],
                       "project_ids": all, "priority": "low"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(probe.count(LOW_UNFINISHED).await, BACKLOG);

    // Two slots: high and normal get two each, low one.
    env.spawn(
        "worker",
        &["worker", "--queues", "predict", "--concurrency", "2"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe.count(LOW_SUCCEEDED).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the low lane never moved\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut low_done_at_last_high = 0;
    for round in 0..3 {
        let started = Instant::now();
        let id = {
            let (status, body) = c
                .post(
                    "/api/v1/predict",
                    json!({"targets": ["risk"], "project_ids": [1], "priority": "high"}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            body["job_id"].as_str().expect("job id").to_string()
        };
        let job = c.wait_job(&id, 60).await;
        let took = started.elapsed();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["priority"], "high", "{job}");
        assert_eq!(job["queue"], "predict_high", "{job}");
        let left = probe.count(LOW_UNFINISHED).await;
        assert!(
            left > 0,
            "round {round}: the high job ({took:?}) should finish before the low backlog is drained"
        );
        low_done_at_last_high = probe.count(LOW_SUCCEEDED).await;
        eprintln!("round {round}: high job in {took:?}, {left} low jobs still waiting");
    }

    // Low is not starved: it goes on after the high ones.
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe.count(LOW_SUCCEEDED).await <= low_done_at_last_high {
        assert!(
            Instant::now() < deadline,
            "the low lane stopped\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, failed) = c.get("/api/v1/jobs?state=failed,dead&limit=5").await;
    assert_eq!(failed["jobs"], json!([]), "no job failed: {failed}");
}
