//! A newcomer's first minute: `/ready` says what it waits for until every
//! target has a production model, a prediction sent while the first
//! retrain runs waits for it and succeeds, and `standalone` prints its
//! lines to try only once ready. Without a retrain under way, a prediction
//! for a target without a model fails at once, saying so.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::{Mode, TestEnv, open_projects, shared_backend};

fn standalone_log(env: &TestEnv) -> String {
    std::fs::read_to_string(env.dir.join("standalone.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_sent_before_the_first_models_waits_for_them() {
    let mut env = TestEnv::new(Mode::Embedded).await;
    // Gates no model can pass, so the first models are promoted by the
    // retrain itself (standalone's demo promotion); every job is held
    // 1.5 s after its claim, so the prediction surely arrives first.
    for (k, v) in [
        ("COMPLETION_TIME_MAE_THRESHOLD", "0.000001"),
        ("BUDGET_VARIANCE_MAE_THRESHOLD", "0.000001"),
        ("RISK_SCORE_ACCURACY_THRESHOLD", "1"),
        ("RPA_ML_FAULT_DELAY_MS", "1500"),
    ] {
        env.extra.insert(k.into(), v.into());
    }
    env.spawn_standalone();
    env.wait_ready().await;
    let c = env.client();

    let (s, ready) = c.get("/ready").await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(
        ready["waiting_for"],
        json!(["completion_time", "budget_variance", "risk"]),
        "{ready}"
    );
    assert_eq!(ready["error"]["code"], "no_production_model", "{ready}");
    assert!(
        ready["checks"]["models"]["retrain_job_id"].is_string(),
        "{ready}"
    );
    assert_eq!(ready["checks"]["ml_store"]["ok"], true, "{ready}");
    let (s, deps) = c.get("/ready?models=false").await;
    assert_eq!(s, 200, "{deps}");
    assert!(
        !standalone_log(&env).contains("Try:"),
        "{}",
        standalone_log(&env)
    );

    let ids = open_projects(&shared_backend(), 2).await;
    let id = c
        .predict(&["completion_time", "budget_variance", "risk"], &ids)
        .await;
    let job = c.wait_job(&id, 240).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    // It waited (deferred while the retrain ran), and waiting cost no attempt.
    assert!(
        standalone_log(&env).contains("job deferred"),
        "{}",
        env.dump_logs()
    );
    assert_eq!(job["attempts"], 1, "{job}");
    let preds = job["result"]["predictions"]
        .as_array()
        .expect("predictions");
    assert_eq!(preds.len(), 6, "{job}");
    assert!(preds.iter().all(|p| p["model_version"].is_i64()), "{job}");

    let (s, ready) = c.get("/ready").await;
    assert_eq!(s, 200, "{ready}");
    let (_, models) = c.get("/api/v1/models").await;
    for t in ["completion_time", "budget_variance", "risk"] {
        let versions = models["targets"][t]["versions"]
            .as_array()
            .expect("versions");
        let production = versions
            .iter()
            .find(|v| v["stage"] == "production")
            .expect("production version");
        assert!(
            production["stage_reason"]
                .as_str()
                .is_some_and(|r| r.contains("promoted by `rpa-ml standalone`")),
            "{production}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !standalone_log(&env).contains("Ready. Try:") {
        assert!(Instant::now() < deadline, "{}", standalone_log(&env));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retrain_under_way_a_prediction_fails_at_once() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    let c = env.client();

    let (s, ready) = c.get("/ready").await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(
        ready["waiting_for"].as_array().map(Vec::len),
        Some(3),
        "{ready}"
    );
    assert!(
        ready["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no retrain is queued or running")),
        "{ready}"
    );
    let (s, _) = c.get("/ready?models=false").await;
    assert_eq!(s, 200);
    let (s, bad) = c.get("/ready?models=maybe").await;
    assert_eq!(
        (s, bad["error"]["code"].as_str()),
        (400, Some("validation_error"))
    );

    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;
    let job = c.wait_job(&id, 30).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("no model has been trained yet")),
        "{job}"
    );

    env.train().await;
    let (s, ready) = c.get("/ready").await;
    assert_eq!(s, 200, "{ready}");
    assert!(
        ready["checks"]["models"]["production"]["risk"].is_i64(),
        "{ready}"
    );
}
