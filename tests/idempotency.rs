//! `Idempotency-Key` on the POSTs that create a job: the same key and
//! request answer the same job (200, `Idempotent-Replayed: true`), another
//! request with the key is refused (422), concurrent requests with one key
//! create one job, and keys expire. Through the API on Redis + PostgreSQL,
//! and in the store on both databases.

mod common;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use rpa_ml_shared::jobs::{JobPayload, RetrainJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{
    IdempotencyKey, InsertOutcome, KeyedJob, NewJob, RetentionCutoffs, Store,
};

/// A POST with an optional key and a raw body; status, replay header, body.
async fn post(
    env: &TestEnv,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", env.base()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_answers_the_same_job() {
    let mut env = TestEnv::new(Mode::Scale).await;
    // No worker: the jobs stay queued, which is all this needs.
    env.spawn("api", &["api"], &[]);
    env.wait_ready().await;
    let ids = open_projects(&shared_backend(), 2).await;
    let body = json!({"targets": ["risk"], "project_ids": ids}).to_string();
    // The same request written differently: other key order and spacing.
    let same = format!(
        "{{ \"project_ids\" : [{}, {}],  \"targets\": [\"risk\"] }}",
        ids[0], ids[1]
    );

    let (s, replayed, first) = post(&env, "/api/v1/predict", Some("order-4711"), &body).await;
    assert_eq!((s, replayed.as_deref()), (202, None), "{first}");
    let job = first["job_id"].as_str().expect("job id").to_string();
    let (s, replayed, again) = post(&env, "/api/v1/predict", Some("order-4711"), &same).await;
    assert_eq!((s, replayed.as_deref()), (200, Some("true")), "{again}");
    assert_eq!(again["job_id"], job.as_str());
    assert_eq!(again["status_url"], format!("/api/v1/jobs/{job}"));

    // The key with another body or another path: refused, nothing written.
    let other = json!({"targets": ["risk"], "project_ids": [ids[0]]}).to_string();
    for (path, body) in [
        ("/api/v1/predict", other.as_str()),
        ("/api/v1/predict/risk-score", r#"{"project_ids": [1]}"#),
    ] {
        let (s, _, v) = post(&env, path, Some("order-4711"), body).await;
        assert_eq!(s, 422, "{path}: {v}");
        assert_eq!(v["error"]["code"], "idempotency_key_reused", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("order-4711") && m.contains(&job)),
            "{v}"
        );
    }

    // Invalid keys: 400, nothing written.
    let long = "k".repeat(256);
    for bad in [long.as_str(), "", "tab\there", "caf\u{e9}"] {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/v1/predict", env.base()))
            .bearer_auth(KEY)
            .body(body.clone());
        req = match reqwest::header::HeaderValue::from_bytes(bad.as_bytes()) {
            Ok(v) => req.header("Idempotency-Key", v),
            Err(e) => panic!("{bad:?}: {e}"),
        };
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{bad:?}: {v}");
        assert_eq!(v["error"]["code"], "invalid_idempotency_key", "{v}");
    }
    let (s, _, v) = post(&env, "/api/v1/predict", Some(&"k".repeat(255)), &body).await;
    assert_eq!(s, 202, "255 characters are allowed: {v}");

    // Concurrent requests with one new key: one job.
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let (base, body) = (env.base(), body.clone());
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(format!("{base}/api/v1/predict"))
                    .bearer_auth(KEY)
                    .header("Idempotency-Key", "race-1")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let status = r.status().as_u16();
                let v: Value = r.json().await.expect("json");
                (status, v["job_id"].as_str().expect("job id").to_string())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in racers {
        answers.push(r.await.expect("task"));
    }
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 202).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(s, id)| (*s == 202 || *s == 200) && *id == answers[0].1)
    );

    // Every other job-creating POST takes a key too.
    for path in ["/api/v1/models/retrain", "/api/v1/monitoring/drift"] {
        let (s, _, v) = post(&env, path, Some(&format!("k-{path}")), "").await;
        assert_eq!(s, 202, "{path}: {v}");
        let (s, replayed, again) = post(&env, path, Some(&format!("k-{path}")), "{}").await;
        assert_eq!(
            (s, replayed.as_deref()),
            (200, Some("true")),
            "{path}: {again}"
        );
        assert_eq!(again["job_id"], v["job_id"]);
    }
    // Without a key nothing changes: two requests, two jobs.
    let (a, _, _) = post(&env, "/api/v1/predict", None, &body).await;
    let (b, _, _) = post(&env, "/api/v1/predict", None, &body).await;
    assert_eq!((a, b), (202, 202));

    let probe = env.store().await;
    // order-4711, the 255-character key, race-1, retrain, drift, two without a key.
    assert_eq!(probe.count("SELECT COUNT(*) FROM jobs").await, 7);
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM idempotency_keys").await,
        5
    );
}

