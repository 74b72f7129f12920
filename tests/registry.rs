//! The model registry against the real stores: gates, promotion by hand,
//! rollback, retention, and a corrupt artifact.

mod common;

use common::{Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

async fn retrain(env: &TestEnv, targets: &[&str]) -> Value {
    let c = env.client();
    let (status, body) = c
        .post("/api/v1/models/retrain", json!({"targets": targets}))
        .await;
    assert!(status == 202 || status == 200, "{body}");
    let job = c.wait_job(body["job_id"].as_str().expect("id"), 120).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    job
}

async fn versions(env: &TestEnv, target: &str) -> Vec<Value> {
    let (_, models) = env.client().get("/api/v1/models").await;
    models["targets"][target]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_misses_its_gate_is_rejected_and_can_be_promoted_by_hand() {
    let mut env = TestEnv::new(Mode::Scale).await;
    // A gate no model can pass.
    env.extra
        .insert("COMPLETION_TIME_MAE_THRESHOLD".into(), "0.001".into());
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    let job = retrain(&env, &["completion_time"]).await;
    assert_eq!(
        job["result"]["targets"]["completion_time"]["stage"], "rejected",
        "{job}"
    );

    let c = env.client();
    let (_, models) = c.get("/api/v1/models").await;
    assert!(models["targets"]["completion_time"]["production_version"].is_null());
    let v = &versions(&env, "completion_time").await[0];
    assert_eq!(v["stage"], "rejected");
    assert!(
        v["stage_reason"]
            .as_str()
            .is_some_and(|r| r.contains("threshold")),
        "{v}"
    );
    for key in ["holdout", "baseline", "threshold", "passed"] {
        assert!(!v["metrics"][key].is_null(), "metric {key} reported: {v}");
    }

    // Predictions say why they cannot be made.
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["completion_time"], &ids).await;
    let failed = c.wait_job(&id, 30).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("no production model for completion_time")),
        "{failed}"
    );

    // The operator decides, with the evidence shown.
    let (s, body) = c
        .post(
            "/api/v1/models/completion_time/promote",
            json!({"version": 1, "reason": "accepted for now"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, one) = c.get("/api/v1/models/completion_time/versions/1").await;
    assert_eq!(s, 200);
    assert_eq!(one["stage"], "production");
    assert!(
        one["stage_reason"]
            .as_str()
            .is_some_and(|r| r.contains("accepted for now"))
    );
    let id = c.predict(&["completion_time"], &ids).await;
    assert_eq!(c.wait_job(&id, 30).await["status"], "succeeded");

    let (s, v) = c.get("/api/v1/models/eta/versions/1").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = c.get("/api/v1/models/risk/versions/99").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_retention_and_a_corrupt_artifact() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("MODEL_RETENTION".into(), "2".into());
    env.spawn("api", &["api"], &[]);
    let first_worker = env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    let c = env.client();
    // Three fits of the same data: the first is production, the next two
    // are no worse, so each replaces the one before.
    for _ in 0..3 {
        retrain(&env, &["risk"]).await;
    }
    let vs = versions(&env, "risk").await;
    let numbers: Vec<i64> = vs.iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(
        numbers,
        vec![3, 2],
        "MODEL_RETENTION=2 keeps the newest two: {vs:?}"
    );
    assert_eq!(vs[0]["stage"], "production");
    assert_eq!(vs[1]["stage"], "archived");

    // Rollback: v2 comes back.
    let (s, body) = c.post("/api/v1/models/risk/rollback", json!({})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["production_version"], 2);

    // Corrupt v2's artifact: predictions fall back to the newest good
    // version (v3, archived by the rollback) instead of failing.
    let v2 = &versions(&env, "risk").await[1];
    assert_eq!(v2["version"], 2);
    let path = v2["artifact_path"].as_str().expect("artifact path");
    let mut bytes = std::fs::read(path).expect("artifact");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, &bytes).expect("corrupt");
    // …and its copy in the ML store, which would otherwise heal the file.
    let sha = v2["artifact_sha256"].as_str().expect("artifact sha256");
    let probe = env.store().await;
    let rpa_ml_shared::store::Store::Postgres(pool) = &probe.store else {
        panic!("scale mode stores in PostgreSQL")
    };
    let changed = sqlx::query("UPDATE model_artifacts SET content = $1 WHERE sha256 = $2")
        .bind(&bytes)
        .bind(sha)
        .execute(pool)
        .await
        .expect("corrupt the stored copy")
        .rows_affected();
    assert_eq!(changed, 1, "v2's artifact is in the ML store");
    // Retention removed v1's stored artifact with its row.
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM model_artifacts").await,
        probe
            .count("SELECT COUNT(DISTINCT LOWER(artifact_sha256)) FROM models")
            .await
    );
    // A worker that verified an artifact keeps it in memory; a fresh one
    // must read the corrupt file.
    env.kill9(first_worker);
    env.spawn("worker2", &["worker", "--queues", "predict"], &[]);
    let ids = open_projects(&shared_backend(), 2).await;
    for _ in 0..4 {
        let id = c.predict(&["risk"], &ids).await;
        let job = c.wait_job(&id, 30).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let m = &job["result"]["models"]["risk"];
        assert_ne!(m["version"], 2, "the corrupt version never answers: {job}");
        assert_eq!(
            m["fallback_from"], 2,
            "the answer says it is a fallback: {job}"
        );
    }
    // Nothing to roll back to twice in a row beyond what exists.
    let (s, _) = c.post("/api/v1/models/eta/rollback", json!({})).await;
    assert_eq!(s, 404);
}
