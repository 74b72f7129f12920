//! `rpa-ml healthcheck`: one HTTP GET with a timeout, for the image's
//! `HEALTHCHECK`, compose health checks and Kubernetes exec probes. The
//! image holds no curl and its `sh` is dash (no `/dev/tcp`), so the binary
//! checks itself. Exit 0 on a 2xx answer, 1 otherwise with the reason on
//! stderr.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::HealthcheckArgs;
use crate::setup::load_config;

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => default_url(&args)?,
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url: expected an http:// or https:// URL, got {url:?}");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let http = reqwest::Client::builder()
        // A proxy configured for outbound traffic must not answer for us.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("rpa-ml-healthcheck/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", describe(&e, timeout)))?;
    let status = response.status();
    if status.is_success() {
        println!("GET {url}: {status}");
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    bail!("GET {url}: {status} {body}");
}

/// `/health` (or, with `--ready`, `/ready?models=false`: the ML store, the
/// queue and the backend answer; a deployment without models yet is still
/// healthy, so it can be sent its first retrain) of the api in this environment, or `/health` of
/// a worker's metrics endpoint with `--worker`: the port comes from the
/// same configuration the role reads.
fn default_url(args: &HealthcheckArgs) -> anyhow::Result<String> {
    // The check needs only addresses: a container whose key is generated
    // at start (`standalone`) or mounted elsewhere still gets checked.
    let placeholder_key = HashMap::from([("ML_API_KEY".to_string(), "healthcheck".to_string())]);
    let (config, _) = load_config(&placeholder_key)?;
    let path = if args.ready {
        "/ready?models=false"
    } else {
        "/health"
    };
    let port = if args.worker {
        config
            .worker_metrics_port
            .context("--worker: WORKER_METRICS_PORT is not set, so this worker serves no /health")?
    } else {
        config.port
    };
    let host = match config.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    Ok(format!("http://{host}:{port}{path}"))
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {:.1}s", timeout.as_secs_f64());
    }
    // The innermost cause says what happened (refused, reset, not HTTP).
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("cannot connect ({cause})")
    } else {
        format!("no HTTP answer ({cause})")
    }
}
