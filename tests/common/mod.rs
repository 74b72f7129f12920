//! Test harness: real processes of the real binary against a real Redis and
//! PostgreSQL. Each test gets its own ML store (a fresh PostgreSQL database
//! or SQLite file), its own Redis key prefix, its own backend database and
//! free ports; every process it starts is killed when the test ends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const KEY: &str = "test-key-0123456789";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rpa-ml")
}

pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A demo backend shared by the tests of one binary (generated once).
pub fn shared_backend() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("rpa_ml_backend"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("backend.sqlite");
        let out = Command::new(bin())
            .args([
                "demo-data",
                "--projects",
                "400",
                "--seed",
                "7",
                "--as-of",
                "2026-11-01",
                "--out",
            ])
            .arg(&path)
            .output()
            .expect("run demo-data");
        assert!(
            out.status.success(),
            "demo-data failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
    .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redis queue + PostgreSQL ML store.
    Scale,
    /// SQLite queue + SQLite ML store (separate roles still possible: they
    /// share the file).
    Embedded,
}

pub struct TestEnv {
    pub mode: Mode,
    pub dir: PathBuf,
    pub store_url: String,
    pub pg_db: Option<String>,
    pub prefix: String,
    pub redis_url: String,
    pub backend_url: String,
    pub port: u16,
    pub extra: HashMap<String, String>,
    children: Vec<Child>,
}

impl TestEnv {
    pub async fn new(mode: Mode) -> TestEnv {
        let dir = std::env::temp_dir().join(unique("rpa_ml_test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (store_url, pg_db) = match mode {
            Mode::Scale => {
                let db = unique("rpa_ml_t");
                let admin = sqlx::PgPool::connect(&pg_admin_url())
                    .await
                    .expect("postgres");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .execute(&admin)
                    .await
                    .expect("create database");
                admin.close().await;
                let base = pg_admin_url();
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{db}", &base[..i]),
                    None => panic!("DATABASE_TEST_URL has no database part"),
                };
                (url, Some(db))
            }
            Mode::Embedded => (
                format!("sqlite://{}", dir.join("ml-store.sqlite").display()),
                None,
            ),
        };
        TestEnv {
            mode,
            store_url,
            pg_db,
            prefix: unique("rpa-ml-test"),
            redis_url: redis_url(),
            backend_url: format!("sqlite://{}", shared_backend().display()),
            port: free_port(),
            extra: HashMap::new(),
            dir,
            children: Vec::new(),
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("ML_API_HOST", "127.0.0.1".to_string()),
            ("ML_API_PORT", self.port.to_string()),
            ("ML_API_KEY", KEY.to_string()),
            ("DATABASE_URL", self.backend_url.clone()),
            ("ML_STORE_URL", self.store_url.clone()),
            ("REDIS_QUEUE_PREFIX", self.prefix.clone()),
            (
                "MODEL_STORAGE_PATH",
                self.dir.join("models").display().to_string(),
            ),
            (
                "FEATURE_STORE_PATH",
                self.dir.join("features").display().to_string(),
            ),
            ("LOG_LEVEL", "info".to_string()),
            // The job path is under test here, not model quality: gates that
            // any fitted model passes.
            ("COMPLETION_TIME_MAE_THRESHOLD", "100000".to_string()),
            ("BUDGET_VARIANCE_MAE_THRESHOLD", "100000".to_string()),
            ("RISK_SCORE_ACCURACY_THRESHOLD", "0".to_string()),
            ("MIN_TRAINING_SAMPLES", "20".to_string()),
            ("WORKER_HEARTBEAT_SECS", "1".to_string()),
            ("WORKER_DEAD_AFTER_SECS", "3".to_string()),
            ("JOB_LEASE_SECS", "3".to_string()),
            ("RECONCILE_INTERVAL_SECS", "1".to_string()),
            ("RECONCILE_REQUEUE_AFTER_SECS", "2".to_string()),
            ("QUEUE_POLL_INTERVAL_MS", "50".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if self.mode == Mode::Scale {
            env.insert("REDIS_URL".into(), self.redis_url.clone());
        }
        env.extend(self.extra.clone());
        env
    }

    /// Starts `rpa-ml <args>` with this environment; logs go to a file in
    /// the test's folder (printed on failure by `dump_logs`).
    pub fn spawn(&mut self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> u32 {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .envs(
                extra_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn rpa-ml");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts `rpa-ml standalone` on this env's port and data directory.
    pub fn spawn_standalone(&mut self) -> u32 {
        let port = self.port.to_string();
        let data = self.dir.join("data").display().to_string();
        self.spawn(
            "standalone",
            &["standalone", "--port", &port, "--data-dir", &data],
            &[],
        )
    }

    pub fn dump_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {} (last 40 lines)\n", p.display()));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    pub fn kill9(&mut self, pid: u32) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        for c in &mut self.children {
            if c.id() == pid {
                let _ = c.wait();
            }
        }
    }

    pub fn term(&mut self, pid: u32) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    pub fn wait_exit(&mut self, pid: u32, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        for c in &mut self.children {
            if c.id() == pid {
                while Instant::now() < deadline {
                    if let Ok(Some(st)) = c.try_wait() {
                        return Some(st);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        None
    }

    pub fn client(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.base(),
        }
    }

    pub async fn wait_ready(&self) {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = c.http.get(format!("{}/health", c.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("api did not come up\n{}", self.dump_logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A direct handle on this test's ML store.
    pub async fn store(&self) -> rpa_ml_store_probe::Probe {
        rpa_ml_store_probe::Probe::connect(&self.store_url).await
    }

    /// Retrains every target and waits for it to succeed.
    /// An api with a production model per target: a worker on the train
    /// queue trains them, then is killed, so only the workers a test starts
    /// take its jobs.
    pub async fn api_with_models(&mut self) {
        self.spawn("api", &["api"], &[]);
        let trainer = self.spawn("trainer", &["worker", "--queues", "train"], &[]);
        self.wait_ready().await;
        self.train().await;
        self.kill9(trainer);
    }

    pub async fn train(&self) {
        let c = self.client();
        let (status, body) = c.post("/api/v1/models/retrain", json!({})).await;
        assert!(status == 202 || status == 200, "retrain: {status} {body}");
        let id = body["job_id"].as_str().expect("job id").to_string();
        let job = c.wait_job(&id, 120).await;
        assert_eq!(
            job["status"],
            "succeeded",
            "retrain: {job}\n{}",
            self.dump_logs()
        );
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(db) = &self.pg_db {
            let db = db.clone();
            // Dropping needs a runtime; the test's own may be gone.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(admin) = sqlx::PgPool::connect(&pg_admin_url()).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                            )))
                            .execute(&admin)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.dump_logs());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // Leave no keys behind in the shared Redis.
        if self.mode == Mode::Scale {
            let prefix = self.prefix.clone();
            let url = self.redis_url.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(client) = redis::Client::open(url)
                    && let Ok(mut conn) = client.get_connection()
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query(&mut conn)
                        .unwrap_or_default();
                    for k in keys {
                        let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut conn);
                    }
                }
            })
            .join();
        }
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Self::answer(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A POST without a body (retry, cancel, run a check now).
    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        Self::answer(self.http.post(format!("{}{path}", self.base))).await
    }

    async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.bearer_auth(KEY).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn wait_job(&self, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, job) = self.get(&format!("/api/v1/jobs/{id}?wait=5")).await;
            assert_eq!(status, 200, "job {id}: {job}");
            let s = job["status"].as_str().unwrap_or("");
            if !matches!(s, "queued" | "running") || Instant::now() > deadline {
                return job;
            }
        }
    }

    /// Submits a predict job and returns its id.
    pub async fn predict(&self, targets: &[&str], ids: &[i64]) -> String {
        let (status, body) = self
            .post(
                "/api/v1/predict",
                json!({"targets": targets, "project_ids": ids}),
            )
            .await;
        assert_eq!(status, 202, "predict: {body}");
        body["job_id"].as_str().expect("job_id").to_string()
    }
}

/// A few open project ids of the shared backend.
pub async fn open_projects(backend: &Path, n: usize) -> Vec<i64> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", backend.display()))
        .await
        .expect("backend");
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM projects WHERE status NOT IN ('completed','cancelled') ORDER BY id LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(&pool)
    .await
    .expect("open projects");
    rows.into_iter().map(|r| r.0).collect()
}

/// Minimal direct reads of the ML store, for assertions on stored rows.
pub mod rpa_ml_store_probe {
    pub struct Probe {
        pub store: rpa_ml_shared::store::Store,
    }

    impl Probe {
        pub async fn connect(url: &str) -> Probe {
            Probe {
                store: rpa_ml_shared::store::Store::connect(url, 2)
                    .await
                    .expect("store"),
            }
        }

        /// Runs one statement (no binds) directly on the store.
        pub async fn exec(&self, sql: &str) -> u64 {
            match &self.store {
                rpa_ml_shared::store::Store::Sqlite(p) => {
                    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                        .execute(p)
                        .await
                        .expect("exec")
                        .rows_affected()
                }
                rpa_ml_shared::store::Store::Postgres(p) => {
                    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                        .execute(p)
                        .await
                        .expect("exec")
                        .rows_affected()
                }
            }
        }

        pub async fn count(&self, sql: &'static str) -> i64 {
            match &self.store {
                rpa_ml_shared::store::Store::Sqlite(p) => {
                    sqlx::query_as::<_, (i64,)>(sql)
                        .fetch_one(p)
                        .await
                        .expect("count")
                        .0
                }
                rpa_ml_shared::store::Store::Postgres(p) => {
                    sqlx::query_as::<_, (i64,)>(sql)
                        .fetch_one(p)
                        .await
                        .expect("count")
                        .0
                }
            }
        }
    }
}

/// A new predict job (risk, project 1, three attempts), not stored yet.
pub fn predict_job(request_id: Option<String>) -> rpa_ml_shared::store::NewJob {
    use rpa_ml_shared::jobs::{JobPayload, PredictJob, ProjectSelection};
    let id = ulid::Ulid::new().to_string();
    rpa_ml_shared::store::NewJob {
        queue_task_id: format!("task-{id}"),
        id,
        payload: JobPayload::Predict(PredictJob {
            targets: [rpa_ml_shared::ml::Target::Risk].into_iter().collect(),
            projects: ProjectSelection::Ids(vec![1]),
            priority: Default::default(),
        }),
        max_attempts: 3,
        request_id,
        callback_url: None,
    }
}
