//! `rpa-ml bench`: drives a running system over HTTP and prints figures.
//!
//! - project ids: every job names `--projects-per-job` DISTINCT projects,
//!   read from the backend (open ones first, closed ones too when a job
//!   needs more than are open) or given with `--project-ids`;
//! - idle latency: one job at a time, submit → result (server timestamps);
//! - load: N jobs submitted by C concurrent clients; enqueue requests/s and
//!   their latency, then end-to-end jobs/s and submit → result percentiles;
//! - CPU per job and memory (idle RSS before the load, kernel peak VmHWM
//!   after it) of each measured process tree, read from /proc: the api
//!   (found by its listening port) and the local `rpa-ml worker` processes,
//!   or the processes named with `--pids` (e.g. another system's API and
//!   workers: their children are counted with them).
//!
//! It speaks only `POST /api/v1/predict` and `GET /api/v1/jobs/{id}?wait=N`,
//! so it drives any API that accepts them (the Python peer does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cli::BenchArgs;

struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(m, format!("{}{}", self.base, path));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn submit(&self, target: &str, ids: &[i64]) -> anyhow::Result<String> {
        self.submit_at(target, ids, None).await
    }

    /// A predict job at `priority` (the API's default when `None`).
    async fn submit_at(
        &self,
        target: &str,
        ids: &[i64],
        priority: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut body = json!({"targets": [target], "project_ids": ids});
        if let Some(p) = priority {
            body["priority"] = json!(p);
        }
        let resp = self
            .req(reqwest::Method::POST, "/api/v1/predict")
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("submit failed: {status} {body}");
        }
        body["job_id"]
            .as_str()
            .map(str::to_string)
            .context("no job_id in response")
    }

    async fn wait(&self, id: &str) -> anyhow::Result<Value> {
        loop {
            let body: Value = self
                .req(reqwest::Method::GET, &format!("/api/v1/jobs/{id}?wait=30"))
                .send()
                .await?
                .json()
                .await?;
            match body["status"].as_str() {
                Some("queued" | "running") => continue,
                Some(_) => return Ok(body),
                None => bail!("unexpected job body: {body}"),
            }
        }
    }
}

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Where the jobs' project ids come from.
struct IdPool {
    ids: Vec<i64>,
    /// How the pool was made, for the report.
    source: String,
}

/// The `per_job` ids of job `i`: a window over the pool, wrapping at its
/// end. Distinct within the job whenever `per_job <= ids.len()`, which
/// [`choose_ids`] guarantees.
fn window(ids: &[i64], per_job: usize, i: usize) -> Vec<i64> {
    (0..per_job)
        .map(|k| ids[(i * per_job + k) % ids.len()])
        .collect()
}

/// The pool jobs draw from: the open projects when they are enough for one
/// job, else the open ones followed by the closed ones; an error when even
/// all projects are too few, rather than a job naming a project twice.
fn choose_ids(open: Vec<i64>, all: &[i64], per_job: usize) -> anyhow::Result<IdPool> {
    if open.len() >= per_job {
        let source = format!("{} open projects of the backend", open.len());
        return Ok(IdPool { ids: open, source });
    }
    let open_set: HashSet<i64> = open.iter().copied().collect();
    let closed: Vec<i64> = all
        .iter()
        .copied()
        .filter(|id| !open_set.contains(id))
        .collect();
    let source = format!(
        "{} open + {} closed projects of the backend (a job needs more than the open ones)",
        open.len(),
        closed.len()
    );
    let mut ids = open;
    ids.extend(closed);
    if ids.len() < per_job {
        bail!(
            "--projects-per-job {per_job} needs {per_job} distinct projects; the backend has {} in all",
            ids.len()
        );
    }
    Ok(IdPool { ids, source })
}

