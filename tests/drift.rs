//! Drift monitoring end to end: a stable backend is not called drift, a
//! backend whose recent projects come from a shifted population is (and a
//! retrain is enqueued), monitoring can be switched off, and the endpoints
//! answer with their documented shapes and errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Mode, TestEnv, bin};
use rpa_ml_shared::store::ModelDocument;
use serde_json::{Value, json};

/// A fresh demo backend "as of" today (the drift window ends now).
fn backend(name: &str, shift: Option<f64>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rpa_ml_drift_{name}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("backend.sqlite");
    let mut cmd = Command::new(bin());
    cmd.args(["demo-data", "--projects", "2500", "--seed", "21", "--out"])
        .arg(&path);
    if let Some(s) = shift {
        cmd.args(["--shift", &s.to_string()]);
    }
    let out = cmd.output().expect("run demo-data");
    assert!(
        out.status.success(),
        "demo-data failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

async fn start(env: &mut TestEnv) {
    // Projects started in the last 60 days: about a hundred of the demo's
    // 2,500 (the shifted population is the last 90 days' starts).
    env.extra
        .entry("DRIFT_DETECTION_WINDOW".into())
        .or_insert_with(|| "60".into());
    // One after the other: two processes migrating one SQLite store at
    // once can collide.
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    env.spawn("worker", &["worker"], &[]);
}

/// Runs a drift check through the API and returns the finished job.
async fn check(env: &TestEnv) -> Value {
    let c = env.client();
    let (status, body) = c.post("/api/v1/monitoring/drift", json!({})).await;
    assert!(status == 202 || status == 200, "{status} {body}");
    assert_eq!(body["kind"], "drift", "{body}");
    let job = c
        .wait_job(body["job_id"].as_str().expect("job id"), 120)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    println!(
        "drift job: started {} finished {}",
        job["started_at"], job["finished_at"]
    );
    job
}

async fn fetch_reports(env: &TestEnv) -> Vec<Value> {
    let (status, body) = env.client().get("/api/v1/monitoring/drift").await;
    assert_eq!(status, 200, "{body}");
    body["reports"].as_array().cloned().expect("reports")
}

fn summary(r: &Value) -> String {
    format!(
        "{}: score {} detected {} window {} drifted {} prediction psi/js {} p {} status {} ref {} win {}",
        r["target"],
        r["drift_score"],
        r["drift_detected"],
        r["window"]["projects"],
        r["drifted_features"],
        r["prediction_drift"]["score"],
        r["prediction_drift"]["p_value"],
        r["status"],
        r["prediction_drift"]["reference"],
        r["prediction_drift"]["window"],
    )
}

/// (project id, actual completion days) of a few completed projects.
async fn completed_projects(backend: &Path, n: i64) -> Vec<(i64, f64)> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", backend.display()))
        .await
        .expect("backend");
    let rows: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT id, julianday(actual_end_date) - julianday(start_date) FROM projects \
         WHERE status = 'completed' AND start_date IS NOT NULL AND actual_end_date > start_date \
         AND actual_end_date < '2099-01-01' ORDER BY id LIMIT $1",
    )
    .bind(n)
    .fetch_all(&pool)
    .await
    .expect("completed projects");
    rows
}

