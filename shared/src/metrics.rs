//! Prometheus metrics, one registry per process.
//!
//! Two kinds of series:
//! - **process series** (HTTP requests, jobs finished, job durations,
//!   predictions) are counted where they happen, in every api and worker
//!   process; Prometheus sums them across replicas.
//! - **system series** (queue depth and age, model metrics, drift) describe
//!   the shared store, so they are read from it when `/metrics` is scraped,
//!   and only by the api (see [`refresh_from_store`]); every api replica
//!   reports the same values, so dashboards take `max` over them.
//!
//! No label carries a worker, host or job id: those are unbounded, and the
//! roster (`GET /api/v1/workers`) already names them.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::jobs::JobKind;
use crate::store::{Store, StoreError};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/v1/jobs/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PredictionLabels {
    pub target: String,
    /// "ok" or "error".
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStateLabels {
    pub queue: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub target: String,
    pub version: String,
    pub stage: String,
    /// "mae", "accuracy" or "macro_f1".
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetMetricLabels {
    pub target: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealisedLabels {
    pub target: String,
    /// The production version the realised figure was measured for.
    pub version: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

pub struct Metrics {
    registry: Registry,
    /// Family names as registered, without the `rpa_ml_` prefix.
    names: Vec<&'static str>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub jobs_finished: Family<JobLabels, Counter>,
    pub job_duration: Family<JobLabels, Histogram>,
    /// Time from a job becoming due to a worker claiming it.
    pub job_wait: Family<KindLabels, Histogram>,
    pub predictions: Family<PredictionLabels, Counter>,
    pub queue_jobs: Family<QueueStateLabels, Gauge>,
    pub queue_oldest_waiting: Family<QueueLabels, FloatGauge>,
    pub queue_finished_5m: Family<QueueLabels, Gauge>,
    pub model_holdout: Family<ModelLabels, FloatGauge>,
    pub model_baseline: Family<ModelLabels, FloatGauge>,
    pub model_threshold: Family<TargetMetricLabels, FloatGauge>,
    pub model_realised: Family<RealisedLabels, FloatGauge>,
    pub model_realised_projects: Family<TargetLabels, Gauge>,
    pub drift_score: Family<TargetLabels, FloatGauge>,
    pub drift_detected: Family<TargetLabels, Gauge>,
    pub drift_checked: Family<TargetLabels, Gauge>,
    pub forecasts: Family<TargetLabels, Gauge>,
    pub forecast_oldest_age: Family<TargetLabels, FloatGauge>,
    pub score_coverage: Family<TargetLabels, FloatGauge>,
    pub score_last_success: Gauge,
    /// Callback delivery attempts this process made: `delivered`, `retry`
    /// (failed, due again later) or `failed` (given up).
    pub callback_deliveries: Family<OutcomeLabels, Counter>,
    /// Callbacks in the outbox by state, from the store.
    pub callbacks: Family<StateLabels, Gauge>,
}

fn latency_buckets() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

fn job_buckets() -> Histogram {
    // 5 ms .. ~23 min: predictions are milliseconds, retrains minutes.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.5, 14,
    ))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rpa_ml");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_buckets),
            jobs_finished: Family::default(),
            job_duration: Family::new_with_constructor(job_buckets),
            job_wait: Family::new_with_constructor(job_buckets),
            predictions: Family::default(),
            queue_jobs: Family::default(),
            queue_oldest_waiting: Family::default(),
            queue_finished_5m: Family::default(),
            model_holdout: Family::default(),
            model_baseline: Family::default(),
            model_threshold: Family::default(),
            model_realised: Family::default(),
            model_realised_projects: Family::default(),
            drift_score: Family::default(),
            drift_detected: Family::default(),
            drift_checked: Family::default(),
            forecasts: Family::default(),
            forecast_oldest_age: Family::default(),
            score_coverage: Family::default(),
            score_last_success: Gauge::default(),
            callback_deliveries: Family::default(),
            callbacks: Family::default(),
            registry: Registry::default(),
            names: Vec::new(),
        };
        let mut names = Vec::new();
        // Registers a family and remembers its exposed name (counters gain
        // `_total`), so the dashboard test can check what it queries.
        macro_rules! reg {
            ($name:expr, $help:expr, $metric:expr $(,)?) => {{
                names.push($name);
                registry.register($name, $help, $metric);
            }};
        }
        reg!(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        reg!(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            m.http_duration.clone(),
        );
        reg!(
            "jobs_finished",
            "Jobs this process finished, by kind and final state (a retried attempt counts as state=retry)",
            m.jobs_finished.clone(),
        );
        reg!(
            "job_duration_seconds",
            "Run time of a job attempt, claim to outcome, by kind and outcome",
            m.job_duration.clone(),
        );
        reg!(
            "job_wait_seconds",
            "Time from a job being due to a worker claiming it, by kind",
            m.job_wait.clone(),
        );
        reg!(
            "predictions",
            "Per-project predictions made, by target and outcome",
            m.predictions.clone(),
        );
        reg!(
            "queue_jobs",
            "Jobs in the jobs table by queue and state (waiting = due now, scheduled = later)",
            m.queue_jobs.clone(),
        );
        reg!(
            "queue_oldest_waiting_seconds",
            "Age of the longest-waiting due job per queue (0 when none waits)",
            m.queue_oldest_waiting.clone(),
        );
        reg!(
            "queue_finished_5m",
            "Jobs that ended in the last 5 minutes per queue",
            m.queue_finished_5m.clone(),
        );
        reg!(
            "model_holdout",
            "Hold-out metric of each registered model version",
            m.model_holdout.clone(),
        );
        reg!(
            "model_baseline",
            "The better baseline's metric on the same hold-out rows",
            m.model_baseline.clone(),
        );
        reg!(
            "model_threshold",
            "The gate each target's model must pass",
            m.model_threshold.clone(),
        );
        reg!(
            "model_realised",
            "Realised metric of the production model on projects that closed after being scored (latest drift check)",
            m.model_realised.clone(),
        );
        reg!(
            "model_realised_projects",
            "Projects the realised metric was measured on",
            m.model_realised_projects.clone(),
        );
        reg!(
            "drift_score",
            "Latest drift score per target",
            m.drift_score.clone(),
        );
        reg!(
            "drift_detected",
            "1 when the latest drift check found drift for the target",
            m.drift_detected.clone(),
        );
        reg!(
            "drift_checked_timestamp_seconds",
            "When the target was last checked for drift (Unix time)",
            m.drift_checked.clone(),
        );
        reg!(
            "forecasts",
            "Latest forecasts kept per target (one per project scored)",
            m.forecasts.clone(),
        );
        reg!(
            "forecast_oldest_age_seconds",
            "Age of the oldest kept latest forecast per target",
            m.forecast_oldest_age.clone(),
        );
        reg!(
            "score_coverage_ratio",
            "Share of open projects the last successful scoring run answered, per target",
            m.score_coverage.clone(),
        );
        reg!(
            "score_last_success_timestamp_seconds",
            "When the last successful scoring run ended (Unix time; 0 before the first)",
            m.score_last_success.clone(),
        );
        reg!(
            "callback_deliveries",
            "Callback deliveries this process attempted, by outcome (delivered; retry: failed, due again; failed: given up)",
            m.callback_deliveries.clone(),
        );
        reg!(
            "callbacks",
            "Job callbacks in the outbox by state (pending, delivered, failed)",
            m.callbacks.clone(),
        );
        Metrics {
            registry,
            names,
            ..m
        }
    }
}

/// This process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Every family this process can export, as Prometheus names it
/// (`rpa_ml_` prefix; histograms add `_bucket`, `_sum`, `_count` and
/// counters `_total` to these).
pub fn family_names() -> Vec<String> {
    global()
        .names
        .iter()
        .map(|n| format!("rpa_ml_{n}"))
        .collect()
}

/// The registry in the OpenMetrics text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &global().registry);
    out
}

