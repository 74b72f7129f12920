//! Job leases, end to end: a store outage (a private PostgreSQL the test
//! stops and starts) strands no running job, and a job whose worker keeps
//! running it through the outage is not run a second time; a job whose
//! worker is alive but stopped confirming it is taken back, and that
//! worker's late outcome is refused.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mode, TestEnv, free_port, open_projects, shared_backend};

/// A private PostgreSQL cluster (`initdb`/`pg_ctl` on a free port) that a
/// test can stop and start. Run as the `postgres` user when the test runs
/// as root, which PostgreSQL refuses.
struct OwnPostgres {
    port: u16,
    dir: PathBuf,
    as_root: bool,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!(
            "rpa_ml_pg_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_root {
            let st = Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(st.success(), "chown postgres {}", dir.display());
        }
        let pg = OwnPostgres {
            port: free_port(),
            dir,
            as_root,
        };
        let out = pg
            .tool("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        pg
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", name]);
            c
        } else {
            Command::new(name)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once, as a crash would.
    fn down(&self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ids of the jobs running under the worker process `pid`.
async fn running_under(store: &sqlx::PgPool, pid: u32) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(
        // Predict jobs only: the scoring job the first promotions enqueue
        // waits in the low lane these workers serve too.
        "SELECT id FROM jobs WHERE state = 'running' AND kind = 'predict' AND worker LIKE $1 ORDER BY id",
    )
    .bind(format!("%-{pid}-%"))
    .fetch_all(store)
    .await
    .expect("running jobs")
    .into_iter()
    .map(|r| r.0)
    .collect()
}

/// PostgreSQL goes away for longer than a job's lease while jobs run: one
/// worker holds its jobs through the outage (their leases run out
/// meanwhile), the other finishes its jobs during it and cannot write their
/// outcome. Once the store is back every job ends `succeeded`, none stays
/// `running`, each has exactly one stored result, and the jobs the first
/// worker kept running were never taken from it (one attempt each).
/// Workers count as dead on the roster only after a minute here, so no
/// heartbeat race can rescue (or take) a job: leases alone must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_strands_no_job_and_runs_none_twice() {
    let pg = OwnPostgres::start();
    let mut env = TestEnv::new(Mode::Scale).await;
    env.store_url = pg.url();
    env.extra
        .insert("WORKER_DEAD_AFTER_SECS".into(), "60".into());
    env.api_with_models().await;

    let c = env.client();
    let ids = open_projects(&shared_backend(), 3).await;
    let store = sqlx::PgPool::connect(&pg.url()).await.expect("store");
    // The long worker holds each job 12 s: through the outage below.
    let long = env.spawn(
        "worker-long",
        &["worker", "--queues", "predict", "--concurrency", "4"],
        &[("RPA_ML_FAULT_DELAY_MS", "12000")],
    );
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(c.predict(&["risk"], &ids).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_under(&store, long).await.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the long worker never took its jobs\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = running_under(&store, long).await;
    // The short worker's jobs end 1 s into the outage: their outcome (a
    // retry, the models' registry being away) waits for the store.
    let short = env.spawn(
        "worker-short",
        &["worker", "--queues", "predict", "--concurrency", "4"],
        &[("RPA_ML_FAULT_DELAY_MS", "1500")],
    );
    for _ in 0..4 {
        jobs.push(c.predict(&["risk"], &ids).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_under(&store, short).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the short worker never took a job\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;

    // Longer than the lease (3 s).
    pg.down();
    tokio::time::sleep(Duration::from_secs(7)).await;
    pg.up();
    let back = Instant::now();

    for id in &jobs {
        let job = c.wait_job(id, 60).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    }
    println!(
        "{} jobs drained {:.1} s after the store came back",
        jobs.len(),
        back.elapsed().as_secs_f64()
    );
    for id in &held {
        let (_, job) = c.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(
            job["attempts"],
            1,
            "a job its worker kept running was taken from it: {job}\n{}",
            env.dump_logs()
        );
    }
    let probe = env.store().await;
    assert_eq!(
        probe
            .count("SELECT COUNT(*) FROM jobs WHERE state = 'running' AND kind = 'predict'")
            .await,
        0
    );
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM predictions").await,
        (jobs.len() * ids.len()) as i64
    );
}

/// A worker that stays alive and heart-beats but stops confirming the job it
/// runs loses it once its lease runs out: another worker runs it (a second
/// attempt), and the first one stops at its next checkpoint, writing
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_that_stops_confirming_its_job_loses_it() {
    let mut env = TestEnv::new(Mode::Scale).await;
    env.api_with_models().await;

    // A holds its one job for 8 s and never renews its lease (3 s).
    let a = env.spawn(
        "worker-a",
        &[
            "worker",
            "--queues",
            "predict",
            "--concurrency",
            "1",
            "--no-reconcile",
        ],
        &[
            ("RPA_ML_FAULT_DELAY_MS", "8000"),
            ("RPA_ML_FAULT_NO_LEASE", "1"),
        ],
    );
    let c = env.client();
    let ids = open_projects(&shared_backend(), 3).await;
    let id = c.predict(&["risk"], &ids).await;
    let store = sqlx::PgPool::connect(&env.store_url).await.expect("store");
    let deadline = Instant::now() + Duration::from_secs(30);
    // A also serves the low lane, where the scoring job the first
    // promotions enqueued waits: only this job is watched.
    while !running_under(&store, a).await.contains(&id) {
        assert!(
            Instant::now() < deadline,
            "worker A never took the job\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let claimed = Instant::now();
    // B reconciles, and runs what it is given.
    let b = env.spawn("worker-b", &["worker", "--queues", "predict"], &[]);
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", env.dump_logs());
    println!(
        "job taken back and run again {:.1} s after its unconfirmed claim (lease 3 s)",
        claimed.elapsed().as_secs_f64()
    );
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(
        env.wait_exit(a, Duration::from_millis(100)).is_none(),
        "worker A stays alive"
    );

    // A's hold ends: its first checkpoint finds the job taken back, and
    // attempt 1 stops without writing anything.
    let log = env.dir.join("worker-a.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("this attempt no longer holds the job")
    {
        assert!(
            Instant::now() < deadline,
            "worker A never stopped its taken-back attempt\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (worker, attempts, state): (String, i32, String) =
        sqlx::query_as("SELECT worker, attempts, state FROM jobs WHERE id = $1")
            .bind(&id)
            .fetch_one(&store)
            .await
            .expect("row");
    assert!(worker.contains(&format!("-{b}-")), "ran by B: {worker}");
    assert_eq!((attempts, state.as_str()), (2, "succeeded"));
    let (_, again) = c.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(again["result"], job["result"], "B's result stands");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM predictions WHERE job_id = $1")
        .bind(&id)
        .fetch_one(&store)
        .await
        .expect("count");
    assert_eq!(rows, ids.len() as i64);
}
