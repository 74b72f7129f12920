//! Scheduled batch scoring and the latest-forecast reads, against the real
//! stores (Redis + PostgreSQL, and the embedded SQLite ones): a scoring run enqueued by the scheduler
//! covers every open project for every target, both read routes answer for
//! all of them, staleness shows, and bad input gets its error code.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Api, Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

const TARGETS: [&str; 3] = ["completion_time", "budget_variance", "risk"];

/// Waits for a succeeded score job whose reason starts with `reason`.
async fn wait_score_job(c: &Api, reason: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, body) = c.get("/api/v1/jobs?kind=score&limit=50").await;
        assert_eq!(status, 200, "{body}");
        let found = body["jobs"].as_array().into_iter().flatten().find(|j| {
            j["status"] == "succeeded"
                && j["request"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(reason))
        });
        if let Some(j) = found {
            let id = j["job_id"].as_str().expect("id");
            return c.get(&format!("/api/v1/jobs/{id}")).await.1;
        }
        assert!(
            Instant::now() < deadline,
            "no succeeded score job with reason {reason:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_no_active_score(c: &Api) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = c.get("/api/v1/scoring").await;
        assert_eq!(status, 200, "{body}");
        if body["active"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "scoring still active: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn csv(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_scoring_covers_every_open_project_on_redis_and_postgres() {
    scheduled_scoring_and_reads(Mode::Scale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_scoring_covers_every_open_project_on_the_embedded_stores() {
    scheduled_scoring_and_reads(Mode::Embedded).await;
}

/// A scheduled run covers every open project and target, the reads answer
/// for all of them, a predict job refreshes a forecast, staleness shows,
/// bad input gets its error code, and the ops view and /metrics report it.
async fn scheduled_scoring_and_reads(mode: Mode) {
    let mut env = TestEnv::new(mode).await;
    // A tick every 4 s, so the test sees a scheduled run.
    env.extra
        .insert("SCORE_CRON".into(), "*/4 * * * * *".into());
    env.api_with_models().await;
    env.spawn(
        "worker",
        &["worker", "--queues", "predict", "--concurrency", "2"],
        &[],
    );
    let scheduler = env.spawn("scheduler", &["scheduler"], &[]);
    let c = env.client();

    // The promotions of the first models enqueued a run too.
    let (_, jobs) = c.get("/api/v1/jobs?kind=score&limit=50").await;
    assert!(
        jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|j| j["request"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("promoted"))),
        "a score job after the promotions: {jobs}"
    );

    let job = wait_score_job(&c, "scheduler", 90).await;
    // No more ticks: what follows reads a settled store.
    env.kill9(scheduler);
    wait_no_active_score(&c).await;
    assert_eq!(job["queue"], "predict_low", "{job}");
    assert_eq!(job["priority"], "low", "{job}");
    assert!(
        job["result"].get("predictions").is_none(),
        "no per-project list in the result"
    );

    // Open as the service reads the backend (a status, or no end date).
    let backend = rpa_ml_shared::backend::BackendDb::connect(&env.backend_url, 2)
        .await
        .expect("backend");
    let open = backend.open_project_ids().await.expect("open projects");
    assert!(open.len() > 10, "the demo backend has open projects");
    assert!(
        open_projects(&shared_backend(), 5)
            .await
            .iter()
            .all(|id| open.contains(id))
    );
    let result = &job["result"];
    assert_eq!(result["summary"]["projects"], open.len(), "{result}");
    for t in TARGETS {
        let r = &result["targets"][t];
        let scored = r["scored"].as_u64().expect("scored");
        let errors = r["errors"].as_u64().expect("errors");
        assert_eq!(
            scored + errors,
            open.len() as u64,
            "{t}: every open project: {r}"
        );
        assert!(scored > 0, "{t}: {r}");
    }
    assert!(
        result["coverage"].as_f64().is_some_and(|c| c > 0.5),
        "{result}"
    );

    // The page read: every open project, every target, in pages of 500.
    let mut answered = 0usize;
    for t in TARGETS {
        let mut found = BTreeSet::new();
        let mut not_scored = BTreeSet::new();
        for page in open.chunks(500) {
            let (status, body) = c
                .get(&format!("/api/v1/predictions?target={t}&ids={}", csv(page)))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["unknown_ids"], json!([]), "{body}");
            for p in body["predictions"].as_array().expect("predictions") {
                assert_eq!(p["target"], t);
                assert_eq!(p["stale"], false, "fresh: {p}");
                assert_eq!(p["model_version"], p["production_version"], "{p}");
                assert!(p["age_seconds"].as_f64().is_some(), "{p}");
                found.insert(p["project_id"].as_i64().expect("id"));
            }
            for id in body["not_scored_ids"].as_array().expect("not scored") {
                not_scored.insert(id.as_i64().expect("id"));
            }
        }
        assert_eq!(
            found.len() as u64,
            result["targets"][t]["scored"].as_u64().expect("scored"),
            "{t}: one kept forecast per answered project"
        );
        assert_eq!(found.len() + not_scored.len(), open.len(), "{t}");
        answered += found.len();
    }
    let kept = env
        .store()
        .await
        .count("SELECT COUNT(*) FROM latest_predictions")
        .await;
    assert_eq!(kept as usize, answered, "one row per (project, target)");

    // The project read, for every open project.
    for &id in &open {
        let (status, body) = c.get(&format!("/api/v1/projects/{id}/predictions")).await;
        assert_eq!(status, 200, "{body}");
        let n = body["predictions"].as_array().expect("predictions").len();
        let missing = body["missing"].as_array().expect("missing").len();
        assert_eq!(n + missing, TARGETS.len(), "{body}");
        assert!(n >= 1, "project {id} has a forecast: {body}");
        for p in body["predictions"].as_array().expect("predictions") {
            assert_eq!(p["project_id"], id);
            assert!(p["as_of"].as_str().is_some(), "{p}");
        }
    }

    // Ordinary predict jobs refresh the kept forecast too; a high one says so.
    let id = open[0];
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": [id], "priority": "high"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let pid = body["job_id"].as_str().expect("job id").to_string();
    let done = c.wait_job(&pid, 30).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["priority"], "high", "{done}");
    assert_eq!(done["queue"], "predict_high", "{done}");
    let (_, body) = c
        .get(&format!("/api/v1/predictions?target=risk&ids={id}"))
        .await;
    assert_eq!(body["predictions"][0]["job_id"], pid.as_str(), "{body}");

    // Staleness: older than SCORE_MAX_AGE, and made by another version
    // than the production one.
    let probe = env.store().await;
    let (old, other) = (open[1], open[2]);
    let back = match env.mode {
        Mode::Scale => "as_of - INTERVAL '3 days'",
        Mode::Embedded => "strftime('%Y-%m-%dT%H:%M:%fZ', as_of, '-3 days')",
    };
    assert_eq!(
        probe
            .exec(&format!(
                "UPDATE latest_predictions SET as_of = {back} WHERE project_id = {old} AND target = 'risk'"
            ))
            .await,
        1
    );
    assert_eq!(
        probe
            .exec(&format!(
                "UPDATE latest_predictions SET model_version = model_version + 100 WHERE project_id = {other} AND target = 'risk'"
            ))
            .await,
        1
    );
    let (_, body) = c
        .get(&format!(
            "/api/v1/predictions?target=risk&ids={old},{other},{id}"
        ))
        .await;
    let preds = body["predictions"].as_array().expect("predictions");
    assert_eq!(preds[0]["stale"], true, "{body}");
    assert_eq!(preds[0]["stale_reasons"], json!(["too_old"]), "{body}");
    assert_eq!(preds[1]["stale"], true, "{body}");
    assert_eq!(preds[1]["stale_reasons"], json!(["newer_model"]), "{body}");
    assert_eq!(preds[2]["stale"], false, "{body}");
    assert_eq!(body["summary"]["stale"], 2, "{body}");
    let (_, body) = c.get(&format!("/api/v1/projects/{old}/predictions")).await;
    let risk = body["predictions"]
        .as_array()
        .expect("predictions")
        .iter()
        .find(|p| p["target"] == "risk")
        .expect("risk");
    assert_eq!(risk["stale"], true, "{body}");

    // Bad input: status, code and a message naming the problem.
    let unknown = 987_654_321i64;
    for (path, status, code, says) in [
        (
            "/api/v1/projects/abc/predictions".to_string(),
            400,
            "validation_error",
            "abc",
        ),
        (
            "/api/v1/projects/0/predictions".to_string(),
            400,
            "validation_error",
            "positive",
        ),
        (
            format!("/api/v1/projects/{unknown}/predictions"),
            404,
            "project_not_found",
            "987654321",
        ),
        (
            "/api/v1/predictions?ids=1".to_string(),
            400,
            "validation_error",
            "target",
        ),
        (
            "/api/v1/predictions?target=risk".to_string(),
            400,
            "validation_error",
            "ids",
        ),
        (
            "/api/v1/predictions?target=nope&ids=1".to_string(),
            400,
            "unknown_target",
            "nope",
        ),
        (
            "/api/v1/predictions?target=risk&ids=1,x".to_string(),
            400,
            "validation_error",
            "item 2",
        ),
        (
            "/api/v1/predictions?target=risk&ids=".to_string(),
            400,
            "validation_error",
            "empty",
        ),
        (
            "/api/v1/predictions?target=risk&ids=1&page=2".to_string(),
            400,
            "validation_error",
            "page",
        ),
    ] {
        let (got, body) = c.get(&path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(error_code(&body), code, "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{path}: {msg}");
    }
    let many: Vec<i64> = (1..=501).collect();
    let (got, body) = c
        .get(&format!(
            "/api/v1/predictions?target=risk&ids={}",
            csv(&many)
        ))
        .await;
    assert_eq!(got, 422, "{body}");
    assert_eq!(error_code(&body), "too_many_ids", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("500"),
        "{body}"
    );
    // Unknown ids are listed, not an error.
    let (got, body) = c
        .get(&format!(
            "/api/v1/predictions?target=risk&ids={id},{unknown}"
        ))
        .await;
    assert_eq!(got, 200, "{body}");
    assert_eq!(body["unknown_ids"], json!([unknown]), "{body}");
    assert_eq!(
        body["predictions"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    // An unknown priority is refused before anything is queued.
    let (got, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": [id], "priority": "urgent"}),
        )
        .await;
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("priority"),
        "{body}"
    );

    // The ops view and /metrics report the scoring runs.
    let (_, scoring) = c.get("/api/v1/scoring").await;
    assert_eq!(scoring["last_success"]["status"], "succeeded", "{scoring}");
    assert!(
        scoring["last_success"]["coverage"].as_f64().is_some(),
        "{scoring}"
    );
    let metrics = c
        .http
        .get(format!("{}/metrics", env.base()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("rpa_ml_forecast_oldest_age_seconds{target=\"risk\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rpa_ml_score_coverage_ratio{target=\"risk\"}"),
        "{metrics}"
    );
}