/// `--project-ids` as given, duplicates dropped (first occurrence kept).
fn given_ids(given: &[i64], per_job: usize) -> anyhow::Result<IdPool> {
    let mut seen = HashSet::new();
    let ids: Vec<i64> = given
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect();
    if ids.len() < per_job {
        bail!(
            "--projects-per-job {per_job} needs {per_job} distinct projects; --project-ids names {} distinct",
            ids.len()
        );
    }
    let dropped = given.len() - ids.len();
    let source = if dropped > 0 {
        format!(
            "{} distinct ids of --project-ids ({dropped} repeats dropped)",
            ids.len()
        )
    } else {
        format!("{} ids of --project-ids", ids.len())
    };
    Ok(IdPool { ids, source })
}

async fn backend_ids(url: Option<&str>, per_job: usize) -> anyhow::Result<IdPool> {
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            let vars =
                rpa_ml_shared::config::Config::env_vars().map_err(|e| anyhow::anyhow!("{e}"))?;
            vars.get("DATABASE_URL")
                .cloned()
                .unwrap_or_else(|| "sqlite://data/backend.sqlite".into())
        }
    };
    use rpa_ml_shared::backend::BackendDb;
    let db = BackendDb::connect(&url, 2)
        .await
        .context("backend database (--database-url or DATABASE_URL)")?;
    let open = db.open_project_ids().await?;
    if open.len() >= per_job {
        return choose_ids(open, &[], per_job);
    }
    let sql = "SELECT CAST(id AS BIGINT) FROM projects ORDER BY id";
    let rows: Vec<(i64,)> = match &db {
        BackendDb::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        BackendDb::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
    };
    let all: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
    choose_ids(open, &all, per_job)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency.max(1) * 2)
            .timeout(Duration::from_secs(120))
            .build()?,
        base: args.url.trim_end_matches('/').to_string(),
        key: args.api_key.clone().filter(|k| !k.is_empty()),
    });
    let per_job = args.projects_per_job.max(1);
    let pool = if args.project_ids.is_empty() {
        backend_ids(args.database_url.as_deref(), per_job).await?
    } else {
        given_ids(&args.project_ids, per_job)?
    };
    let watched = if args.pids.is_empty() {
        discover(&client.base)
    } else {
        parse_pids(&args.pids)?
    };
    let batch_for = |i: usize| window(&pool.ids, per_job, i);
    if args.priority_samples > 0 {
        return priority_probe(&args, client, &pool, per_job).await;
    }
    println!(
        "bench: {} jobs × {} project(s), {} clients, target {}, against {}",
        args.jobs, per_job, args.concurrency, args.target, client.base
    );
    println!(
        "projects: {per_job} distinct per job, from {}; the {} measured jobs name {} distinct projects in all",
        pool.source,
        args.jobs,
        (args.jobs * per_job).min(pool.ids.len())
    );
    println!("measured processes: {}", watched.describe());

    // Idle-queue latency, one job at a time.
    let mut idle = None;
    if args.latency_samples > 0 && !args.submit_only {
        let mut h = Histogram::<u64>::new(3)?;
        for i in 0..args.latency_samples {
            let id = client.submit(&args.target, &batch_for(i)).await?;
            let job = client.wait(&id).await?;
            if let (Some(a), Some(b)) = (ts(&job["created_at"]), ts(&job["finished_at"])) {
                h.record((b - a).num_microseconds().unwrap_or(0).max(0) as u64)?;
            }
        }
        println!(
            "idle latency (submit → stored result, {} sequential jobs): p50 {:.1} ms, p99 {:.1} ms",
            h.len(),
            ms(&h, 0.5),
            ms(&h, 0.99)
        );
        idle = Some(json!({"jobs": h.len(), "p50_ms": ms(&h, 0.5), "p99_ms": ms(&h, 0.99)}));
    }

    // After the idle jobs: the models are loaded and the queue is empty,
    // so this RSS is the idle footprint of a serving process.
    let before = watched.sample();
    let mut summary = json!({
        "url": client.base,
        "target": args.target,
        "jobs": args.jobs,
        "projects_per_job": per_job,
        "distinct_projects_per_job": per_job,
        "ids_from": pool.source,
        "idle_latency": idle,
    });
    if args.jobs == 0 {
        report_processes(&watched, &before, &before, 0, &mut summary);
        return write_summary(args.json_out.as_deref(), &summary);
    }
    // Load: submit everything, then collect.
    let started = Instant::now();
    let submits: Vec<(Result<String, String>, u64)> = futures::stream::iter(0..args.jobs)
        .map(|i| {
            let c = client.clone();
            let batch = batch_for(i);
            let target = args.target.clone();
            async move {
                let t = Instant::now();
                let r = c.submit(&target, &batch).await.map_err(|e| e.to_string());
                (r, t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let submit_secs = started.elapsed().as_secs_f64();
    let mut enqueue = Histogram::<u64>::new(3)?;
    let mut job_ids = Vec::new();
    let mut submit_errors = 0usize;
    for (r, us) in submits {
        enqueue.record(us.max(1))?;
        match r {
            Ok(id) => job_ids.push(id),
            Err(e) => {
                if submit_errors == 0 {
                    eprintln!("first submit error: {e}");
                }
                submit_errors += 1;
            }
        }
    }
    // rpa_bench_json.py (the peer's runner) parses this line and the "end
    // to end" one: keep their wording.
    println!(
        "enqueue: {} requests in {:.2}s = {:.0} req/s, latency p50 {:.1} ms, p99 {:.1} ms, {} errors",
        args.jobs,
        submit_secs,
        args.jobs as f64 / submit_secs,
        ms(&enqueue, 0.5),
        ms(&enqueue, 0.99),
        submit_errors
    );
    summary["enqueue"] = json!({
        "seconds": submit_secs,
        "req_per_s": args.jobs as f64 / submit_secs,
        "p50_ms": ms(&enqueue, 0.5),
        "p99_ms": ms(&enqueue, 0.99),
        "errors": submit_errors,
    });

    if args.submit_only {
        return write_summary(args.json_out.as_deref(), &summary);
    }
    let results: Vec<anyhow::Result<Value>> = futures::stream::iter(job_ids.clone())
        .map(|id| {
            let c = client.clone();
            async move { c.wait(&id).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let after = watched.sample();
    let mut e2e = Histogram::<u64>::new(3)?;
    let mut first: Option<DateTime<Utc>> = None;
    let mut last: Option<DateTime<Utc>> = None;
    let mut failed = 0usize;
    let mut answered = Answered::default();
    for r in &results {
        let Ok(job) = r else {
            failed += 1;
            continue;
        };
        if job["status"] != "succeeded" {
            failed += 1;
        } else {
            answered.add(job);
        }
        if let (Some(a), Some(b)) = (ts(&job["created_at"]), ts(&job["finished_at"])) {
            e2e.record((b - a).num_microseconds().unwrap_or(0).max(1) as u64)?;
            first = Some(first.map_or(a, |f| f.min(a)));
            last = Some(last.map_or(b, |l| l.max(b)));
        }
    }
    let span = match (first, last) {
        (Some(a), Some(b)) => (b - a).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6,
        _ => f64::NAN,
    };
    let jobs_per_s = results.len() as f64 / span;
    println!(
        "end to end: {} jobs ({} projects each) in {:.2}s = {} jobs/s ({:.0} projects/s); submit → result p50 {:.1} ms, p99 {:.1} ms; {} not succeeded",
        results.len(),
        per_job,
        span,
        // Keep a digit for slow, big jobs (5 jobs/s is not 4.6).
        if jobs_per_s < 100.0 {
            format!("{jobs_per_s:.1}")
        } else {
            format!("{jobs_per_s:.0}")
        },
        (results.len() * per_job) as f64 / span,
        ms(&e2e, 0.5),
        ms(&e2e, 0.99),
        failed
    );
    println!(
        "answers: {} numeric predictions for {} projects named by the succeeded jobs; distinct projects answered per job: min {}, max {}",
        answered.numeric,
        answered.named(per_job),
        answered.min_distinct.unwrap_or(0),
        answered.max_distinct
    );
    summary["end_to_end"] = json!({
        "jobs": results.len(),
        "seconds": span,
        "jobs_per_s": jobs_per_s,
        "projects_per_s": (results.len() * per_job) as f64 / span,
        "p50_ms": ms(&e2e, 0.5),
        "p99_ms": ms(&e2e, 0.99),
        "not_succeeded": failed,
        "numeric_predictions": answered.numeric,
        "projects_named": answered.named(per_job),
        "min_distinct_answered": answered.min_distinct,
        "max_distinct_answered": answered.max_distinct,
    });
    report_processes(&watched, &before, &after, results.len(), &mut summary);
    write_summary(args.json_out.as_deref(), &summary)
}

/// `--priority-samples N`: queues `--jobs` low jobs of `--projects-per-job`
/// projects, then submits N high 1-project jobs one after another, each
/// waited for, and prints their submit → result p50 and p99 (as the client
/// sees it, and as the server stamped it). Bounded by `--max-secs`; the
/// backlog still queued at the end is cancelled. Only against this host.
async fn priority_probe(
    args: &BenchArgs,
    client: Arc<Client>,
    pool: &IdPool,
    per_job: usize,
) -> anyhow::Result<()> {
    let host = reqwest::Url::parse(&client.base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]") {
        bail!("--priority-samples queues thousands of jobs: only against 127.0.0.1 (got {host:?})");
    }
    let deadline = Instant::now() + Duration::from_secs(args.max_secs.max(1));
    println!(
        "priority: {} low jobs × {per_job} projects (from {}), then {} high 1-project jobs one after another, against {}",
        args.jobs, pool.source, args.priority_samples, client.base
    );
    let started = Instant::now();
    let submits: Vec<anyhow::Result<String>> = futures::stream::iter(0..args.jobs)
        .map(|i| {
            let c = client.clone();
            let batch = window(&pool.ids, per_job, i);
            let target = args.target.clone();
            async move { c.submit_at(&target, &batch, Some("low")).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut backlog = Vec::with_capacity(submits.len());
    for r in submits {
        backlog.push(r.context("queueing the low backlog")?);
    }
    println!(
        "backlog: {} low jobs queued in {:.1}s",
        backlog.len(),
        started.elapsed().as_secs_f64()
    );
    let low_before = lane_counts(&client, "predict_low").await;

    let mut wall = Histogram::<u64>::new(3)?;
    let mut server = Histogram::<u64>::new(3)?;
    let mut failed = 0usize;
    for i in 0..args.priority_samples {
        if Instant::now() > deadline {
            println!("stopped after {i} high jobs: --max-secs reached");
            break;
        }
        let t = Instant::now();
        let id = client
            .submit_at(&args.target, &window(&pool.ids, 1, i), Some("high"))
            .await?;
        let job = client.wait(&id).await?;
        wall.record(t.elapsed().as_micros().max(1) as u64)?;
        if job["status"] != "succeeded" {
            failed += 1;
        }
        if let (Some(a), Some(b)) = (ts(&job["created_at"]), ts(&job["finished_at"])) {
            server.record((b - a).num_microseconds().unwrap_or(0).max(1) as u64)?;
        }
    }
    let low_after = lane_counts(&client, "predict_low").await;
    println!(
        "high 1-project jobs under the low backlog ({} jobs): submit → result p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (client); server-stamped p50 {:.1} ms, p99 {:.1} ms; {failed} not succeeded",
        wall.len(),
        ms(&wall, 0.5),
        ms(&wall, 0.99),
        wall.max() as f64 / 1000.0,
        ms(&server, 0.5),
        ms(&server, 0.99),
    );
    println!(
        "low lane: {} waiting / {} running / {} succeeded before the high jobs; {} / {} / {} after",
        low_before.0, low_before.1, low_before.2, low_after.0, low_after.1, low_after.2
    );
    let summary = json!({
        "url": client.base,
        "low_backlog": backlog.len(),
        "low_projects_per_job": per_job,
        "high_jobs": wall.len(),
        "high_p50_ms": ms(&wall, 0.5),
        "high_p99_ms": ms(&wall, 0.99),
        "high_server_p50_ms": ms(&server, 0.5),
        "high_server_p99_ms": ms(&server, 0.99),
        "high_not_succeeded": failed,
        "low_before": {"waiting": low_before.0, "running": low_before.1, "succeeded": low_before.2},
        "low_after": {"waiting": low_after.0, "running": low_after.1, "succeeded": low_after.2},
    });
    // Leave nothing queued behind: cancel what of the backlog has not run.
    let cancelled: usize = futures::stream::iter(backlog)
        .map(|id| {
            let c = client.clone();
            async move {
                c.req(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/cancel"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    println!("cleanup: {cancelled} backlog jobs cancelled");
    write_summary(args.json_out.as_deref(), &summary)
}

/// (waiting, running, succeeded) of one queue, from `GET /api/v1/queues`.
async fn lane_counts(client: &Client, queue: &str) -> (i64, i64, i64) {
    let body: Value = match client
        .req(reqwest::Method::GET, "/api/v1/queues")
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let q = body["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["queue"] == queue)
        .cloned()
        .unwrap_or(Value::Null);
    let n = |k: &str| q[k].as_i64().unwrap_or(-1);
    (n("waiting"), n("running"), n("succeeded"))
}

/// What the succeeded jobs' results hold: numeric predictions and how many
/// distinct projects each job answered.
#[derive(Default)]
struct Answered {
    jobs: usize,
    numeric: usize,
    min_distinct: Option<usize>,
    max_distinct: usize,
}

impl Answered {
    fn add(&mut self, job: &Value) {
        let preds = job["result"]["predictions"].as_array();
        let mut distinct = HashSet::new();
        for p in preds.into_iter().flatten() {
            if p["value"].is_number() || p["class"].is_string() {
                self.numeric += 1;
                if let Some(id) = p["project_id"].as_i64() {
                    distinct.insert(id);
                }
            }
        }
        self.jobs += 1;
        self.min_distinct = Some(
            self.min_distinct
                .map_or(distinct.len(), |m| m.min(distinct.len())),
        );
        self.max_distinct = self.max_distinct.max(distinct.len());
    }

    fn named(&self, per_job: usize) -> usize {
        self.jobs * per_job
    }
}

fn write_summary(path: Option<&std::path::Path>, summary: &Value) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, format!("{summary}\n"))
            .with_context(|| format!("writing --json-out {}", path.display()))?;
    }
    Ok(())
}

fn report_processes(
    watched: &Watched,
    before: &Sample,
    after: &Sample,
    jobs: usize,
    summary: &mut Value,
) {
    if watched.roots.is_empty() {
        println!("worker CPU: no local rpa-ml worker process found (pass --pids)");
        return;
    }
    let per_job = |cpu_ms: f64| cpu_ms / jobs.max(1) as f64;
    // CPU of each group of roots (worker1, worker2 → worker).
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    for root in &watched.roots {
        let used = after.cpu_ms.get(&root.pid).copied().unwrap_or(0.0)
            - before.cpu_ms.get(&root.pid).copied().unwrap_or(0.0);
        *groups.entry(root.group()).or_default() += used;
    }
    if jobs > 0 {
        let worker_ms: f64 = groups
            .iter()
            .filter(|(g, _)| g.as_str() == "worker" || g.as_str() == "standalone")
            .map(|(_, v)| v)
            .sum();
        let workers: Vec<String> = watched
            .roots
            .iter()
            .filter(|r| r.group() == "worker" || r.group() == "standalone")
            .map(|r| format!("pid {}", r.pid))
            .collect();
        println!(
            "worker CPU: {:.2} ms per job ({:.0} ms over {} jobs) across {}",
            per_job(worker_ms),
            worker_ms,
            jobs,
            if workers.is_empty() {
                "no worker process".to_string()
            } else {
                workers.join(", ")
            }
        );
        println!(
            "CPU per job (utime+stime of each process tree, reaped children included): {}",
            groups
                .iter()
                .map(|(g, v)| format!("{g} {:.2} ms", per_job(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut procs = Vec::new();
    for root in &watched.roots {
        for p in after.procs.iter().filter(|p| p.root == root.pid) {
            let idle = before
                .procs
                .iter()
                .find(|b| b.pid == p.pid)
                .map(|b| b.rss_mib);
            println!(
                "memory: {} pid {} ({}): idle RSS {}, peak RSS (VmHWM) {:.1} MiB",
                root.role,
                p.pid,
                p.cmd,
                idle.map_or("n/a (started during the load)".to_string(), |v| format!(
                    "{v:.1} MiB"
                )),
                p.hwm_mib
            );
            procs.push(json!({
                "role": root.role, "root": root.pid, "pid": p.pid, "cmd": p.cmd,
                "idle_rss_mib": idle, "peak_rss_mib": p.hwm_mib, "rss_mib": p.rss_mib,
            }));
        }
    }
    summary["cpu_ms_per_job"] = json!(
        groups
            .iter()
            .map(|(g, v)| (g.clone(), json!(per_job(*v))))
            .collect::<serde_json::Map<_, _>>()
    );
    summary["processes"] = json!(procs);
}

/// A process whose tree (it and its descendants) is measured.
struct Root {
    role: String,
    pid: u32,
    how: &'static str,
}

impl Root {
    /// The role without a trailing number, so that `worker1` and
    /// `worker2` add up as `worker`.
    fn group(&self) -> String {
        self.role
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string()
    }
}

struct Watched {
    roots: Vec<Root>,
}

impl Watched {
    fn describe(&self) -> String {
        if self.roots.is_empty() {
            return "none found (pass --pids ROLE=PID,...)".into();
        }
        self.roots
            .iter()
            .map(|r| format!("{} pid {} ({})", r.role, r.pid, r.how))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn sample(&self) -> Sample {
        let table = proc_table();
        let mut s = Sample::default();
        for root in &self.roots {
            let fam = descendants(root.pid, &table);
            s.cpu_ms.insert(
                root.pid,
                fam.iter()
                    .filter_map(|p| table.get(p))
                    .map(|p| p.cpu_ms)
                    .sum(),
            );
            for pid in fam {
                let Some(mem) = memory(pid) else { continue };
                s.procs.push(ProcMem {
                    root: root.pid,
                    pid,
                    cmd: cmdline(pid).map(|a| short_cmd(&a)).unwrap_or_default(),
                    rss_mib: mem.0,
                    hwm_mib: mem.1,
                });
            }
        }
        s
    }
}

#[derive(Default)]
struct Sample {
    /// CPU ms of each root's tree.
    cpu_ms: HashMap<u32, f64>,
    procs: Vec<ProcMem>,
}

struct ProcMem {
    root: u32,
    pid: u32,
    cmd: String,
    rss_mib: f64,
    hwm_mib: f64,
}

/// `--pids`: `ROLE=PID` or a bare `PID` (a worker).
fn parse_pids(specs: &[String]) -> anyhow::Result<Watched> {
    let mut roots = Vec::new();
    for spec in specs {
        let (role, pid) = match spec.split_once('=') {
            Some((r, p)) => (r.trim().to_string(), p.trim()),
            None => ("worker".to_string(), spec.trim()),
        };
        if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--pids {spec:?}: expected ROLE=PID (ROLE like api, worker1, pg) or a bare PID");
        }
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("--pids {spec:?}: {pid:?} is not a process id"))?;
        if std::fs::metadata(format!("/proc/{pid}/stat")).is_err() {
            bail!("--pids {spec:?}: no process {pid} on this machine");
        }
        roots.push(Root {
            role,
            pid,
            how: "--pids",
        });
    }
    Ok(Watched { roots })
}

/// The api (the process listening on the URL's port, when the URL is
/// local) and the local `rpa-ml worker` processes: the api's siblings when
/// it has any (started together, the usual case of a benchmark script),
/// else all of them.
fn discover(base: &str) -> Watched {
    let table = proc_table();
    let mut roots = Vec::new();
    let local_port = reqwest::Url::parse(base).ok().and_then(|u| {
        let local = matches!(
            u.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        u.port_or_known_default().filter(|_| local)
    });
    let listeners = local_port.map(listening_pids).unwrap_or_default();
    // The topmost listener: uvicorn's workers inherit their master's socket.
    let api_roots: Vec<u32> = listeners
        .iter()
        .copied()
        .filter(|p| {
            table
                .get(p)
                .is_none_or(|info| !listeners.contains(&info.ppid))
        })
        .collect();
    let mut api_family = HashSet::new();
    for pid in &api_roots {
        let standalone = cmdline(*pid).is_some_and(|a| is_rpa_ml(&a, "standalone"));
        api_family.extend(descendants(*pid, &table));
        roots.push(Root {
            role: if standalone { "standalone" } else { "api" }.into(),
            pid: *pid,
            how: "listens on the URL's port",
        });
    }
    let workers: Vec<u32> = table
        .keys()
        .copied()
        .filter(|p| !api_family.contains(p))
        .filter(|p| cmdline(*p).is_some_and(|a| is_rpa_ml(&a, "worker")))
        .collect();
    let api_parents: HashSet<u32> = api_roots
        .iter()
        .filter_map(|p| table.get(p).map(|i| i.ppid))
        .collect();
    let siblings: Vec<u32> = workers
        .iter()
        .copied()
        .filter(|p| table.get(p).is_some_and(|i| api_parents.contains(&i.ppid)))
        .collect();
    let (chosen, how) = if siblings.is_empty() {
        (workers, "every local rpa-ml worker")
    } else {
        (siblings, "rpa-ml worker started beside the api")
    };
    let mut chosen = chosen;
    chosen.sort_unstable();
    for (n, pid) in chosen.into_iter().enumerate() {
        roots.push(Root {
            role: format!("worker{}", n + 1),
            pid,
            how,
        });
    }
    Watched { roots }
}

fn is_rpa_ml(args: &[String], role: &str) -> bool {
    args.first().is_some_and(|a| a.ends_with("rpa-ml")) && args.get(1).is_some_and(|r| r == role)
}

struct ProcInfo {
    ppid: u32,
    /// utime + stime + cutime + cstime: reaped children (prefork pools
    /// that replace theirs) stay counted.
    cpu_ms: f64,
}

fn proc_table() -> HashMap<u32, ProcInfo> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(info) = parse_stat(&stat) {
            out.insert(pid, info);
        }
    }
    out
}

fn parse_stat(stat: &str) -> Option<ProcInfo> {
    // Fields after the ")" that closes the command name (which may hold
    // spaces and parentheses).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some(ProcInfo {
        ppid: f.get(1)?.parse().ok()?,
        cpu_ms: (num(11) + num(12) + num(13) + num(14)) * 1000.0 / CLOCK_TICKS,
    })
}

// Linux has used 100 Hz USER_HZ for /proc accounting on every common
// architecture; getconf would say the same.
const CLOCK_TICKS: f64 = 100.0;

fn descendants(root: u32, table: &HashMap<u32, ProcInfo>) -> Vec<u32> {
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, info) in table {
        kids.entry(info.ppid).or_default().push(*pid);
    }
    let mut fam = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if !table.contains_key(&p) || fam.contains(&p) {
            continue;
        }
        fam.push(p);
        todo.extend(kids.get(&p).into_iter().flatten());
    }
    fam.sort_unstable();
    fam
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The program's file name and its first arguments: enough to tell an api
/// from a worker or a Celery child, without the rest of a long command.
fn short_cmd(args: &[String]) -> String {
    let mut parts: Vec<String> = args.iter().take(4).cloned().collect();
    if let Some(first) = parts.first_mut()
        && let Some((_, name)) = first.rsplit_once('/')
    {
        *first = name.to_string();
    }
    parts.join(" ")
}

/// (VmRSS, VmHWM) in MiB; None for zombies and kernel threads.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Pids holding a listening TCP socket on `port` (IPv4 or IPv6), as far as
/// this user may read their file descriptors.
fn listening_pids(port: u16) -> HashSet<u32> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(listen_inodes(&text, port));
    }
    let mut pids = HashSet::new();
    if inodes.is_empty() {
        return pids;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                target
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|inode| inodes.contains(&inode))
            })
        });
        if holds {
            pids.insert(pid);
        }
    }
    pids
}

/// Inodes of the LISTEN sockets on `port` in a /proc/net/tcp{,6} table.
fn listen_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_names_distinct_projects_when_more_are_needed_than_are_open() {
        let open: Vec<i64> = (1..=355).collect();
        let all: Vec<i64> = (1..=5000).collect();
        let pool = choose_ids(open, &all, 1000).expect("enough projects");
        assert_eq!(pool.ids.len(), 5000);
        assert_eq!(pool.ids[..355], (1..=355).collect::<Vec<_>>()[..]);
        for i in 0..20 {
            let ids = window(&pool.ids, 1000, i);
            let distinct: HashSet<i64> = ids.iter().copied().collect();
            assert_eq!(distinct.len(), 1000, "job {i}");
        }
    }

    #[test]
    fn open_projects_alone_serve_jobs_they_can_fill() {
        let pool = choose_ids(vec![5, 7, 9], &[], 2).expect("enough open projects");
        assert_eq!(window(&pool.ids, 2, 0), vec![5, 7]);
        assert_eq!(window(&pool.ids, 2, 1), vec![9, 5]);
    }

    #[test]
    fn too_few_projects_is_an_error_not_a_repeated_id() {
        let err = choose_ids(vec![1], &[1, 2, 3], 4).err().expect("an error");
        assert!(err.to_string().contains("has 3 in all"), "{err}");
        let err = given_ids(&[1, 2, 2, 3], 4).err().expect("an error");
        assert!(err.to_string().contains("names 3 distinct"), "{err}");
        let pool = given_ids(&[1, 2, 2, 3], 3).expect("three distinct");
        assert_eq!(pool.ids, vec![1, 2, 3]);
        assert!(pool.source.contains("1 repeats dropped"), "{}", pool.source);
    }

    #[test]
    fn pids_take_a_role_or_default_to_worker() {
        let me = std::process::id();
        let w = parse_pids(&[format!("api={me}"), format!("{me}")]).expect("valid");
        assert_eq!(w.roots[0].role, "api");
        assert_eq!(w.roots[1].role, "worker");
        assert!(parse_pids(&["api=abc".into()]).is_err());
        assert!(parse_pids(&["a b=1".into()]).is_err());
        assert!(parse_pids(&[format!("api={}", u32::MAX)]).is_err());
    }

    #[test]
    fn worker_roles_add_up_by_name_without_their_number() {
        let r = Root {
            role: "worker12".into(),
            pid: 1,
            how: "--pids",
        };
        assert_eq!(r.group(), "worker");
    }

    #[test]
    fn listen_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1FA5 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:1FA5 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 100 0 0 10 0\n\
           2: 0100007F:1FA6 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listen_inodes(table, 0x1FA5), vec![4242]);
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let stat = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 150 50 10 40 20 0 1 0 1 1 1";
        let info = parse_stat(stat).expect("parses");
        assert_eq!(info.ppid, 7);
        assert_eq!(info.cpu_ms, 2500.0);
    }
}
