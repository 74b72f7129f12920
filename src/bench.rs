//! `rpa-ml bench`: drives a running system over HTTP and prints figures.
//!
//! - idle latency: one job at a time, submit → result (server timestamps);
//! - load: N jobs submitted by C concurrent clients; enqueue requests/s and
//!   their latency, then end-to-end jobs/s and submit → result percentiles;
//! - worker CPU per job and resident memory, read from /proc for every local
//!   `rpa-ml worker` (or `standalone`) process.

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
        let resp = self
            .req(reqwest::Method::POST, "/api/v1/predict")
            .json(&json!({"targets": [target], "project_ids": ids}))
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency.max(1) * 2)
            .timeout(Duration::from_secs(120))
            .build()?,
        base: args.url.trim_end_matches('/').to_string(),
        key: args.api_key.clone().filter(|k| !k.is_empty()),
    });
    let ids = if args.project_ids.is_empty() {
        open_projects().await?
    } else {
        args.project_ids.clone()
    };
    if ids.is_empty() {
        bail!(
            "no project ids: pass --project-ids or set DATABASE_URL to a backend with open projects"
        );
    }
    let per_job = args.projects_per_job.max(1);
    let batch_for = |i: usize| -> Vec<i64> {
        (0..per_job)
            .map(|k| ids[(i * per_job + k) % ids.len()])
            .collect()
    };
    println!(
        "bench: {} jobs × {} project(s), {} clients, target {}, against {}",
        args.jobs, per_job, args.concurrency, args.target, client.base
    );

    // Idle-queue latency, one job at a time.
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
    }

    let cpu_before = worker_cpu();
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
    println!(
        "enqueue: {} requests in {:.2}s = {:.0} req/s, latency p50 {:.1} ms, p99 {:.1} ms, {} errors",
        args.jobs,
        submit_secs,
        args.jobs as f64 / submit_secs,
        ms(&enqueue, 0.5),
        ms(&enqueue, 0.99),
        submit_errors
    );

    if args.submit_only {
        return Ok(());
    }
    let results: Vec<anyhow::Result<Value>> = futures::stream::iter(job_ids.clone())
        .map(|id| {
            let c = client.clone();
            async move { c.wait(&id).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut e2e = Histogram::<u64>::new(3)?;
    let mut first: Option<DateTime<Utc>> = None;
    let mut last: Option<DateTime<Utc>> = None;
    let mut failed = 0usize;
    for r in &results {
        let Ok(job) = r else {
            failed += 1;
            continue;
        };
        if job["status"] != "succeeded" {
            failed += 1;
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
    println!(
        "end to end: {} jobs ({} projects each) in {:.2}s = {:.0} jobs/s ({:.0} projects/s); submit → result p50 {:.1} ms, p99 {:.1} ms; {} not succeeded",
        results.len(),
        per_job,
        span,
        results.len() as f64 / span,
        (results.len() * per_job) as f64 / span,
        ms(&e2e, 0.5),
        ms(&e2e, 0.99),
        failed
    );
    let cpu_after = worker_cpu();
    let mut total_ms = 0.0;
    let mut described = Vec::new();
    for (pid, after) in &cpu_after {
        let before = cpu_before
            .iter()
            .find(|(p, _)| p == pid)
            .map(|(_, c)| c.cpu_ms)
            .unwrap_or(0.0);
        total_ms += after.cpu_ms - before;
        described.push(format!(
            "pid {pid} ({}) rss {:.1} MB",
            after.role, after.rss_mb
        ));
    }
    if cpu_after.is_empty() {
        println!("worker CPU: no local rpa-ml worker process found");
    } else {
        println!(
            "worker CPU: {:.2} ms per job ({:.0} ms over {} jobs) across {}",
            total_ms / results.len().max(1) as f64,
            total_ms,
            results.len(),
            described.join(", ")
        );
    }
    Ok(())
}

async fn open_projects() -> anyhow::Result<Vec<i64>> {
    let vars = rpa_ml_shared::config::Config::env_vars().map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = vars
        .get("DATABASE_URL")
        .cloned()
        .unwrap_or_else(|| "sqlite://data/backend.sqlite".into());
    let db = rpa_ml_shared::backend::BackendDb::connect(&url, 2)
        .await
        .with_context(|| format!("DATABASE_URL {url}"))?;
    Ok(db.open_project_ids().await?)
}

struct ProcCpu {
    cpu_ms: f64,
    rss_mb: f64,
    role: String,
}

/// CPU time and RSS of local `rpa-ml worker` / `rpa-ml standalone` processes.
fn worker_cpu() -> Vec<(u32, ProcCpu)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let ticks = clock_ticks();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with("rpa-ml"));
        let role = args.get(1).cloned().unwrap_or_default();
        if !is_ours || !(role == "worker" || role == "standalone") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let rss_mb = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                })
            })
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0);
        out.push((
            pid,
            ProcCpu {
                cpu_ms: (utime + stime) * 1000.0 / ticks,
                rss_mb,
                role,
            },
        ));
    }
    out
}

fn clock_ticks() -> f64 {
    // Linux has used 100 Hz USER_HZ for /proc accounting on every common
    // architecture; getconf would say the same.
    100.0
}
