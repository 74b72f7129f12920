//! Input at the edges against the real binary and the real stores: a
//! `?wait=` too large for a `Duration`, NUL bytes in every text the store
//! keeps, client request ids, the Bearer scheme in any case, and bodies the
//! OpenAPI document calls valid (or not).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{
    Claim, DriftReportRow, Holder, JobOutcome, ModelStage, NewModel, PredictionRow, Store,
};
use serde_json::{Value, json};

/// The first (and only) attempt of the worker "w".
const HOLDER: Holder<'static> = Holder {
    worker: "w",
    attempt: 1,
};

const REPLACED: &str = "\u{FFFD}";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_taken_as_the_document_describes_them() {
    let env = api_env().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = ids[0];

    // `all_open` is a boolean: null is not "absent".
    let (s, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "all_open": null, "project_ids": [id]}),
        )
        .await;
    assert_error(s, &body, 400, "validation_error", "all_open");
    // JSON Schema's integer includes 45549.0.
    let (s, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": [id as f64]}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let (s, body) = c
        .post("/api/v1/predict/risk-score", json!({"project_ids": [1.5]}))
        .await;
    assert_error(s, &body, 400, "validation_error", "project_ids");
    // Neither or both selections are refused, as the document's oneOf says.
    for bad in [
        json!({"targets": ["risk"]}),
        json!({"targets": ["risk"], "project_ids": [id], "all_open": true}),
        json!({"targets": ["risk"], "all_open": false}),
    ] {
        let (s, body) = c.post("/api/v1/predict", bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    // Neither is `targets`: null used to mean "every target".
    let (s, body) = c
        .post("/api/v1/models/retrain", json!({"targets": null}))
        .await;
    assert_error(s, &body, 400, "validation_error", "targets");
    // Bodies are objects: serde would fill a struct from an array.
    let http = reqwest::Client::new();
    for (path, raw) in [
        ("/api/v1/models/retrain", "[]"),
        ("/api/v1/predict", r#"[["risk"], [1]]"#),
    ] {
        let r = http
            .post(format!("{}{path}", env.base()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("request");
        let s = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        assert_error(s, &body, 400, "validation_error", "JSON object");
    }
    // A date-time before 1970 is a valid `since`: it filters nothing.
    let (s, body) = c
        .get("/api/v1/jobs?since=1960-01-01T00:00:00Z&state=queued,running")
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1), "{body}");
    // An empty filter value is not "no filter": the document says at least
    // one state, each one of the enum.
    for query in ["state=", "state=queued,,running", "kind=predict,"] {
        let (s, body) = c.get(&format!("/api/v1/jobs?{query}")).await;
        assert_error(s, &body, 400, "validation_error", "empty value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_reason_with_a_nul_byte_is_refused_not_a_server_error() {
    let env = api_env().await;
    let c = env.client();
    let store = env.store().await.store;
    let model = store.insert_model(new_model("plain")).await.expect("model");
    let path = "/api/v1/models/risk/promote";
    for reason in ["bad\u{0}reason", "line\nbreak", &"x".repeat(1001)] {
        let (s, body) = c
            .post(path, json!({"version": model.version, "reason": reason}))
            .await;
        assert_error(s, &body, 400, "validation_error", "reason");
    }
    let (s, body) = c
        .post(
            path,
            json!({"version": model.version as f64, "reason": "checked by hand"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let row = store
        .get_model(Target::Risk, model.version)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.stage, ModelStage::Production);
    assert_eq!(
        row.stage_reason.as_deref(),
        Some("promoted by hand: checked by hand")
    );
    // A version beyond int32 is refused as the document says, not looked up.
    let (s, body) = c.post(path, json!({"version": 2_147_483_648_i64})).await;
    assert_error(s, &body, 400, "validation_error", "version");
}

fn new_model(learner: &str) -> NewModel {
    NewModel {
        target: Target::Risk,
        learner: learner.to_string(),
        feature_set_version: "v1".into(),
        data_fingerprint: "fp".into(),
        code_version: "test".into(),
        metrics: json!({"holdout": 0.5}),
        artifact_path: "/nowhere".into(),
        artifact_sha256: "0".repeat(64),
        job_id: None,
    }
}

/// One column of one row, as text (JSON columns cast), on either database.
async fn column(store: &Store, sql: &'static str, key: &str) -> String {
    let row: (Option<String>,) = match store {
        Store::Sqlite(p) => sqlx::query_as(sql).bind(key).fetch_one(p).await,
        Store::Postgres(p) => sqlx::query_as(sql).bind(key).fetch_one(p).await,
    }
    .expect("read column");
    row.0.unwrap_or_default()
}

async fn claimed_job(store: &Store, request_id: Option<String>) -> String {
    let job = common::predict_job(request_id);
    let id = job.id.clone();
    store.insert_jobs(&[job]).await.expect("insert with a NUL");
    match store
        .claim_job(&id, "w", std::time::Duration::from_secs(60))
        .await
        .expect("claim")
    {
        Claim::Claimed(_) => id,
        other => panic!("not claimed: {other:?}"),
    }
}

/// Texts that reach the store from elsewhere than a client (errors of the
/// backend database or a library, texts read from the backend) may carry a
/// NUL: PostgreSQL refused each of these writes before.
async fn nul_bytes_never_fail_a_write(store: &Store, mode: Mode) {
    let id = claimed_job(store, Some("rid\0x".into())).await;
    store
        .set_progress(&id, HOLDER, "stage\0", 0.5)
        .await
        .expect("progress");
    store
        .mark_push_failed(&id, "queue said \0")
        .await
        .expect("push error");
    let failed = JobOutcome::Failed {
        error: "backend said \0 here",
    };
    assert!(
        store
            .set_outcome(&id, HOLDER, failed)
            .await
            .expect("failure")
    );
    let job = store.get_job(&id).await.expect("read").expect("row");
    assert_eq!(job.request_id.as_deref(), Some("rid\u{FFFD}x"), "{mode:?}");
    assert_eq!(
        job.error.as_deref(),
        Some("backend said \u{FFFD} here"),
        "{mode:?}"
    );
    let push = column(store, "SELECT push_error FROM jobs WHERE id = $1", &id).await;
    assert_eq!(push, format!("queue said {REPLACED}"), "{mode:?}");

    let id = claimed_job(store, None).await;
    let result = json!({"note\0": ["a\0b"]});
    let rows = [PredictionRow {
        job_id: id.clone(),
        project_id: 1,
        target: Target::Risk,
        model_version: None,
        value: None,
        class: Some("c\0".into()),
        output: Some(json!({"why": "\0"})),
        error: Some("project name \0".into()),
        as_of: None,
    }];
    let success = JobOutcome::Succeeded {
        result: &result,
        predictions: &rows,
    };
    assert!(
        store
            .set_outcome(&id, HOLDER, success)
            .await
            .expect("success")
    );
    let job = store.get_job(&id).await.expect("read").expect("row");
    assert_eq!(job.result, Some(json!({"note\u{FFFD}": ["a\u{FFFD}b"]})));
    let sql = "SELECT error FROM predictions WHERE job_id = $1";
    assert_eq!(
        column(store, sql, &id).await,
        format!("project name {REPLACED}")
    );
    let sql = "SELECT CAST(output AS TEXT) FROM predictions WHERE job_id = $1";
    let output: Value = serde_json::from_str(&column(store, sql, &id).await).expect("json");
    assert_eq!(output, json!({"why": REPLACED}), "{mode:?}");

    let mut m = new_model("learner");
    m.metrics = json!({"feature\0": 1});
    let model = store.insert_model(m).await.expect("model");
    store
        .set_model_stage(
            Target::Risk,
            model.version,
            ModelStage::Rejected,
            Some("gate \0"),
        )
        .await
        .expect("stage");
    let row = store
        .get_model(Target::Risk, model.version)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.stage_reason.as_deref(), Some("gate \u{FFFD}"));
    assert_eq!(row.metrics, json!({"feature\u{FFFD}": 1}));
    let report = DriftReportRow {
        job_id: id.clone(),
        target: Target::Risk,
        model_version: Some(model.version),
        checked_at: Utc::now(),
        drift_score: None,
        drift_detected: false,
        retrain_job_id: None,
        report: json!({"message": "category \0"}),
    };
    store
        .insert_drift_report(&report)
        .await
        .expect("drift report");
    let sql = "SELECT CAST(report AS TEXT) FROM drift_reports WHERE job_id = $1";
    let stored: Value = serde_json::from_str(&column(store, sql, &id).await).expect("json");
    assert_eq!(
        stored["message"],
        format!("category {REPLACED}"),
        "{mode:?}"
    );
}

#[tokio::test]
async fn nul_bytes_in_stored_texts_on_sqlite_and_postgres() {
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = Store::connect(&env.store_url, 2).await.expect("connect");
        store.migrate().await.expect("migrate");
        tokio::time::timeout(
            Duration::from_secs(60),
            nul_bytes_never_fail_a_write(&store, mode),
        )
        .await
        .expect("in time");
        store.close().await;
    }
}
