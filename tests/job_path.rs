//! The job path end to end, on Redis + PostgreSQL and on the embedded
//! default, with real processes of the `rpa-ml` binary.

mod common;

use std::time::Duration;

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

async fn scale_system() -> TestEnv {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker", "--concurrency", "4"], &[]);
    env.wait_ready().await;
    env
}

fn check_prediction(job: &Value, target: &str, ids: &[i64]) {
    assert_eq!(job["status"], "succeeded", "job: {job}");
    let preds = job["result"]["predictions"]
        .as_array()
        .expect("predictions");
    assert_eq!(preds.len(), ids.len(), "one answer per project: {job}");
    for p in preds {
        assert_eq!(p["target"], target);
        assert!(p["model_version"].as_i64().is_some(), "model version: {p}");
        match target {
            "risk" => {
                let class = p["class"].as_str().expect("class");
                assert!(["low", "medium", "high"].contains(&class), "{p}");
                let probs = p["probabilities"].as_object().expect("probabilities");
                let sum: f64 = probs.values().filter_map(Value::as_f64).sum();
                assert!((sum - 1.0).abs() < 1e-6, "probabilities sum to 1: {p}");
            }
            _ => assert!(p["value"].as_f64().is_some_and(f64::is_finite), "{p}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_poll_result_each_target_on_redis_and_postgres() {
    let env = scale_system().await;
    env.train().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 3).await;
    assert_eq!(ids.len(), 3);

    for (path, target) in [
        ("/api/v1/predict/completion-time", "completion_time"),
        ("/api/v1/predict/budget-variance", "budget_variance"),
        ("/api/v1/predict/risk-score", "risk"),
    ] {
        let r = c
            .http
            .post(format!("{}{path}", env.base()))
            .bearer_auth(KEY)
            .json(&json!({"project_ids": ids}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 202);
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location header")
            .to_string();
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["status_url"], location);
        let id = body["job_id"].as_str().expect("job id");
        let job = c.wait_job(id, 30).await;
        check_prediction(&job, target, &ids);
    }

    // All targets at once, all open projects.
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["completion_time", "budget_variance", "risk"], "all_open": true}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = c.wait_job(body["job_id"].as_str().expect("id"), 60).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let n = job["result"]["summary"]["projects"]
        .as_i64()
        .expect("projects");
    assert!(n > 10, "all open projects scored: {job}");

    // Stored per project with its model version.
    let probe = env.store().await;
    let stored = probe
        .count("SELECT COUNT(*) FROM predictions WHERE model_version IS NOT NULL")
        .await;
    assert!(stored >= 9 + 3 * n, "stored predictions: {stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_poll_result_on_the_embedded_default() {
    let mut env = TestEnv::new(Mode::Embedded).await;
    env.spawn_standalone();
    env.wait_ready().await;
    let c = env.client();
    // Standalone trains the first models by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, models) = c.get("/api/v1/models").await;
        if ["completion_time", "budget_variance", "risk"]
            .iter()
            .all(|t| models["targets"][t]["production_version"].is_i64())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no models: {models}\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ids = open_projects(&shared_backend(), 2).await;
    for target in ["completion_time", "budget_variance", "risk"] {
        let id = c.predict(&[target], &ids).await;
        let job = c.wait_job(&id, 30).await;
        check_prediction(&job, target, &ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_projects_are_reported_per_project() {
    let env = scale_system().await;
    env.train().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &[ids[0], 999_999]).await;
    let job = c.wait_job(&id, 30).await;
    assert_eq!(job["status"], "succeeded");
    let preds = job["result"]["predictions"]
        .as_array()
        .expect("predictions");
    let unknown = preds
        .iter()
        .find(|p| p["project_id"] == 999_999)
        .expect("entry for the unknown project");
    assert_eq!(unknown["error"], "unknown project 999999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_get_the_right_status_and_write_nothing() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra
        .insert("MAX_PROJECTS_PER_REQUEST".into(), "100".into());
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    // A fresh connection per request: the server answers an oversized body
    // (413) without reading it and closes the connection, and a pooled
    // client that reused that connection would see it cut mid-request.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = format!("{}/api/v1/predict", env.base());
    let ids = open_projects(&shared_backend(), 1).await;

    let send = |body: String, key: Option<&'static str>| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        (
            json!({"targets": ["risk"], "project_ids": [999_999]}).to_string(),
            Some(KEY),
            404,
            "project_not_found",
        ),
        (
            "{\"targets\": [\"risk\"], \"project_ids\": [1,".to_string(),
            Some(KEY),
            400,
            "invalid_json",
        ),
        (
            json!({"targets": ["risk"], "project_ids": (1..=101).collect::<Vec<i64>>()})
                .to_string(),
            Some(KEY),
            413,
            "batch_too_large",
        ),
        (
            json!({"targets": ["eta"], "project_ids": ids}).to_string(),
            Some(KEY),
            400,
            "unknown_target",
        ),
        (
            json!({"targets": ["risk"], "project_ids": "all"}).to_string(),
            Some(KEY),
            400,
            "validation_error",
        ),
        (
            json!({"targets": ["risk"]}).to_string(),
            Some(KEY),
            400,
            "validation_error",
        ),
        (
            json!({"targets": ["risk"], "project_ids": ids}).to_string(),
            None,
            401,
            "unauthorized",
        ),
        (
            json!({"targets": ["risk"], "project_ids": ids}).to_string(),
            Some("wrong-key"),
            401,
            "unauthorized",
        ),
        (
            "x".repeat(2 * 1024 * 1024),
            Some(KEY),
            413,
            "payload_too_large",
        ),
    ];
    for (body, key, status, code) in cases {
        let preview: String = body.chars().take(60).collect();
        let r = send(body, key).await.expect("request");
        assert_eq!(r.status().as_u16(), status, "{preview}");
        let v: Value = r.json().await.expect("error body is JSON");
        assert_eq!(v["error"]["code"], code, "{preview}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // The X-API-Key header works as well as Bearer.
    let r = http
        .get(format!("{}/api/v1/models", env.base()))
        .header("x-api-key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    // Unknown job and unknown route: 404 in the same shape.
    let (s, v) = env
        .client()
        .get("/api/v1/jobs/01JZZZZZZZZZZZZZZZZZZZZZZZ")
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = env.client().get("/api/v1/nope").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));

    let probe = env.store().await;
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM jobs").await,
        0,
        "rejected requests wrote jobs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retrains_of_one_target_make_one_job() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    let c = env.client();
    let body = json!({"targets": ["risk"]});
    let (a, b) = tokio::join!(
        c.post("/api/v1/models/retrain", body.clone()),
        c.post("/api/v1/models/retrain", body.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 202], "{a:?} {b:?}");
    assert_eq!(a.1["job_id"], b.1["job_id"]);
    // An overlapping but different set is refused while that one is active.
    let (s, v) = c
        .post(
            "/api/v1/models/retrain",
            json!({"targets": ["risk", "completion_time"]}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("retrain_in_progress"))
    );
    let probe = env.store().await;
    assert_eq!(probe.count("SELECT COUNT(*) FROM jobs").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_openapi() {
    let env = scale_system().await;
    let c = env.client();
    let (s, v) = c.get("/health").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    // No model yet: the dependencies are up, the service is not ready.
    let (s, v) = c.get("/ready").await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = c.get("/ready?models=false").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(v["openapi"], "3.1.0");
    // Every documented path answers with something other than "no route".
    for (path, item) in v["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("ops").keys() {
            let p = path
                .replace("{id}", "01JZZZZZZZZZZZZZZZZZZZZZZZ")
                .replace("{target}", "risk")
                .replace("{version}", "1");
            let r = c
                .http
                .request(
                    method.to_uppercase().parse().expect("method"),
                    format!("{}{p}", env.base()),
                )
                .bearer_auth(KEY)
                .send()
                .await
                .expect("request");
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let no_route = body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no route"));
            assert!(!no_route, "{method} {path} is documented but not routed");
        }
    }
}
