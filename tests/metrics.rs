//! `/metrics` on the api and on a worker, scraped like Prometheus would.

mod common;

use std::time::Duration;

use common::{Mode, TestEnv, free_port, open_projects, shared_backend};

async fn scrape(url: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match reqwest::get(url).await {
            Ok(r) if r.status().is_success() => {
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
                return r.text().await.expect("body");
            }
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("scrape {url}: {other:?}"),
        }
    }
}

/// The value of the first sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_expose_jobs_http_and_queue_series_without_worker_labels() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    let port = free_port().to_string();
    env.spawn(
        "worker",
        &["worker", "--queues", "predict", "--concurrency", "2"],
        &[("WORKER_METRICS_PORT", port.as_str())],
    );
    // No model is trained: the prediction fails permanently, which is a
    // final state worth counting too.
    let ids = open_projects(&shared_backend(), 2).await;
    let c = env.client();
    let job = c.predict(&["risk"], &ids).await;
    let done = c.wait_job(&job, 30).await;
    assert_eq!(done["status"], "failed", "{done}");

    let worker = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(
        sample(
            &worker,
            "rpa_ml_jobs_finished_total{kind=\"predict\",state=\"failed\"}"
        ),
        Some(1.0),
        "{worker}"
    );
    assert!(
        worker.contains("rpa_ml_job_duration_seconds_bucket{"),
        "{worker}"
    );
    assert!(
        worker.contains("rpa_ml_job_wait_seconds_count{kind=\"predict\"}"),
        "{worker}"
    );

    let api = scrape(&format!("{}/metrics", env.base())).await;
    assert_eq!(
        sample(
            &api,
            "rpa_ml_http_requests_total{method=\"POST\",route=\"/api/v1/predict\",status=\"202\"}"
        ),
        Some(1.0),
        "{api}"
    );
    // Route templates, never raw ids.
    assert!(api.contains("route=\"/api/v1/jobs/{id}\""), "{api}");
    assert!(!api.contains(&job), "a job id leaked into a label");
    assert_eq!(
        sample(
            &api,
            "rpa_ml_queue_jobs{queue=\"predict\",state=\"failed\"}"
        ),
        Some(1.0),
        "{api}"
    );
    assert_eq!(
        sample(
            &api,
            "rpa_ml_queue_oldest_waiting_seconds{queue=\"predict\"}"
        ),
        Some(0.0),
        "{api}"
    );
    for text in [&api, &worker] {
        assert!(!text.contains("worker="), "worker names must not be labels");
        assert!(text.ends_with("# EOF\n"));
    }
    // A request to no route is counted as such, not by its path.
    let _ = c.get("/api/v1/nothing-here/123").await;
    let api = scrape(&format!("{}/metrics", env.base())).await;
    assert!(api.contains("route=\"unmatched\""), "{api}");
    assert!(!api.contains("nothing-here"), "{api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_follows_a_prediction_into_the_workers_json_logs() {
    let mut env = TestEnv::new(Mode::Scale).await;
    let json_logs = [("LOG_FORMAT", "json"), ("LOG_LEVEL", "info")];
    env.spawn("api", &["api"], &json_logs);
    env.wait_ready().await;
    env.spawn(
        "worker",
        &["worker", "--queues", "predict", "--concurrency", "1"],
        &json_logs,
    );
    let ids = open_projects(&shared_backend(), 1).await;
    // The caller's own request id is kept (and answered back).
    let rid = format!("trace-{}", ulid::Ulid::new());
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/predict", env.base()))
        .bearer_auth(common::KEY)
        .header("x-request-id", &rid)
        .json(&serde_json::json!({"targets": ["risk"], "project_ids": ids}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(rid.as_str())
    );
    let body: serde_json::Value = r.json().await.expect("json");
    let job = body["job_id"].as_str().expect("job id").to_string();
    env.client().wait_job(&job, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let worker_log = std::fs::read_to_string(env.dir.join("worker.log")).expect("worker log");
    let lines: Vec<serde_json::Value> = worker_log
        .lines()
        .filter(|l| l.contains(&job))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        !lines.is_empty(),
        "no worker line for the job\n{worker_log}"
    );
    assert!(
        lines.iter().all(|l| l.to_string().contains(&rid)),
        "every worker line of the job carries the request id {rid}\n{worker_log}"
    );
    let api_log = std::fs::read_to_string(env.dir.join("api.log")).expect("api log");
    assert!(
        api_log
            .lines()
            .any(|l| l.contains(&rid) && l.contains(&job) && l.contains("job accepted")),
        "the api logs the accepted job with the request id\n{api_log}"
    );
}