async fn exec(env: &TestEnv, sql: &str) {
    let probe = env.store().await;
    match &probe.store {
        rpa_ml_shared::store::Store::Postgres(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(p)
                .await
                .expect("exec");
        }
        rpa_ml_shared::store::Store::Sqlite(p) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(p)
                .await
                .expect("exec");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_backend_is_not_called_drift_and_the_endpoints_keep_their_shapes() {
    let mut env = TestEnv::new(Mode::Scale).await;
    let path = backend("stable", None);
    env.backend_url = format!("sqlite://{}", path.display());
    start(&mut env).await;
    env.train().await;
    let c = env.client();

    // Realised performance: stored predictions of the production model made
    // before three projects closed, against their actual durations.
    let (_, models) = c.get("/api/v1/models").await;
    let version = models["targets"]["completion_time"]["production_version"]
        .as_i64()
        .expect("production completion_time model");
    let closed = completed_projects(&path, 3).await;
    assert_eq!(closed.len(), 3);
    for (id, _) in &closed {
        exec(
            &env,
            &format!(
                "INSERT INTO predictions (job_id, project_id, target, model_version, value, created_at) \
                 VALUES ('seeded', {id}, 'completion_time', {version}, 100.0, '2000-01-01T00:00:00Z')"
            ),
        )
        .await;
    }

    let job = check(&env).await;
    assert_eq!(job["result"]["enabled"], true, "{job}");
    let reports = fetch_reports(&env).await;
    assert_eq!(reports.len(), 3, "{reports:?}");
    for r in &reports {
        println!("stable {}", summary(r));
        assert_eq!(r["status"], "checked", "{}", summary(r));
        assert_eq!(r["drift_detected"], false, "{}", summary(r));
        assert!(r["retrain_job_id"].is_null());
        let score = r["drift_score"].as_f64().expect("score");
        assert!(score < 0.3, "{}", summary(r));
        let features = r["features"].as_array().expect("features");
        assert_eq!(features.len(), 66);
        for f in features {
            for key in ["name", "method", "score", "drifted"] {
                assert!(!f[key].is_null(), "{f}");
            }
        }
        let realised = &r["realised"];
        for key in ["projects", "metric", "value", "holdout", "pairs"] {
            assert!(realised.get(key).is_some(), "{realised}");
        }
    }
    let ct = reports
        .iter()
        .find(|r| r["target"] == "completion_time")
        .expect("completion_time report");
    let realised = &ct["realised"];
    assert_eq!(realised["projects"], 3, "{realised}");
    assert_eq!(realised["metric"], "mae");
    let want = closed.iter().map(|(_, d)| (100.0 - d).abs()).sum::<f64>() / 3.0;
    let got = realised["value"].as_f64().expect("realised mae");
    assert!((got - want).abs() < 1e-6, "mae {got} != {want}");
    assert!(realised["holdout"].as_f64().is_some());
    let pairs = realised["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 3);
    assert!(pairs.iter().all(|p| p["predicted"] == 100.0));
    // No retrain was asked for.
    let probe = env.store().await;
    assert_eq!(
        probe
            .count("SELECT COUNT(*) FROM jobs WHERE kind = 'retrain'")
            .await,
        1,
        "only the initial training"
    );

    // History, filter and errors.
    let second = check(&env).await;
    assert_ne!(second["job_id"], job["job_id"]);
    let (status, body) = c
        .get("/api/v1/monitoring/drift?target=risk&history=5")
        .await;
    assert_eq!(status, 200, "{body}");
    let hist = body["reports"].as_array().expect("reports");
    assert_eq!(hist.len(), 2);
    assert!(hist.iter().all(|r| r["target"] == "risk"));
    assert!(hist[0]["checked_at"].as_str() >= hist[1]["checked_at"].as_str());
    for bad in [
        "/api/v1/monitoring/drift?history=0",
        "/api/v1/monitoring/drift?history=abc",
        "/api/v1/monitoring/drift?history=1000",
        "/api/v1/monitoring/drift?target=speed",
        "/api/v1/monitoring/drift?colour=red",
    ] {
        let (status, body) = c.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "validation_error", "{bad}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let anonymous = reqwest::get(format!("{}/api/v1/monitoring/drift", env.base()))
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);

    // Metrics: hold-out next to realised, thresholds, prediction counts.
    let (status, metrics) = c.get("/api/v1/monitoring/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let models = metrics["models"].as_array().expect("models");
    assert_eq!(models.len(), 3);
    let m = models
        .iter()
        .find(|m| m["target"] == "completion_time")
        .expect("completion_time");
    assert_eq!(m["production_version"], version);
    assert!(m["holdout"]["value"].as_f64().is_some(), "{m}");
    assert_eq!(m["realised"]["projects"], 3, "{m}");
    assert!(m["realised"].get("pairs").is_none(), "{m}");
    assert_eq!(m["thresholds"]["retraining_threshold"], 0.3);
    assert_eq!(m["predictions"]["production_version"], 3, "{m}");
    assert_eq!(m["drift"]["drift_detected"], false);

    // The registry shows the reference recorded with the version.
    let (status, v) = c
        .get(&format!(
            "/api/v1/models/completion_time/versions/{version}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["drift_reference"]["features"], 66, "{v}");
    assert!(
        v["drift_reference"]["rows"].as_u64().unwrap_or(0) > 100,
        "{v}"
    );

    // A model fitted before references existed gets a message, not a crash.
    exec(
        &env,
        "UPDATE models SET reference = NULL WHERE target = 'risk'",
    )
    .await;
    check(&env).await;
    let (_, body) = c.get("/api/v1/monitoring/drift?target=risk").await;
    let r = &body["reports"][0];
    assert_eq!(r["status"], "no_reference", "{r}");
    assert!(r["drift_score"].is_null());
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("before training references")),
        "{r}"
    );
    assert_eq!(r["drift_detected"], false);

    // A reference of format 1 (closed projects only, which cried wolf on
    // stable backends) is reported as missing, not compared with.
    let probe = env.store().await;
    let (target, v) = (
        rpa_ml_shared::ml::Target::CompletionTime,
        i32::try_from(version).expect("version"),
    );
    let mut old = probe
        .store
        .model_document(target, v, ModelDocument::DriftReference)
        .await
        .expect("read the reference")
        .expect("a reference");
    assert_eq!(old["version"], 2, "this build writes format 2");
    old["version"] = json!(1);
    probe
        .store
        .set_model_document(target, v, ModelDocument::DriftReference, &old)
        .await
        .expect("write the reference");
    check(&env).await;
    let (_, body) = c
        .get("/api/v1/monitoring/drift?target=completion_time")
        .await;
    let r = &body["reports"][0];
    assert_eq!(r["status"], "no_reference", "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("format 1") && m.contains("retrain")),
        "{r}"
    );
    assert_eq!(r["drift_detected"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_population_is_called_drift_on_the_shifted_features_and_enqueues_a_retrain() {
    let mut env = TestEnv::new(Mode::Scale).await;
    let path = backend("shifted", Some(1.0));
    env.backend_url = format!("sqlite://{}", path.display());
    start(&mut env).await;
    env.train().await;
    let c = env.client();

    let job = check(&env).await;
    let reports = fetch_reports(&env).await;
    for r in &reports {
        println!("shifted {}", summary(r));
    }
    let detected: Vec<&Value> = reports
        .iter()
        .filter(|r| r["drift_detected"] == true)
        .collect();
    assert!(!detected.is_empty(), "{:?}", job["result"]);
    let shifted = ["complexity", "process_count", "systems_integrated"];
    for r in &detected {
        assert!(r["drift_score"].as_f64().expect("score") > 0.3);
        let named: Vec<&str> = r["drifted_features"]
            .as_array()
            .expect("drifted features")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            shifted.iter().all(|s| named.contains(s)),
            "{}: {named:?}",
            r["target"]
        );
        let features = r["features"].as_array().expect("features");
        for s in shifted {
            let f = features
                .iter()
                .find(|f| f["name"] == s)
                .expect("feature listed");
            assert_eq!(f["drifted"], true, "{f}");
        }
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("retrain job")),
            "{r}"
        );
        // The retrain exists and covers this target.
        let id = r["retrain_job_id"].as_str().expect("retrain job id");
        let (status, retrain) = c.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{retrain}");
        assert_eq!(retrain["kind"], "retrain");
    }
    // One retrain for all drifted targets, not one per target or per check.
    let ids: std::collections::BTreeSet<&str> = detected
        .iter()
        .filter_map(|r| r["retrain_job_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let probe = env.store().await;
    assert_eq!(
        probe
            .count("SELECT COUNT(*) FROM jobs WHERE kind = 'retrain'")
            .await,
        2,
        "the initial training and one drift retrain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_off_is_a_no_op_and_targets_without_models_say_so() {
    // Embedded mode: SQLite queue and store.
    let mut env = TestEnv::new(Mode::Embedded).await;
    start(&mut env).await;
    let job = check(&env).await;
    let reports = fetch_reports(&env).await;
    assert_eq!(reports.len(), 3, "{job}");
    for r in &reports {
        assert_eq!(r["status"], "no_production_model", "{r}");
        assert!(r["drift_score"].is_null());
        assert_eq!(r["drift_detected"], false);
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("no production model"))
        );
    }
    // With models and stored predictions on SQLite: the shared backend
    // ends on 2026-11-01, so hardly any project started in the last 60
    // days and the report says there is too little to judge.
    env.train().await;
    let ids = common::open_projects(&common::shared_backend(), 2).await;
    let c = env.client();
    let id = c.predict(&["risk"], &ids).await;
    assert_eq!(c.wait_job(&id, 60).await["status"], "succeeded");
    check(&env).await;
    for r in fetch_reports(&env).await {
        assert_eq!(r["status"], "insufficient_data", "{}", summary(&r));
        assert_eq!(r["drift_detected"], false);
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("at least 20")),
            "{r}"
        );
        assert_eq!(r["features"].as_array().map(Vec::len), Some(66));
    }
    let (status, metrics) = c.get("/api/v1/monitoring/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let risk = metrics["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["target"] == "risk"))
        .expect("risk")
        .clone();
    assert_eq!(risk["predictions"]["production_version"], 2, "{risk}");
    assert!(risk["predictions"]["last_at"].is_string(), "{risk}");
    drop(env);

    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra
        .insert("ENABLE_MODEL_MONITORING".into(), "false".into());
    start(&mut env).await;
    let job = check(&env).await;
    assert_eq!(job["result"]["enabled"], false, "{job}");
    assert!(
        job["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disabled")),
        "{job}"
    );
    assert!(fetch_reports(&env).await.is_empty());
    let (status, metrics) = env.client().get("/api/v1/monitoring/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metrics["monitoring_enabled"], false);
}