/// Sets the system series from the store: queue depth and age, every
/// registered model's metrics, the latest drift report per target. Series for rows that no longer exist (a
/// pruned model version) disappear.
pub async fn refresh_from_store(store: &Store) -> Result<(), StoreError> {
    let m = global();
    let counts = store.queue_counts().await?;
    let now = Utc::now();
    m.queue_jobs.clear();
    for (queue, c) in &counts {
        let q = queue.as_str().to_string();
        for (state, n) in [
            ("waiting", c.waiting),
            ("scheduled", c.scheduled),
            ("running", c.running),
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("dead", c.dead),
            ("cancelled", c.cancelled),
        ] {
            m.queue_jobs
                .get_or_create(&QueueStateLabels {
                    queue: q.clone(),
                    state: state.into(),
                })
                .set(n);
        }
        let age = c
            .oldest_waiting_since
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        m.queue_oldest_waiting
            .get_or_create(&QueueLabels { queue: q.clone() })
            .set(age);
        m.queue_finished_5m
            .get_or_create(&QueueLabels { queue: q })
            .set(c.finished_5m);
    }

    let models = store.list_models().await?;
    m.model_holdout.clear();
    m.model_baseline.clear();
    m.model_threshold.clear();
    for model in &models {
        let metrics = &model.metrics;
        let Some(metric) = metrics.get("metric").and_then(|v| v.as_str()) else {
            continue;
        };
        let labels = |metric: &str| ModelLabels {
            target: model.target.as_str().into(),
            version: model.version.to_string(),
            stage: model.stage.as_str().into(),
            metric: metric.into(),
        };
        if let Some(v) = metrics.get("holdout").and_then(|v| v.as_f64()) {
            m.model_holdout.get_or_create(&labels(metric)).set(v);
        }
        if let Some(v) = metrics.get("macro_f1").and_then(|v| v.as_f64()) {
            m.model_holdout.get_or_create(&labels("macro_f1")).set(v);
        }
        if let Some(v) = metrics.get("baseline").and_then(|v| v.as_f64()) {
            m.model_baseline.get_or_create(&labels(metric)).set(v);
        }
        if let Some(v) = metrics.get("threshold").and_then(|v| v.as_f64()) {
            m.model_threshold
                .get_or_create(&TargetMetricLabels {
                    target: model.target.as_str().into(),
                    metric: metric.into(),
                })
                .set(v);
        }
    }

    let callbacks = store.callback_counts().await?;
    for (state, n) in [
        ("pending", callbacks.pending),
        ("delivered", callbacks.delivered),
        ("failed", callbacks.failed),
    ] {
        m.callbacks
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }

    let reports = store.latest_drift_reports().await?;
    m.model_realised.clear();
    m.model_realised_projects.clear();
    m.drift_score.clear();
    m.drift_detected.clear();
    for r in &reports {
        let target = TargetLabels {
            target: r.target.as_str().into(),
        };
        m.drift_checked
            .get_or_create(&target)
            .set(r.checked_at.timestamp());
        if let Some(score) = r.drift_score {
            m.drift_score.get_or_create(&target).set(score);
            m.drift_detected
                .get_or_create(&target)
                .set(i64::from(r.drift_detected));
        }
        let realised = &r.report["realised"];
        if let (Some(metric), Some(value)) = (
            realised.get("metric").and_then(|v| v.as_str()),
            realised.get("value").and_then(|v| v.as_f64()),
        ) {
            m.model_realised
                .get_or_create(&RealisedLabels {
                    target: r.target.as_str().into(),
                    version: r.model_version.map(|v| v.to_string()).unwrap_or_default(),
                    metric: metric.into(),
                })
                .set(value);
        }
        if let Some(n) = realised.get("projects").and_then(|v| v.as_i64()) {
            m.model_realised_projects.get_or_create(&target).set(n);
        }
    }

    let forecasts = store.forecast_summary().await?;
    m.forecasts.clear();
    m.forecast_oldest_age.clear();
    for (target, f) in &forecasts {
        let labels = TargetLabels {
            target: target.as_str().into(),
        };
        m.forecasts.get_or_create(&labels).set(f.count);
        if let Some(oldest) = f.oldest_as_of {
            m.forecast_oldest_age
                .get_or_create(&labels)
                .set((now - oldest).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    let (_, good) = store.last_finished_of_kind(JobKind::Score).await?;
    m.score_coverage.clear();
    if let Some(job) = good {
        if let Some(at) = job.finished_at {
            m.score_last_success.set(at.timestamp());
        }
        if let Some(targets) = job
            .result
            .as_ref()
            .and_then(|r| r.get("targets"))
            .and_then(|t| t.as_object())
        {
            for (target, t) in targets {
                if let Some(c) = t.get("coverage").and_then(|c| c.as_f64()) {
                    m.score_coverage
                        .get_or_create(&TargetLabels {
                            target: target.clone(),
                        })
                        .set(c);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_the_prefix_and_no_worker_labels() {
        let m = global();
        m.jobs_finished
            .get_or_create(&JobLabels {
                kind: "predict".into(),
                state: "succeeded".into(),
            })
            .inc();
        m.job_duration
            .get_or_create(&JobLabels {
                kind: "predict".into(),
                state: "succeeded".into(),
            })
            .observe(0.02);
        let text = render();
        assert!(
            text.contains("rpa_ml_jobs_finished_total{kind=\"predict\",state=\"succeeded\"}"),
            "{text}"
        );
        assert!(
            text.contains("rpa_ml_job_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("worker="));
    }
}
