//! Input at the edges against the real binary and the real stores: a
//! `?wait=` too large for a `Duration`, client request ids, the Bearer
//! scheme in any case.

mod common;

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str, names: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(names),
        "message should name {names}: {body}"
    );
}

/// Starts an api (no worker: jobs stay queued) on PostgreSQL and Redis.
async fn api_env() -> TestEnv {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("MAX_WAIT_SECS".into(), "1".into());
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    env
}

async fn queued_job(c: &common::Api) -> String {
    let (s, body) = c
        .post("/api/v1/models/retrain", json!({"targets": ["risk"]}))
        .await;
    assert_eq!(s, 202, "{body}");
    body["job_id"].as_str().expect("job id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_beyond_a_duration_are_cut_and_bad_ones_refused() {
    let env = api_env().await;
    let c = env.client();
    let id = queued_job(&c).await;
    // 1e20 s and 2^64 s used to panic the handler before the cap applied:
    // no response at all. Now they hold for MAX_WAIT_SECS, like any wait
    // above it.
    for wait in [
        "1e20",
        "18446744073709551616",
        "1.7976931348623157e308",
        "31",
    ] {
        let (s, job) = c.get(&format!("/api/v1/jobs/{id}?wait={wait}")).await;
        assert_eq!(s, 200, "wait={wait}: {job}");
        assert_eq!(job["status"], "queued", "wait={wait}: {job}");
    }
    for wait in ["NaN", "inf", "-inf", "-1", "-1e20", "1e400"] {
        let (s, body) = c.get(&format!("/api/v1/jobs/{id}?wait={wait}")).await;
        assert_error(s, &body, 400, "validation_error", "wait");
    }
    // The process is still up and answering.
    let (s, _) = c.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_only_when_sane_and_the_response_names_the_one_used() {
    let env = api_env().await;
    let store = env.store().await.store;
    let http = reqwest::Client::new();
    let ids = open_projects(&shared_backend(), 1).await;
    let long = "a".repeat(6000);
    let sent = [
        ("req-42.a_b:c", true),
        (&"x".repeat(128)[..], true),
        (&"x".repeat(129)[..], false),
        (&long[..], false),
        ("tab\there", false),
        ("<b>markup</b>", false),
        ("a b", false),
    ];
    for (rid, kept) in sent {
        let r = http
            .post(format!("{}/api/v1/predict", env.base()))
            .bearer_auth(KEY)
            .header("x-request-id", rid)
            .json(&json!({"targets": ["risk"], "project_ids": ids}))
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "{}", r.status());
        let echoed = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-request-id in the response")
            .to_string();
        let body: Value = r.json().await.expect("json");
        let job = store
            .get_job(body["job_id"].as_str().expect("job id"))
            .await
            .expect("read")
            .expect("row");
        assert_eq!(job.request_id.as_deref(), Some(echoed.as_str()));
        if kept {
            assert_eq!(echoed, rid);
        } else {
            assert_ne!(echoed, rid);
            assert!(
                ulid::Ulid::from_string(&echoed).is_ok(),
                "fresh id {echoed}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let env = api_env().await;
    let http = reqwest::Client::new();
    for (value, want) in [
        (format!("Bearer {KEY}"), 200),
        (format!("bearer {KEY}"), 200),
        (format!("BEARER {KEY}"), 200),
        (format!("BEARER {KEY}x"), 401),
        (format!("Basic {KEY}"), 401),
    ] {
        let r = http
            .get(format!("{}/api/v1/models", env.base()))
            .header("authorization", &value)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), want, "{value}");
    }
}

