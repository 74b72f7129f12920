//! No accepted job is lost: workers killed mid-job, Redis emptied or gone,
//! a job that kills every worker that takes it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mode, TestEnv, free_port, open_projects, shared_backend};
use serde_json::json;

/// A private redis-server for tests that flush or stop it.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let mut r = OwnRedis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(c) = redis::Client::open(self.url())
                && let Ok(mut conn) = c.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on {} did not start", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn flushall(&self) {
        let c = redis::Client::open(self.url()).expect("client");
        let mut conn = c.get_connection().expect("conn");
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("flushall");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_nothing_and_each_job_has_one_result() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.api_with_models().await;

    // Worker A holds every job it takes for 4 s.
    let a = env.spawn(
        "worker-a",
        &["worker", "--queues", "predict", "--concurrency", "8"],
        &[("RPA_ML_FAULT_DELAY_MS", "4000")],
    );
    let c = env.client();
    let ids = open_projects(&shared_backend(), 3).await;
    let mut jobs = Vec::new();
    for i in 0..8 {
        let target = ["completion_time", "budget_variance", "risk"][i % 3];
        jobs.push(c.predict(&[target], &ids).await);
    }
    // Wait until A is running some of them, then kill it without warning.
    let probe = env.store().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe
        .count("SELECT COUNT(*) FROM jobs WHERE state = 'running'")
        .await
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "worker A never took the jobs\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.kill9(a);
    // Worker B (no delay) finishes everything, via the reconciler.
    env.spawn(
        "worker-b",
        &["worker", "--queues", "predict,maintenance"],
        &[],
    );
    for id in &jobs {
        let job = c.wait_job(id, 60).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
        assert_eq!(
            job["result"]["predictions"].as_array().map(Vec::len),
            Some(3)
        );
    }
    // Exactly one stored result per job and project.
    assert_eq!(probe.count("SELECT COUNT(*) FROM predictions").await, 8 * 3);
    let retried = probe
        .count("SELECT COUNT(*) FROM jobs WHERE attempts = 2")
        .await;
    assert!(
        retried >= 4,
        "jobs held by the killed worker ran a second attempt: {retried}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushall_after_accepting_jobs_loses_nothing() {
    let redis = OwnRedis::start();
    let mut env = TestEnv::new(Mode::Scale).await;
    env.redis_url = redis.url();
    env.spawn("api", &["api"], &[]);
    env.spawn("trainer", &["worker", "--queues", "train"], &[]);
    env.wait_ready().await;
    env.train().await;

    let c = env.client();
    let ids = open_projects(&shared_backend(), 2).await;
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(c.predict(&["risk"], &ids).await);
    }
    // Every accepted message vanishes before any worker sees it.
    redis.flushall();
    env.spawn(
        "worker",
        &["worker", "--queues", "predict,maintenance"],
        &[],
    );
    for id in &jobs {
        let job = c.wait_job(id, 60).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    }
    let probe = env.store().await;
    assert_eq!(probe.count("SELECT COUNT(*) FROM predictions").await, 6 * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_not_ready_but_accepted_jobs_still_run() {
    let mut redis = OwnRedis::start();
    let mut env = TestEnv::new(Mode::Scale).await;
    env.redis_url = redis.url();
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    env.train().await;
    let c = env.client();

    redis.stop();
    let (s, v) = c.get("/ready").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["checks"]["queue"]["ok"], false, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue")),
        "{v}"
    );

    // The store is up, so the job is accepted durably even though the
    // queue is not answering.
    let ids = open_projects(&shared_backend(), 1).await;
    let (s, body) = c
        .post(
            "/api/v1/predict",
            json!({"targets": ["risk"], "project_ids": ids}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert!(body["queue_error"].is_string(), "{body}");
    let id = body["job_id"].as_str().expect("id").to_string();

    redis.restart();
    let job = c.wait_job(&id, 90).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    let (s, _) = c.get("/ready").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_ends_dead() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.extra.insert("JOB_MAX_ATTEMPTS".into(), "2".into());
    env.spawn("api", &["api"], &[]);
    env.spawn("trainer", &["worker", "--queues", "train,maintenance"], &[]);
    env.wait_ready().await;
    env.train().await;
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;

    // Every predict worker aborts as soon as it starts a job; keep
    // replacing it, as an orchestrator would.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut crashes = 0;
    loop {
        let (_, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
        if job["status"] == "dead" {
            assert_eq!(job["attempts"], 2, "{job}");
            assert!(
                job["error"].as_str().is_some_and(|e| e.contains("attempt")),
                "{job}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job never ended: {job}\n{}",
            env.dump_logs()
        );
        let pid = env.spawn(
            &format!("crasher-{crashes}"),
            &["worker", "--queues", "predict", "--no-reconcile"],
            &[("RPA_ML_FAULT_ABORT", "1")],
        );
        env.wait_exit(pid, Duration::from_secs(10));
        crashes += 1;
        assert!(crashes < 10, "job kept running: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_jobs() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.api_with_models().await;
    let w = env.spawn(
        "worker",
        &["worker", "--queues", "predict", "--no-reconcile"],
        &[("RPA_ML_FAULT_DELAY_MS", "1500")],
    );
    let c = env.client();
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;
    let probe = env.store().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe
        .count("SELECT COUNT(*) FROM jobs WHERE state = 'running'")
        .await
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "never started\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    env.term(w);
    let status = env
        .wait_exit(w, Duration::from_secs(30))
        .expect("worker exits after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    let (_, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        job["status"], "succeeded",
        "in-flight job finished before exit: {job}"
    );
}
