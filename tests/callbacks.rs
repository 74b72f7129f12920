//! Push when done, on Redis + PostgreSQL and on the embedded SQLite store,
//! with real processes: signed callbacks to a receiver served by this test
//! on 127.0.0.1 (exactly one per finished job, retried through failures),
//! refused hosts, and the job event stream.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use rpa_ml_shared::callback;

const SECRET: &str = "callback-secret-for-tests";

#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    timestamp: String,
    signature: String,
    delivery: String,
    attempt: String,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    /// `/flaky` answers 500 while this is above zero.
    failures_left: Arc<AtomicUsize>,
}

impl Receiver {
    fn for_path(&self, path: &str) -> Vec<Delivery> {
        let got = self.got.lock().expect("lock");
        got.iter().filter(|d| d.path == path).cloned().collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().expect("lock").push(Delivery {
        path: path.clone(),
        timestamp: header(callback::TIMESTAMP_HEADER),
        signature: header(callback::SIGNATURE_HEADER),
        delivery: header(callback::DELIVERY_HEADER),
        attempt: header(callback::ATTEMPT_HEADER),
        body,
    });
    if path == "flaky"
        && r.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

/// A receiver on 127.0.0.1 and its port.
async fn start_receiver() -> (Receiver, u16) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/{path}", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (receiver, port)
}

/// Checks a delivery as a receiver would: the signature over the raw body,
/// the timestamp within the replay window. Returns the body.
fn verified(d: &Delivery) -> Value {
    let ts: i64 = d.timestamp.parse().expect("timestamp header");
    let now = chrono::Utc::now().timestamp();
    assert!(
        callback::verify(SECRET.as_bytes(), ts, &d.body, &d.signature, now),
        "bad signature: {d:?}"
    );
    assert!(
        !callback::verify(b"another secret", ts, &d.body, &d.signature, now),
        "a signature must depend on the secret"
    );
    assert!(!d.delivery.is_empty(), "delivery id: {d:?}");
    serde_json::from_slice(&d.body).expect("JSON body")
}

/// Waits until `path` has received `n` deliveries (or the deadline).
async fn wait_for(r: &Receiver, path: &str, n: usize, secs: u64) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = r.for_path(path);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the job until its callback is no longer pending.
async fn settled_callback(c: &common::Api, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        if job["callback"]["state"] != "pending" || Instant::now() > deadline {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn predict_with_callback(c: &common::Api, ids: &[i64], url: &str) -> String {
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": ids, "callback_url": url}),
        )
        .await;
    assert_eq!(status, 202, "predict with a callback: {body}");
    body["job_id"].as_str().expect("job_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_and_event_streams_on_redis_and_postgres() {
    callbacks_and_event_streams(Mode::Scale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_and_event_streams_on_the_embedded_store() {
    callbacks_and_event_streams(Mode::Embedded).await;
}

async fn callbacks_and_event_streams(mode: Mode) {
    let (receiver, port) = start_receiver().await;
    let mut env = TestEnv::new(mode).await;
    for (k, v) in [
        ("CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
        ("CALLBACK_SECRET", SECRET),
        ("CALLBACK_BACKOFF_MS", "200"),
        ("CALLBACK_MAX_ATTEMPTS", "5"),
        ("CALLBACK_TIMEOUT_SECS", "5"),
        ("EVENTS_MAX_STREAMS", "2"),
    ] {
        env.extra.insert(k.into(), v.into());
    }
    env.spawn("api", &["api"], &[]);
    let worker_a = env.spawn("worker-a", &["worker", "--concurrency", "2"], &[]);
    // Two workers: the outbox lease must keep them from both delivering.
    let worker_b = env.spawn("worker-b", &["worker", "--concurrency", "2"], &[]);
    env.wait_ready().await;
    env.train().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 3).await;

    // Refused before anything is written: another host, another scheme.
    for bad in [
        "http://example.com/hook",
        "ftp://127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
    ] {
        let (status, body) = c
            .post(
                "/api/v1/predict",
                json!({"targets": ["risk"], "project_ids": ids, "callback_url": bad}),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "callback_not_allowed", "{body}");
    }
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": ids, "callback_url": "http://example.com/hook"}),
        )
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("example.com") && m.contains("CALLBACK_ALLOWED_HOSTS")),
        "{status} {body}"
    );
    assert_eq!(
        env.store()
            .await
            .count("SELECT COUNT(*) FROM job_callbacks")
            .await,
        0
    );

    // Exactly one signed POST per finished job.
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(predict_with_callback(&c, &ids, &format!("http://127.0.0.1:{port}/ok")).await);
    }
    let got = wait_for(&receiver, "ok", jobs.len(), 60).await;
    assert_eq!(got.len(), jobs.len(), "{got:?}\n{}", env.dump_logs());
    // Time for a duplicate to show up, were there one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.for_path("ok");
    assert_eq!(got.len(), jobs.len(), "one delivery per job: {got:?}");
    for id in &jobs {
        let d = got
            .iter()
            .find(|d| verified(d)["job_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no delivery for {id}: {got:?}"));
        let body = verified(d);
        assert_eq!(body["status"], "succeeded", "{body}");
        assert!(body["result"]["predictions"].is_array(), "{body}");
        assert_eq!(d.attempt, "1");
        let job = settled_callback(&c, id, 10).await;
        assert_eq!(job["callback"]["state"], "delivered", "{job}");
        assert_eq!(job["callback"]["attempts"], 1, "{job}");
        assert_eq!(job["callback"]["last_status"], 204, "{job}");
        assert!(job["callback"]["delivered_at"].is_string(), "{job}");
        // The body is the job view, as GET answers it (bar the callback's
        // own progress, which moved on after the POST).
        let mut view = job.clone();
        view["callback"] = body["callback"].clone();
        assert_eq!(view, body);
    }

    // A receiver that fails twice gets it on the third try.
    receiver.failures_left.store(2, Ordering::SeqCst);
    let flaky = predict_with_callback(&c, &ids, &format!("http://127.0.0.1:{port}/flaky")).await;
    let got = wait_for(&receiver, "flaky", 3, 60).await;
    assert_eq!(got.len(), 3, "{got:?}\n{}", env.dump_logs());
    let delivery_ids: Vec<&str> = got.iter().map(|d| d.delivery.as_str()).collect();
    assert!(
        delivery_ids.iter().all(|d| *d == delivery_ids[0]),
        "one delivery id across retries: {delivery_ids:?}"
    );
    let attempts: Vec<&str> = got.iter().map(|d| d.attempt.as_str()).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for d in &got {
        assert_eq!(verified(d)["job_id"], flaky.as_str());
    }
    let job = settled_callback(&c, &flaky, 10).await;
    assert_eq!(job["callback"]["state"], "delivered", "{job}");
    assert_eq!(job["callback"]["attempts"], 3, "{job}");
    assert_eq!(job["callback"]["last_status"], 204, "{job}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.for_path("flaky").len(), 3, "nothing after success");

    // The outbox in /metrics.
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
        metrics.contains("rpa_ml_callbacks{state=\"delivered\"} 4"),
        "{metrics}"
    );

    // Server-Sent Events: progress, then end with the job view.
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk", "completion_time"], "all_open": true}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["job_id"].as_str().expect("job_id").to_string();
    let mut stream = c
        .http
        .get(format!("{}/api/v1/jobs/{id}/events", env.base()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status().as_u16(), 200);
    assert!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        stream.headers()
    );
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = stream.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not close: {text}");
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                name.to_string(),
                serde_json::from_str(data).expect("event data"),
            ))
        })
        .collect();
    assert!(
        events.first().is_some_and(|(n, _)| n == "progress"),
        "{text}"
    );
    let (last, end) = events.last().expect("events");
    assert_eq!(last, "end", "{text}");
    assert_eq!(end["job_id"], id.as_str());
    assert_eq!(end["status"], "succeeded", "{end}");
    assert!(end["result"]["predictions"].is_array(), "{end}");
    assert_eq!(
        events.iter().filter(|(n, _)| n == "end").count(),
        1,
        "{text}"
    );

    // An unknown job is a 404; a job that ended gets its end at once.
    let (status, body) = c
        .get("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/events")
        .await;
    assert_eq!(status, 404, "{body}");
    let ended = c
        .http
        .get(format!("{}/api/v1/jobs/{id}/events", env.base()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("text");
    assert!(ended.contains("event: end"), "{ended}");

    // Past EVENTS_MAX_STREAMS (2 here), a new stream is refused. With no
    // worker left, a new job stays queued and its streams stay open.
    env.kill9(worker_a);
    env.kill9(worker_b);
    let (status, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": ids}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let queued = body["job_id"].as_str().expect("job_id").to_string();
    let open = |id: String| {
        let http = c.http.clone();
        let url = format!("{}/api/v1/jobs/{id}/events", env.base());
        async move { http.get(url).bearer_auth(KEY).send().await.expect("events") }
    };
    let first = open(queued.clone()).await;
    let second = open(queued.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open(queued.clone()).await;
    assert_eq!(third.status().as_u16(), 503);
    let body: Value = third.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    // A stream given up frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open(queued.clone()).await;
        if again.status().as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(second);
}

/// The outbox in the store itself, on both databases: nothing to deliver
/// while the job runs, one claimant at a time, the lease as the fence of
/// each attempt's record, and rows purged with their job.
#[tokio::test]
async fn the_outbox_on_sqlite_and_postgres() {
    use rpa_ml_shared::store::{
        AttemptOutcome, Claim, Holder, JobOutcome, RetentionCutoffs, Store,
    };
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = Store::connect(&env.store_url, 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        let lease = Duration::from_secs(30);
        let mut job = common::predict_job(None);
        job.callback_url = Some("http://127.0.0.1:9/hook".into());
        let id = job.id.clone();
        store.insert_jobs(&[job]).await.expect("insert");
        let cb = store
            .job_callback(&id)
            .await
            .expect("read")
            .expect("written with the job");
        assert_eq!((cb.state.as_str(), cb.attempts), ("pending", 0));
        assert!(
            store
                .claim_callbacks("a", lease, 10)
                .await
                .expect("claim")
                .is_empty(),
            "{mode:?}: nothing to deliver before the job ends"
        );

        let Claim::Claimed(row) = store.claim_job(&id, "w", lease).await.expect("claim job") else {
            panic!("{mode:?}: job not claimable");
        };
        let holder = Holder {
            worker: "w",
            attempt: row.attempts,
        };
        assert!(
            store
                .set_outcome(&id, holder, JobOutcome::Failed { error: "no" })
                .await
                .expect("outcome")
        );

        let (a, b) = tokio::join!(
            store.claim_callbacks("a", lease, 10),
            store.claim_callbacks("b", lease, 10)
        );
        let (a, b) = (a.expect("claim a"), b.expect("claim b"));
        assert_eq!(a.len() + b.len(), 1, "{mode:?}: one claimant: {a:?} {b:?}");
        let (owner, other) = if a.len() == 1 { ("a", "b") } else { ("b", "a") };
        assert!(
            !store
                .record_callback_attempt(&cb.id, other, AttemptOutcome::Delivered { status: 200 })
                .await
                .expect("record"),
            "{mode:?}: only the holder records"
        );
        assert!(
            store
                .record_callback_attempt(
                    &cb.id,
                    owner,
                    AttemptOutcome::Failed {
                        status: Some(500),
                        error: "the receiver answered 500".into(),
                        retry_at: Some(chrono::Utc::now()),
                    },
                )
                .await
                .expect("record")
        );
        let again = store
            .claim_callbacks(other, lease, 10)
            .await
            .expect("claim");
        assert_eq!(again.len(), 1, "{mode:?}: due again after a failure");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_status, Some(500));

        let now = chrono::Utc::now();
        let long_ago = now - chrono::Duration::days(1);
        let purged = store
            .purge_expired(&RetentionCutoffs {
                finished: now + chrono::Duration::days(1),
                failed: now + chrono::Duration::days(1),
                predictions: long_ago,
                ticks: long_ago,
                workers: long_ago,
                idempotency_keys: long_ago,
            })
            .await
            .expect("purge");
        assert_eq!((purged.failed_jobs, purged.callbacks), (1, 1), "{mode:?}");
        assert!(store.job_callback(&id).await.expect("read").is_none());
        store.close().await;
    }
}
