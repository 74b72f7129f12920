//! Ops JSON API against the real binary: job listing with filters and
//! cursor paging, retry, cancel (queued and running), queue counts against
//! real Redis, workers, and the embedded default once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// Polls `GET /api/v1/jobs/{id}` until `pred` holds.
async fn wait_for(c: &common::Api, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        if pred(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never got there: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn queue<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == name))
        .unwrap_or_else(|| panic!("no queue {name}: {queues}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paging_counts_bad_input_and_cancel_of_queued_jobs() {
    let mut env = TestEnv::new(Mode::Scale).await;
    // The retrain queued below never runs (no worker serves its queue):
    // predictions wait for it only a second before failing for want of a model.
    env.extra.insert("FIRST_MODEL_WAIT_SECS".into(), "1".into());
    // No worker yet: everything submitted stays queued.
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 2).await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut predicts = Vec::new();
    for _ in 0..12 {
        predicts.push(c.predict(&["risk"], &ids).await);
    }
    let (s, retrain) = c
        .post("/api/v1/models/retrain", json!({"targets": ["risk"]}))
        .await;
    assert_eq!(s, 202, "{retrain}");
    let retrain = retrain["job_id"].as_str().expect("job id").to_string();

    // Pages of 5 over 13 jobs: 5 + 5 + 3, newest first, no repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/api/v1/jobs?limit=5&cursor={cur}"),
            None => "/api/v1/jobs?limit=5".to_string(),
        };
        let (s, page) = c.get(&path).await;
        assert_eq!(s, 200, "{page}");
        let jobs = page["jobs"].as_array().expect("jobs");
        pages += 1;
        assert_eq!(jobs.len(), if pages < 3 { 5 } else { 3 }, "{page}");
        for j in jobs {
            seen.push(j["job_id"].as_str().expect("id").to_string());
            assert!(j.get("result").is_none(), "listing carries no results: {j}");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = predicts.iter().cloned().chain([retrain.clone()]).collect();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, every job once");

    // Filters.
    let (_, page) = c.get("/api/v1/jobs?kind=retrain").await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["jobs"][0]["job_id"], retrain.as_str());
    let (_, page) = c.get("/api/v1/jobs?kind=predict,drift&limit=500").await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(12), "{page}");
    let (_, page) = c.get("/api/v1/jobs?state=failed,dead").await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(0), "{page}");
    let (_, page) = c.get("/api/v1/jobs?state=queued&kind=predict").await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(12), "{page}");
    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, page) = c.get(&format!("/api/v1/jobs?since={since}")).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(13), "{page}");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, page) = c.get(&format!("/api/v1/jobs?since={later}")).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(0), "{page}");

    // Bad input: 400 with the standard error shape.
    for bad in [
        "/api/v1/jobs?state=finished",
        "/api/v1/jobs?kind=train",
        "/api/v1/jobs?limit=0",
        "/api/v1/jobs?limit=501",
        "/api/v1/jobs?limit=ten",
        "/api/v1/jobs?cursor=not-a-cursor",
        "/api/v1/jobs?since=yesterday",
        "/api/v1/jobs?colour=blue",
    ] {
        let (s, body) = c.get(bad).await;
        assert_error(s, &body, 400, "validation_error");
    }

    // Queue counts from the jobs table and from Redis itself.
    let (s, queues) = c.get("/api/v1/queues").await;
    assert_eq!(s, 200, "{queues}");
    assert_eq!(queues["queue_backend"], "redis");
    let p = queue(&queues, "predict");
    assert_eq!(p["waiting"], 12, "{p}");
    assert_eq!(p["running"], 0, "{p}");
    assert!(
        p["oldest_waiting_age_s"].as_f64().is_some_and(|a| a >= 0.0),
        "{p}"
    );
    let on_redis = p["transport"]["active"].as_i64().unwrap_or(0)
        + p["transport"]["scheduled"].as_i64().unwrap_or(0);
    assert_eq!(
        on_redis, 12,
        "every queued row has its message on Redis: {p}"
    );
    assert_eq!(queue(&queues, "train")["waiting"], 1, "{queues}");
    assert_eq!(queue(&queues, "maintenance")["waiting"], 0, "{queues}");
    assert!(queue(&queues, "maintenance")["oldest_waiting_age_s"].is_null());

    // Actions on jobs in the wrong state or that do not exist.
    let (s, body) = c
        .post_empty(&format!("/api/v1/jobs/{}/retry", predicts[0]))
        .await;
    assert_error(s, &body, 409, "invalid_job_state");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("queued")),
        "{body}"
    );
    let missing = ulid::Ulid::new().to_string();
    for action in ["retry", "cancel"] {
        let (s, body) = c
            .post_empty(&format!("/api/v1/jobs/{missing}/{action}"))
            .await;
        assert_error(s, &body, 404, "not_found");
        let (s, body) = c.post_empty(&format!("/api/v1/jobs/nope/{action}")).await;
        assert_error(s, &body, 404, "not_found");
    }

    // Cancel two queued jobs; they must never run once a worker comes.
    let cancelled = [predicts[3].clone(), predicts[7].clone()];
    for id in &cancelled {
        let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/cancel")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["status"], "cancelled", "{body}");
        let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/cancel")).await;
        assert_error(s, &body, 409, "invalid_job_state");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cancelled")),
            "{body}"
        );
    }
    let (_, queues) = c.get("/api/v1/queues").await;
    assert_eq!(queue(&queues, "predict")["waiting"], 10, "{queues}");
    assert_eq!(queue(&queues, "predict")["cancelled"], 2, "{queues}");

    // A worker drains the queue: the others run (and fail: no model yet,
    // after waiting a second for the queued retrain), the cancelled two are
    // skipped at claim.
    env.spawn("worker", &["worker", "--queues", "predict"], &[]);
    for id in predicts.iter().filter(|id| !cancelled.contains(id)) {
        let job = c.wait_job(id, 60).await;
        assert_eq!(job["status"], "failed", "{job}\n{}", env.dump_logs());
    }
    for id in &cancelled {
        let (_, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job["status"], "cancelled", "{job}");
        assert_eq!(job["attempts"], 0, "a cancelled job never ran: {job}");
        assert!(job["started_at"].is_null(), "{job}");
    }
    let (_, queues) = c.get("/api/v1/queues").await;
    let p = queue(&queues, "predict");
    assert_eq!(p["failed"], 10, "{p}");
    assert_eq!(p["waiting"], 0, "{p}");
    assert!(p["throughput"]["finished_5m"].as_i64() >= Some(12), "{p}");

    // The worker is on the roster with a fresh heartbeat.
    let (s, workers) = c.get("/api/v1/workers").await;
    assert_eq!(s, 200, "{workers}");
    let w = &workers["workers"][0];
    assert_eq!(w["alive"], true, "{workers}");
    assert_eq!(w["queues"], json!(["predict"]), "{workers}");
    assert!(w["last_seen"].is_string() && w["pid"].is_i64(), "{workers}");

    // The key is required.
    let r = reqwest::get(format!("{}/api/v1/queues", env.base()))
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_job_is_retried_under_the_same_id_with_its_history() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("JOB_MAX_ATTEMPTS".into(), "1".into());
    env.spawn("api", &["api"], &[]);
    // Reconciles (declares the crashed attempt dead); serves no predictions.
    env.spawn("reconciler", &["worker", "--queues", "maintenance"], &[]);
    env.wait_ready().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;
    let crasher = env.spawn(
        "crasher",
        &["worker", "--queues", "predict", "--no-reconcile"],
        &[("RPA_ML_FAULT_ABORT", "1")],
    );
    env.wait_exit(crasher, Duration::from_secs(20));
    let dead = wait_for(&c, &id, 60, |j| j["status"] == "dead").await;
    assert_eq!(dead["attempts"], 1, "{dead}");
    let dead_error = dead["error"].as_str().expect("error").to_string();

    let (s, _) = c.get("/api/v1/jobs?state=dead").await;
    assert_eq!(s, 200);
    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/retry")).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["job_id"], id.as_str(), "same id");
    assert_eq!(body["status"], "queued", "{body}");
    assert_eq!(body["attempts"], 0, "fresh attempt budget: {body}");
    assert_eq!(body["retries"], 1, "{body}");
    assert_eq!(body["previous_error"], dead_error.as_str(), "{body}");
    assert!(body["error"].is_null(), "{body}");

    // Its message is back on Redis; a healthy worker runs it (it fails
    // for good: no model is trained here).
    let (_, queues) = c.get("/api/v1/queues").await;
    let p = queue(&queues, "predict");
    assert_eq!(p["waiting"], 1, "{p}");
    let on_redis = p["transport"]["active"].as_i64().unwrap_or(0)
        + p["transport"]["scheduled"].as_i64().unwrap_or(0);
    assert_eq!(on_redis, 1, "{p}");
    env.spawn("worker", &["worker", "--queues", "predict"], &[]);
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "failed", "{job}\n{}", env.dump_logs());
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("no production model")),
        "{job}"
    );
    let (_, page) = c.get("/api/v1/jobs?state=failed").await;
    assert_eq!(page["jobs"][0]["job_id"], id.as_str(), "{page}");
    assert_eq!(page["jobs"][0]["retries"], 1, "{page}");

    // A failed job can be retried too, and the count goes on.
    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/retry")).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["retries"], 2, "{body}");
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "failed", "{job}");
    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/cancel")).await;
    assert_error(s, &body, 409, "invalid_job_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_stops_at_its_next_checkpoint() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    // Each job holds its worker for 4 s before its first checkpoint.
    env.spawn(
        "worker",
        &["worker", "--queues", "predict"],
        &[("RPA_ML_FAULT_DELAY_MS", "4000")],
    );
    env.wait_ready().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;
    wait_for(&c, &id, 30, |j| j["status"] == "running").await;
    let (_, queues) = c.get("/api/v1/queues").await;
    assert_eq!(queue(&queues, "predict")["running"], 1, "{queues}");

    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/cancel")).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    assert!(body["cancel_requested_at"].is_string(), "{body}");
    // Asking twice is harmless.
    let (s, _) = c.post_empty(&format!("/api/v1/jobs/{id}/cancel")).await;
    assert_eq!(s, 202);

    let job = c.wait_job(&id, 30).await;
    assert_eq!(job["status"], "cancelled", "{job}\n{}", env.dump_logs());
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("cancelled by an operator")),
        "{job}"
    );
    assert!(job["result"].is_null(), "{job}");
    let probe = env.store().await;
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM predictions").await,
        0,
        "a cancelled job stores no answers"
    );
    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/retry")).await;
    assert_error(s, &body, 409, "invalid_job_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_api_and_page_on_the_embedded_default() {
    let mut env = TestEnv::new(Mode::Embedded).await;
    env.spawn_standalone();
    env.wait_ready().await;
    let c = env.client();

    // The page shell needs no key and holds none.
    let r = reqwest::get(format!("{}/ops", env.base()))
        .await
        .expect("page");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let html = r.text().await.expect("html");
    assert!(html.contains("rpa-ml ops") && !html.contains(KEY));
    for asset in ["/ops/page.js", "/ops/page.css"] {
        let r = reqwest::get(format!("{}{asset}", env.base()))
            .await
            .expect("asset");
        assert_eq!(r.status().as_u16(), 200, "{asset}");
    }

    // Standalone trains its first models as a retrain job on its own.
    let deadline = Instant::now() + Duration::from_secs(180);
    let retrain = loop {
        let (s, page) = c.get("/api/v1/jobs?kind=retrain").await;
        assert_eq!(s, 200, "{page}");
        if let Some(j) = page["jobs"].as_array().and_then(|j| j.first())
            && j["status"] == "succeeded"
        {
            break j["job_id"].as_str().expect("id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no first models: {page}\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ids = open_projects(&shared_backend(), 2).await;
    let id = c.predict(&["risk"], &ids).await;
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let (s, queues) = c.get("/api/v1/queues").await;
    assert_eq!(s, 200, "{queues}");
    assert_eq!(queues["queue_backend"], "sqlite");
    assert_eq!(queues["store_backend"], "sqlite");
    let p = queue(&queues, "predict");
    assert!(p["succeeded"].as_i64() >= Some(1), "{p}");
    assert!(p["throughput"]["finished_5m"].as_i64() >= Some(1), "{p}");
    assert!(p["transport_error"].is_null(), "{p}");
    assert!(p["transport"]["done"].as_i64() >= Some(1), "{p}");
    assert!(queue(&queues, "train")["succeeded"].as_i64() >= Some(1));

    let (_, page) = c.get("/api/v1/jobs?limit=500").await;
    let listed: HashSet<&str> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str())
        .collect();
    assert!(listed.contains(id.as_str()) && listed.contains(retrain.as_str()));

    let (s, body) = c.post_empty(&format!("/api/v1/jobs/{id}/retry")).await;
    assert_error(s, &body, 409, "invalid_job_state");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("succeeded")),
        "{body}"
    );

    let (s, workers) = c.get("/api/v1/workers").await;
    assert_eq!(s, 200);
    assert!(
        workers["workers"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["alive"] == true)),
        "{workers}"
    );
}
