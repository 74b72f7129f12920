//! A messy backend seen through the job path: a project without a positive
//! budget gets an explicit per-project error for budget variance and is not
//! counted as predicted.

mod common;

use serde_json::json;

use common::{Mode, TestEnv, shared_backend};

/// Open projects of the shared backend with and without a positive budget.
async fn open_by_budget() -> (Vec<i64>, Vec<i64>) {
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", shared_backend().display()))
            .await
            .expect("backend");
    let pick = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_all(&pool)
                .await
                .expect("projects")
        }
    };
    let with = pick(
        "SELECT id FROM projects WHERE LOWER(TRIM(status)) IN ('active', 'planned') \
         AND budget > 0 ORDER BY id LIMIT 3",
    )
    .await;
    let without = pick(
        "SELECT id FROM projects WHERE LOWER(TRIM(status)) IN ('active', 'planned', 'on_hold') \
         AND (budget IS NULL OR budget <= 0) ORDER BY id LIMIT 3",
    )
    .await;
    (with, without)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_variance_without_a_budget_is_an_error_not_a_prediction() {
    let (with, without) = open_by_budget().await;
    assert!(
        !with.is_empty() && !without.is_empty(),
        "{with:?} {without:?}"
    );
    let mut env = TestEnv::new(Mode::Scale).await;
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    env.train().await;
    let c = env.client();

    let ids: Vec<i64> = with.iter().chain(&without).copied().collect();
    let id = c.predict(&["budget_variance"], &ids).await;
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let result = &job["result"];
    assert_eq!(
        result["summary"],
        json!({"projects": ids.len(), "predicted": with.len(), "errors": without.len()}),
        "{result}"
    );
    for entry in result["predictions"].as_array().expect("predictions") {
        let pid = entry["project_id"].as_i64().expect("project id");
        if without.contains(&pid) {
            assert_eq!(entry["error_code"], "no_budget", "{entry}");
            assert!(
                entry["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("no positive budget")),
                "{entry}"
            );
            assert!(entry.get("value").is_none(), "{entry}");
        } else {
            assert!(entry["value"].is_number(), "{entry}");
            assert!(entry.get("error").is_none(), "{entry}");
        }
    }
    // The stored rows say the same.
    let probe = env.store().await;
    assert_eq!(
        probe
            .count("SELECT COUNT(*) FROM predictions WHERE error LIKE '%no positive budget%'")
            .await,
        without.len() as i64
    );
}