fn key<'a>(key: &'a str, hash: &'a str) -> IdempotencyKey<'a> {
    IdempotencyKey {
        key,
        request_hash: hash,
        not_before: Utc::now() - Duration::hours(24),
    }
}

async fn keys_in_the_store(store: &Store, mode: Mode) {
    let first = match store
        .insert_job_keyed(common::predict_job(None), &key("k1", "h1"))
        .await
    {
        Ok(Ok(InsertOutcome::Created(job))) => job,
        other => panic!("{mode:?}: {other:?}"),
    };
    match store
        .insert_job_keyed(common::predict_job(None), &key("k1", "h1"))
        .await
    {
        Ok(Err(KeyedJob::Same(job))) => assert_eq!(job.id, first.id),
        other => panic!("{mode:?}: {other:?}"),
    }
    match store
        .insert_job_keyed(common::predict_job(None), &key("k1", "h2"))
        .await
    {
        Ok(Err(KeyedJob::Other(id))) => assert_eq!(id, first.id),
        other => panic!("{mode:?}: {other:?}"),
    }

    // A deduplicated kind: the key answers the active job it collapses onto.
    let retrain = |id: &str| NewJob {
        id: id.to_string(),
        queue_task_id: format!("task-{id}"),
        payload: JobPayload::Retrain(RetrainJob {
            targets: [Target::Risk].into_iter().collect(),
            reason: "test".into(),
            promote_first: false,
        }),
        max_attempts: 3,
        request_id: None,
        callback_url: None,
    };
    let active = match store.insert_job(retrain("01RETRAINACTIVE")).await {
        Ok(InsertOutcome::Created(job)) => job,
        other => panic!("{mode:?}: {other:?}"),
    };
    match store
        .insert_job_keyed(retrain("01RETRAINKEYED"), &key("k2", "h"))
        .await
    {
        Ok(Ok(InsertOutcome::Existing(job))) => assert_eq!(job.id, active.id),
        other => panic!("{mode:?}: {other:?}"),
    }
    match store.keyed_job(&key("k2", "h")).await {
        Ok(Some(KeyedJob::Same(job))) => assert_eq!(job.id, active.id),
        other => panic!("{mode:?}: {other:?}"),
    }

    // Concurrent inserts with one key: one job.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_job_keyed(common::predict_job(None), &key("k3", "h"))
                    .await
                    .expect("insert")
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(InsertOutcome::Created(job)) => created.push(job.id),
            Err(KeyedJob::Same(job)) => seen.push(job.id),
            other => panic!("{mode:?}: {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "{mode:?}: {created:?}");
    assert!(seen.iter().all(|id| *id == created[0]), "{mode:?}");

    // Past its window a key answers nothing and is taken again.
    let later = IdempotencyKey {
        not_before: Utc::now() + Duration::seconds(1),
        ..key("k1", "h2")
    };
    assert!(store.keyed_job(&later).await.expect("read").is_none());
    match store
        .insert_job_keyed(common::predict_job(None), &later)
        .await
    {
        Ok(Ok(InsertOutcome::Created(job))) => assert_ne!(job.id, first.id),
        other => panic!("{mode:?}: {other:?}"),
    }

    // The maintenance pass deletes keys older than their retention.
    let old = Utc::now() - Duration::days(3650);
    let purged = store
        .purge_expired(&RetentionCutoffs {
            finished: old,
            failed: old,
            predictions: old,
            ticks: old,
            workers: old,
            idempotency_keys: Utc::now() + Duration::seconds(1),
        })
        .await
        .expect("purge");
    assert_eq!(purged.idempotency_keys, 3, "{mode:?}");
    assert!(
        store
            .keyed_job(&key("k3", "h"))
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn keys_on_sqlite_and_postgres() {
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = Store::connect(&env.store_url, 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        keys_in_the_store(&store, mode).await;
        store.close().await;
    }
}
