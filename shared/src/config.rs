//! Configuration: one typed struct, read once at start-up from the
//! environment (and `.env`), validated before anything else runs. Every error
//! names the variable and says what was expected, so a bad deployment stops
//! with a message an operator can act on.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Log output format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.into(),
    }
}

/// Every variable [`Config`] reads. Kept in one list so `.env.example` can be
/// checked against it and a non-UTF-8 value can be reported by name.
pub const KNOWN_VARS: &[&str] = &[
    "ML_API_HOST",
    "ML_API_PORT",
    "DEBUG",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "DATABASE_URL",
    "ML_STORE_URL",
    "REDIS_URL",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MODEL_STORAGE_PATH",
    "FEATURE_STORE_PATH",
    "ENABLE_HYPERPARAMETER_TUNING",
    "MAX_TRIALS",
    "MIN_TRAINING_SAMPLES",
    "COMPLETION_TIME_MAE_THRESHOLD",
    "BUDGET_VARIANCE_MAE_THRESHOLD",
    "RISK_SCORE_ACCURACY_THRESHOLD",
    "ENABLE_MODEL_MONITORING",
    "DRIFT_DETECTION_WINDOW",
    "RETRAINING_THRESHOLD",
    "ML_API_KEY",
    "ALLOWED_HOSTS",
    "MAX_WORKERS",
    "PREDICTION_TIMEOUT",
    "BATCH_SIZE",
    "RETRAIN_CRON",
    "DRIFT_CRON",
    "MAINTENANCE_CRON",
    "MODEL_RETENTION",
    "JOB_MAX_ATTEMPTS",
    "JOB_RETENTION_DAYS",
    "FAILED_JOB_RETENTION_DAYS",
    "PREDICTION_RETENTION_DAYS",
    "SCHEDULER_CATCHUP_MAX_AGE_SECS",
    "SCHEDULE_TICK_TTL_DAYS",
    "WORKER_HEARTBEAT_SECS",
    "WORKER_DEAD_AFTER_SECS",
    "RECONCILE_INTERVAL_SECS",
    "RECONCILE_REQUEUE_AFTER_SECS",
    "QUEUE_POLL_INTERVAL_MS",
    "REDIS_RESPONSE_TIMEOUT_MS",
    "REDIS_QUEUE_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_PROJECTS_PER_REQUEST",
    "MAX_WAIT_SECS",
    "WORKER_METRICS_PORT",
];

// Caps far above any sane setting; they exist so that `Instant + d` and
// chrono date arithmetic downstream can never overflow and panic.
const MAX_SECS: u64 = 365 * 24 * 60 * 60;
const MAX_MILLIS: u64 = MAX_SECS * 1000;
const MAX_DAYS: u32 = 36_500;

#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub debug: bool,
    /// Normalised `EnvFilter` directives.
    pub log_level: String,
    pub log_format: LogFormat,
    /// The backend's database (read-only); a bare path is stored as `sqlite://<path>`.
    pub database_url: String,
    /// This service's own store; a bare path is stored as `sqlite://<path>`.
    pub ml_store_url: String,
    pub redis_url: Option<String>,
    pub mlflow_tracking_uri: Option<String>,
    pub mlflow_experiment_name: String,
    pub model_storage_path: PathBuf,
    pub feature_store_path: PathBuf,
    pub enable_hyperparameter_tuning: bool,
    pub max_trials: u32,
    pub min_training_samples: usize,
    pub completion_time_mae_threshold: f64,
    pub budget_variance_mae_threshold: f64,
    pub risk_score_accuracy_threshold: f64,
    pub enable_model_monitoring: bool,
    pub drift_detection_window_days: u32,
    pub retraining_threshold: f64,
    /// Empty only when `debug` is true; use [`Config::api_key`].
    pub ml_api_key: SecretString,
    /// Lower-cased hostnames with optional `:port`, `*.domain` wildcards, or
    /// exactly `["*"]` for any host; use [`Config::host_allowed`].
    pub allowed_hosts: Vec<String>,
    pub max_workers: usize,
    pub prediction_timeout: Duration,
    pub batch_size: usize,
    /// Cron expressions with a seconds field, as `cron::Schedule::from_str` takes them.
    pub retrain_cron: String,
    pub drift_cron: String,
    pub maintenance_cron: String,
    pub model_retention: usize,
    pub job_max_attempts: u32,
    pub job_retention_days: u32,
    /// Days failed and dead jobs are kept (`FAILED_JOB_RETENTION_DAYS`).
    pub failed_job_retention_days: u32,
    /// Days stored predictions are kept: realised performance is measured
    /// on them once their projects close (`PREDICTION_RETENTION_DAYS`).
    pub prediction_retention_days: u32,
    /// A tick missed while no scheduler ran is enqueued late only if it is
    /// younger than this (`SCHEDULER_CATCHUP_MAX_AGE_SECS`).
    pub scheduler_catchup_max_age: Duration,
    /// Days a tick's idempotency key is kept (`SCHEDULE_TICK_TTL_DAYS`).
    pub schedule_tick_ttl_days: u32,
    pub worker_heartbeat: Duration,
    pub worker_dead_after: Duration,
    pub reconcile_interval: Duration,
    pub requeue_after: Duration,
    pub poll_interval: Duration,
    pub redis_response_timeout: Duration,
    pub queue_prefix: String,
    pub max_body_bytes: usize,
    pub max_projects_per_request: usize,
    pub max_wait: Duration,
    pub worker_metrics_port: Option<u16>,
}

impl Config {
    /// Reads `.env` if present (dotenvy, not overriding real env), then the process environment.
    ///
    /// `.env` values feed this config only; they are not exported into the
    /// process environment, because `set_var` is unsound once other threads
    /// (an async runtime, say) may be reading it.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(&Self::env_vars()?)
    }

    /// The variables `from_env` reads: `.env` overlaid by the process
    /// environment. Callers may add overrides before `from_vars`.
    pub fn env_vars() -> Result<HashMap<String, String>, ConfigError> {
        let mut vars = HashMap::new();
        match dotenvy::dotenv_iter() {
            Ok(iter) => {
                for item in iter {
                    let (key, value) = item.map_err(dotenv_error)?;
                    vars.insert(key, value);
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return Err(dotenv_error(e)),
        }
        for (key, value) in std::env::vars_os() {
            // Foreign variables with non-UTF-8 names or values are none of our business.
            let Ok(key) = key.into_string() else { continue };
            match value.into_string() {
                Ok(value) => {
                    vars.insert(key, value);
                }
                Err(_) => {
                    if let Some(var) = KNOWN_VARS.iter().find(|known| **known == key) {
                        return Err(invalid(var, "expected UTF-8 text, got other bytes"));
                    }
                }
            }
        }
        Ok(vars)
    }

    /// Same rules over an explicit map (for tests and for `standalone` overrides); missing keys take defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let r = Reader { vars };

        let debug = r.bool("DEBUG", false)?;
        let ml_api_key = SecretString::from(r.get("ML_API_KEY").unwrap_or_default());
        if ml_api_key.expose_secret().is_empty() && !debug {
            return Err(invalid(
                "ML_API_KEY",
                "required unless DEBUG=true (an empty key disables authentication, \
                 which is only allowed in debug); set a long random value, \
                 e.g. from `openssl rand -hex 32`",
            ));
        }

        let worker_heartbeat = r.secs("WORKER_HEARTBEAT_SECS", 2, 1)?;
        let worker_dead_after = r.secs("WORKER_DEAD_AFTER_SECS", 10, 1)?;
        if worker_dead_after <= worker_heartbeat {
            return Err(invalid(
                "WORKER_DEAD_AFTER_SECS",
                format!(
                    "expected more seconds than WORKER_HEARTBEAT_SECS ({}), got \"{}\"",
                    worker_heartbeat.as_secs(),
                    worker_dead_after.as_secs()
                ),
            ));
        }

        Ok(Config {
            host: r.listen_host("ML_API_HOST", "127.0.0.1")?,
            port: r.port("ML_API_PORT", 8001)?,
            debug,
            log_level: r.log_level("LOG_LEVEL", "info")?,
            log_format: r.log_format("LOG_FORMAT")?,
            database_url: r.database_url("DATABASE_URL", "sqlite://data/backend.sqlite")?,
            ml_store_url: r.database_url("ML_STORE_URL", "sqlite://data/ml-store.sqlite")?,
            redis_url: r.redis_url("REDIS_URL")?,
            mlflow_tracking_uri: r.get("MLFLOW_TRACKING_URI"),
            mlflow_experiment_name: r.string("MLFLOW_EXPERIMENT_NAME", "rpa-ml"),
            model_storage_path: PathBuf::from(r.string("MODEL_STORAGE_PATH", "data/models")),
            feature_store_path: PathBuf::from(r.string("FEATURE_STORE_PATH", "data/features")),
            enable_hyperparameter_tuning: r.bool("ENABLE_HYPERPARAMETER_TUNING", false)?,
            max_trials: r.int("MAX_TRIALS", 20, 1, None, "")?,
            min_training_samples: r.int("MIN_TRAINING_SAMPLES", 50, 1, None, "")?,
            completion_time_mae_threshold: r.float(
                "COMPLETION_TIME_MAE_THRESHOLD",
                5.0,
                FloatRange::Positive,
            )?,
            budget_variance_mae_threshold: r.float(
                "BUDGET_VARIANCE_MAE_THRESHOLD",
                0.15,
                FloatRange::Positive,
            )?,
            risk_score_accuracy_threshold: r.float(
                "RISK_SCORE_ACCURACY_THRESHOLD",
                0.75,
                FloatRange::ZeroToOne,
            )?,
            enable_model_monitoring: r.bool("ENABLE_MODEL_MONITORING", true)?,
            drift_detection_window_days: r.int(
                "DRIFT_DETECTION_WINDOW",
                30,
                1,
                Some(MAX_DAYS),
                "days",
            )?,
            retraining_threshold: r.float("RETRAINING_THRESHOLD", 0.3, FloatRange::ZeroToOne)?,
            ml_api_key,
            allowed_hosts: r.allowed_hosts("ALLOWED_HOSTS")?,
            max_workers: r.int("MAX_WORKERS", 4, 1, Some(256), "")?,
            prediction_timeout: r.secs("PREDICTION_TIMEOUT", 30, 1)?,
            batch_size: r.int("BATCH_SIZE", 500, 1, Some(100_000), "")?,
            retrain_cron: r.cron("RETRAIN_CRON", "0 0 3 * * Mon")?,
            drift_cron: r.cron("DRIFT_CRON", "0 0 2 * * *")?,
            maintenance_cron: r.cron("MAINTENANCE_CRON", "0 0 * * * *")?,
            model_retention: r.int("MODEL_RETENTION", 5, 1, None, "")?,
            job_max_attempts: r.int("JOB_MAX_ATTEMPTS", 3, 1, Some(25), "")?,
            // Zero would delete results before the backend has polled them.
            job_retention_days: r.int("JOB_RETENTION_DAYS", 7, 1, Some(MAX_DAYS), "days")?,
            failed_job_retention_days: r.int(
                "FAILED_JOB_RETENTION_DAYS",
                30,
                1,
                Some(MAX_DAYS),
                "days",
            )?,
            prediction_retention_days: r.int(
                "PREDICTION_RETENTION_DAYS",
                180,
                1,
                Some(MAX_DAYS),
                "days",
            )?,
            scheduler_catchup_max_age: r.secs("SCHEDULER_CATCHUP_MAX_AGE_SECS", 6 * 3600, 0)?,
            // A tick key must outlive the catch-up window, or a scheduler
            // coming back could enqueue a tick that already ran.
            schedule_tick_ttl_days: r.int(
                "SCHEDULE_TICK_TTL_DAYS",
                30,
                1,
                Some(MAX_DAYS),
                "days",
            )?,
            worker_heartbeat,
            worker_dead_after,
            reconcile_interval: r.secs("RECONCILE_INTERVAL_SECS", 5, 1)?,
            requeue_after: r.secs("RECONCILE_REQUEUE_AFTER_SECS", 15, 1)?,
            poll_interval: r.millis("QUEUE_POLL_INTERVAL_MS", 200, 60_000)?,
            redis_response_timeout: r.millis("REDIS_RESPONSE_TIMEOUT_MS", 5_000, MAX_MILLIS)?,
            queue_prefix: r.queue_prefix("REDIS_QUEUE_PREFIX", "rpa-ml")?,
            max_body_bytes: r.int("MAX_BODY_BYTES", 1_048_576, 1, None, "bytes")?,
            max_projects_per_request: r.int("MAX_PROJECTS_PER_REQUEST", 10_000, 1, None, "")?,
            // Zero is allowed: it turns `?wait=` into an immediate answer.
            max_wait: r.secs("MAX_WAIT_SECS", 30, 0)?,
            worker_metrics_port: match r.get("WORKER_METRICS_PORT") {
                None => None,
                Some(_) => Some(r.port("WORKER_METRICS_PORT", 0)?),
            },
        })
    }

    /// None when auth disabled (empty key + DEBUG=true).
    pub fn api_key(&self) -> Option<&SecretString> {
        if self.ml_api_key.expose_secret().is_empty() {
            None
        } else {
            Some(&self.ml_api_key)
        }
    }

    /// `host:port`, with an IPv6 host in brackets so it parses as a socket address.
    pub fn listen_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether a request's `Host` header is allowed by `ALLOWED_HOSTS`.
    /// An entry without a port allows any port; `*.example.com` allows
    /// subdomains of example.com but not example.com itself.
    pub fn host_allowed(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_host_port(host_header.trim()) else {
            return false;
        };
        let host = normalize_host(host);
        self.allowed_hosts.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let Some((entry_host, entry_port)) = split_host_port(entry) else {
                return false;
            };
            let host_matches = match entry_host.strip_prefix('*') {
                Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                None => host == entry_host,
            };
            host_matches && (entry_port.is_none() || entry_port == port)
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.ml_api_key.expose_secret().is_empty() {
            "(empty: auth disabled)"
        } else {
            "[REDACTED]"
        };
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("debug", &self.debug)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("database_url", &redact_url(&self.database_url))
            .field("ml_store_url", &redact_url(&self.ml_store_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field(
                "mlflow_tracking_uri",
                &self.mlflow_tracking_uri.as_deref().map(redact_url),
            )
            .field("mlflow_experiment_name", &self.mlflow_experiment_name)
            .field("model_storage_path", &self.model_storage_path)
            .field("feature_store_path", &self.feature_store_path)
            .field(
                "enable_hyperparameter_tuning",
                &self.enable_hyperparameter_tuning,
            )
            .field("max_trials", &self.max_trials)
            .field("min_training_samples", &self.min_training_samples)
            .field(
                "completion_time_mae_threshold",
                &self.completion_time_mae_threshold,
            )
            .field(
                "budget_variance_mae_threshold",
                &self.budget_variance_mae_threshold,
            )
            .field(
                "risk_score_accuracy_threshold",
                &self.risk_score_accuracy_threshold,
            )
            .field("enable_model_monitoring", &self.enable_model_monitoring)
            .field(
                "drift_detection_window_days",
                &self.drift_detection_window_days,
            )
            .field("retraining_threshold", &self.retraining_threshold)
            .field("ml_api_key", &key)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_workers", &self.max_workers)
            .field("prediction_timeout", &self.prediction_timeout)
            .field("batch_size", &self.batch_size)
            .field("retrain_cron", &self.retrain_cron)
            .field("drift_cron", &self.drift_cron)
            .field("maintenance_cron", &self.maintenance_cron)
            .field("model_retention", &self.model_retention)
            .field("job_max_attempts", &self.job_max_attempts)
            .field("job_retention_days", &self.job_retention_days)
            .field("failed_job_retention_days", &self.failed_job_retention_days)
            .field("prediction_retention_days", &self.prediction_retention_days)
            .field("scheduler_catchup_max_age", &self.scheduler_catchup_max_age)
            .field("schedule_tick_ttl_days", &self.schedule_tick_ttl_days)
            .field("worker_heartbeat", &self.worker_heartbeat)
            .field("worker_dead_after", &self.worker_dead_after)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("requeue_after", &self.requeue_after)
            .field("poll_interval", &self.poll_interval)
            .field("redis_response_timeout", &self.redis_response_timeout)
            .field("queue_prefix", &self.queue_prefix)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_projects_per_request", &self.max_projects_per_request)
            .field("max_wait", &self.max_wait)
            .field("worker_metrics_port", &self.worker_metrics_port)
            .finish()
    }
}

/// A connection URL fit for logs: the password in the userinfo and the values
/// of password/secret/token query parameters become `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hostport}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

fn dotenv_error(error: dotenvy::Error) -> ConfigError {
    match error {
        dotenvy::Error::LineParse(line, index) => {
            // The line itself may hold a secret, so only a variable-like name is echoed.
            let name = line
                .split_once('=')
                .map(|(name, _)| name.trim().trim_start_matches("export "))
                .filter(|name| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            let message = match name {
                Some(name) => {
                    format!("cannot parse the line setting {name} (at character {index})")
                }
                None => format!("cannot parse a line (at character {index})"),
            };
            invalid(".env", message)
        }
        other => invalid(".env", format!("cannot read: {other}")),
    }
}

/// Looks variables up by name, treating blank values as unset.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
}

enum FloatRange {
    Positive,
    ZeroToOne,
}

impl Reader<'_> {
    fn get(&self, var: &'static str) -> Option<String> {
        debug_assert!(KNOWN_VARS.contains(&var), "{var} missing from KNOWN_VARS");
        // Trimmed because a trailing newline in a mounted secret or a pasted
        // value is a classic cause of "wrong key" and "invalid port" at 3 am.
        self.vars
            .get(var)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }

    fn string(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(invalid(
                var,
                format!("expected true/false/1/0/yes/no, got {raw:?}"),
            )),
        }
    }

    /// An integer in `min..=max` (unbounded above when `max` is None).
    fn int<T>(
        &self,
        var: &'static str,
        default: T,
        min: T,
        max: Option<T>,
        unit: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let in_range = |v: &T| *v >= min && max.is_none_or(|max| *v <= max);
        raw.parse::<T>().ok().filter(in_range).ok_or_else(|| {
            let lo = min.to_string();
            let mut expected = match (lo.as_str(), max) {
                ("1", None) => "a positive integer".to_owned(),
                ("0", None) => "a non-negative integer".to_owned(),
                (_, None) => format!("an integer >= {lo}"),
                (_, Some(hi)) => format!("an integer {lo}-{hi}"),
            };
            if !unit.is_empty() {
                expected.push_str(&format!(" ({unit})"));
            }
            invalid(var, format!("expected {expected}, got {raw:?}"))
        })
    }

    fn secs(&self, var: &'static str, default: u64, min: u64) -> Result<Duration, ConfigError> {
        self.int(var, default, min, Some(MAX_SECS), "seconds")
            .map(Duration::from_secs)
    }

    fn millis(&self, var: &'static str, default: u64, max: u64) -> Result<Duration, ConfigError> {
        self.int(var, default, 1, Some(max), "milliseconds")
            .map(Duration::from_millis)
    }

    fn port(&self, var: &'static str, default: u16) -> Result<u16, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        raw.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid(var, format!("expected a port number 1-65535, got {raw:?}")))
    }

    fn float(
        &self,
        var: &'static str,
        default: f64,
        range: FloatRange,
    ) -> Result<f64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let (ok, expected): (fn(f64) -> bool, &str) = match range {
            FloatRange::Positive => (|v| v > 0.0, "a positive number"),
            FloatRange::ZeroToOne => (|v| (0.0..=1.0).contains(&v), "a number from 0 to 1"),
        };
        raw.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && ok(*v))
            .ok_or_else(|| invalid(var, format!("expected {expected}, got {raw:?}")))
    }

    fn log_format(&self, var: &'static str) -> Result<LogFormat, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(LogFormat::Text);
        };
        match raw.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(invalid(var, format!("expected text or json, got {raw:?}"))),
        }
    }

    fn log_level(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default.to_owned());
        };
        normalize_log_filter(&raw).ok_or_else(|| {
            invalid(
                var,
                format!(
                    "expected a level (trace, debug, info, warn, error, off) or EnvFilter \
                     directives such as \"info,rpa_ml=debug\", got {raw:?}"
                ),
            )
        })
    }

    fn listen_host(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default.to_owned());
        };
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&raw);
        if unbracketed.parse::<Ipv6Addr>().is_ok()
            || unbracketed.parse::<Ipv4Addr>().is_ok()
            || valid_hostname(unbracketed)
        {
            Ok(unbracketed.to_owned())
        } else {
            Err(invalid(
                var,
                format!("expected an IP address or hostname to listen on, got {raw:?}"),
            ))
        }
    }

    fn database_url(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default.to_owned());
        };
        let lower = raw.to_ascii_lowercase();
        if ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|prefix| lower.starts_with(prefix))
        {
            return Ok(raw);
        }
        // One spelling downstream: every SQLite database arrives as a `sqlite:` URL.
        if !raw.contains("://") && (lower.ends_with(".sqlite") || lower.ends_with(".db")) {
            return Ok(format!("sqlite://{raw}"));
        }
        Err(invalid(
            var,
            format!(
                "expected a sqlite:, postgres:// or postgresql:// URL, or a path ending \
                 .sqlite or .db, got {:?}",
                redact_url(&raw)
            ),
        ))
    }

    fn redis_url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(None);
        };
        let lower = raw.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("redis://")
            .or_else(|| lower.strip_prefix("rediss://"));
        match rest {
            Some(rest) if !rest.is_empty() => Ok(Some(raw)),
            _ => Err(invalid(
                var,
                format!(
                    "expected a redis:// or rediss:// URL with a host, got {:?}",
                    redact_url(&raw)
                ),
            )),
        }
    }

    fn queue_prefix(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.string(var, default);
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                var,
                format!("expected a key prefix without spaces, got {value:?}"),
            ));
        }
        Ok(value)
    }

    fn allowed_hosts(&self, var: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = self.vars.get(var) else {
            return Ok(vec!["*".to_owned()]);
        };
        let expected = "expected \"*\" or a comma-separated list of hostnames, each with an \
                        optional :port (\"*.example.com\" for subdomains)";
        // Set but blank is refused rather than read as "*": an operator who
        // wrote ALLOWED_HOSTS= more likely meant "none" than "any".
        if raw.trim().is_empty() {
            return Err(invalid(var, format!("{expected}, got an empty value")));
        }
        let mut hosts = Vec::new();
        for entry in raw.split(',').map(str::trim) {
            if entry == "*" {
                return Ok(vec!["*".to_owned()]);
            }
            let Some(normalized) = normalize_allowed_host(entry) else {
                let got = if entry == raw.trim() {
                    format!("{entry:?}")
                } else {
                    format!("{entry:?} in {raw:?}")
                };
                return Err(invalid(var, format!("{expected}, got {got}")));
            };
            hosts.push(normalized);
        }
        Ok(hosts)
    }

    fn cron(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let raw = self.string(var, default);
        normalize_cron(&raw).map_err(|reason| invalid(var, format!("{reason}, got {raw:?}")))
    }
}

/// Maps Python logging names (the variable comes from the Python service's
/// deployment guide) onto tracing's, and refuses bare words that are not
/// levels: EnvFilter reads `LOG_LEVEL=WARNING` as "trace for the target
/// named WARNING, nothing else", which silently disables logging.
fn normalize_log_filter(raw: &str) -> Option<String> {
    fn level(word: &str) -> Option<String> {
        match word.to_ascii_lowercase().as_str() {
            "warning" => Some("warn".to_owned()),
            "critical" | "fatal" => Some("error".to_owned()),
            lower => lower.parse::<LevelFilter>().ok().map(|_| lower.to_owned()),
        }
    }
    let mut directives = Vec::new();
    for directive in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let normalized = if directive.contains(['=', '[']) {
            match directive.rsplit_once('=') {
                Some((target, word)) => match level(word) {
                    Some(level) => format!("{target}={level}"),
                    None => directive.to_owned(),
                },
                None => directive.to_owned(),
            }
        } else {
            level(directive)?
        };
        directives.push(normalized);
    }
    if directives.is_empty() {
        return None;
    }
    let joined = directives.join(",");
    EnvFilter::try_new(&joined).ok().map(|_| joined)
}

fn valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                // Underscores are not DNS but do occur in compose service names.
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Splits `host[:port]` or `[v6][:port]`; None when the port is not a number 1-65535.
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            // Several colons without brackets: an IPv6 literal, no port.
            Some((host, _)) if host.contains(':') => (value, None),
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn normalize_allowed_host(entry: &str) -> Option<String> {
    let bracketed = entry.starts_with('[');
    let (host, port) = split_host_port(entry)?;
    let host_ok = if bracketed {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        let name = host.strip_prefix("*.").unwrap_or(host);
        valid_hostname(name)
    };
    if !host_ok {
        return None;
    }
    let host = normalize_host(host);
    let host = if bracketed { format!("[{host}]") } else { host };
    Some(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Accepts what `cron::Schedule` parses (6 or 7 fields, seconds first, or an
/// `@daily`-style shorthand) and classic 5-field crontab lines, which are
/// rewritten with a leading seconds field so the stored string always parses.
fn normalize_cron(raw: &str) -> Result<String, String> {
    let fields: Vec<&str> = raw.split_whitespace().collect();
    let normalized = match fields.len() {
        1 if fields[0].starts_with('@') => fields[0].to_owned(),
        5 => classic_cron(&fields)?,
        6 | 7 => fields.join(" "),
        n => {
            let plural = if n == 1 { "" } else { "s" };
            return Err(format!(
                "expected 6 or 7 fields (sec min hour day-of-month month day-of-week \
                 [year]) or a classic 5-field crontab line, found {n} field{plural}"
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&normalized).map_err(|e| {
        // The crate's message repeats the expression with a caret under the
        // fault; its last line alone says what is wrong.
        let text = e.to_string();
        let reason = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("expected a valid cron expression ({})", reason.trim())
    })?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err("expected a cron expression that fires at least once from now".to_owned());
    }
    Ok(normalized)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Prefixing "0 " alone would be wrong twice over: the cron crate numbers
/// weekdays 1 (Sunday) to 7 where crontab uses 0 or 7 for Sunday and 1 for
/// Monday, and it requires both day fields to match where crontab fires
/// when either does.
fn classic_cron(fields: &[&str]) -> Result<String, String> {
    let restricted = |field: &str| field != "*" && field != "?";
    if restricted(fields[2]) && restricted(fields[4]) {
        return Err(
            "expected a 5-field expression to restrict day-of-month or day-of-week, not both \
             (crontab fires when either matches, this scheduler only when both do; \
             write 6 fields to say which you mean)"
                .to_owned(),
        );
    }
    let weekdays = classic_weekdays(fields[4])
        .map_err(|reason| format!("expected a valid cron expression ({reason})"))?;
    Ok(format!(
        "0 {} {} {} {} {weekdays}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

/// Rewrites a crontab day-of-week field with names, which both conventions read alike.
fn classic_weekdays(field: &str) -> Result<String, String> {
    if !field.bytes().any(|b| b.is_ascii_digit()) {
        return Ok(field.to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => match step.parse::<usize>() {
                Ok(step) if step >= 1 => (base, Some(step)),
                _ => {
                    return Err(format!(
                        "day-of-week step {step:?} is not a positive integer"
                    ));
                }
            },
            None => (item, None),
        };
        let (from, to) = if base == "*" || base == "?" {
            (0, 6)
        } else if let Some((a, b)) = base.split_once('-') {
            (classic_weekday(a)?, classic_weekday(b)?)
        } else {
            let day = classic_weekday(base)?;
            // `N/step` means "from N to the end of the week, every step".
            (day, if step.is_some() { day.max(6) } else { day })
        };
        if from > to {
            return Err(format!("day-of-week range {base:?} runs backwards"));
        }
        for day in (from..=to).step_by(step.unwrap_or(1)) {
            days[day % 7] = true;
        }
    }
    if days.iter().all(|set| *set) {
        return Ok("*".to_owned());
    }
    let names: Vec<&str> = WEEKDAYS
        .iter()
        .zip(days)
        .filter_map(|(name, set)| set.then_some(*name))
        .collect();
    Ok(names.join(","))
}

fn classic_weekday(value: &str) -> Result<usize, String> {
    if let Ok(day) = value.parse::<usize>() {
        return if day <= 7 {
            Ok(day)
        } else {
            Err(format!("day of week {value:?} is out of range 0-7"))
        };
    }
    WEEKDAYS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(value))
        .ok_or_else(|| format!("{value:?} is not a day of the week"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Utc, Weekday};

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// DEBUG=true so tests that are not about the key need not set one.
    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map = vars(&[("DEBUG", "true")]);
        map.extend(vars(pairs));
        Config::from_vars(&map)
    }

    fn ok(pairs: &[(&str, &str)]) -> Config {
        match load(pairs) {
            Ok(config) => config,
            Err(e) => panic!("expected {pairs:?} to load, got {e}"),
        }
    }

    fn err(pairs: &[(&str, &str)]) -> (&'static str, String) {
        match load(pairs) {
            Ok(config) => panic!("expected {pairs:?} to fail, got {config:?}"),
            Err(ConfigError::Invalid { var, message }) => (var, message),
        }
    }

    #[test]
    fn defaults_load_with_debug() {
        let c = ok(&[]);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 8001);
        assert_eq!(c.listen_addr(), "127.0.0.1:8001");
        assert!(c.debug);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.database_url, "sqlite://data/backend.sqlite");
        assert_eq!(c.ml_store_url, "sqlite://data/ml-store.sqlite");
        assert_eq!(c.redis_url, None);
        assert_eq!(c.mlflow_tracking_uri, None);
        assert_eq!(c.mlflow_experiment_name, "rpa-ml");
        assert_eq!(c.model_storage_path, PathBuf::from("data/models"));
        assert_eq!(c.feature_store_path, PathBuf::from("data/features"));
        assert!(!c.enable_hyperparameter_tuning);
        assert_eq!(c.max_trials, 20);
        assert_eq!(c.min_training_samples, 50);
        assert_eq!(c.completion_time_mae_threshold, 5.0);
        assert_eq!(c.budget_variance_mae_threshold, 0.15);
        assert_eq!(c.risk_score_accuracy_threshold, 0.75);
        assert!(c.enable_model_monitoring);
        assert_eq!(c.drift_detection_window_days, 30);
        assert_eq!(c.retraining_threshold, 0.3);
        assert!(c.api_key().is_none());
        assert_eq!(c.allowed_hosts, vec!["*"]);
        assert_eq!(c.max_workers, 4);
        assert_eq!(c.prediction_timeout, Duration::from_secs(30));
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.retrain_cron, "0 0 3 * * Mon");
        assert_eq!(c.drift_cron, "0 0 2 * * *");
        assert_eq!(c.maintenance_cron, "0 0 * * * *");
        assert_eq!(c.model_retention, 5);
        assert_eq!(c.job_max_attempts, 3);
        assert_eq!(c.job_retention_days, 7);
        assert_eq!(c.worker_heartbeat, Duration::from_secs(2));
        assert_eq!(c.worker_dead_after, Duration::from_secs(10));
        assert_eq!(c.reconcile_interval, Duration::from_secs(5));
        assert_eq!(c.requeue_after, Duration::from_secs(15));
        assert_eq!(c.poll_interval, Duration::from_millis(200));
        assert_eq!(c.redis_response_timeout, Duration::from_millis(5000));
        assert_eq!(c.queue_prefix, "rpa-ml");
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.max_projects_per_request, 10_000);
        assert_eq!(c.max_wait, Duration::from_secs(30));
        assert_eq!(c.worker_metrics_port, None);
    }

    #[test]
    fn missing_key_without_debug_fails_naming_ml_api_key() {
        for debug in [None, Some("false"), Some("0"), Some("no")] {
            let mut map = HashMap::new();
            if let Some(debug) = debug {
                map.insert("DEBUG".to_owned(), debug.to_owned());
            }
            let e = Config::from_vars(&map).expect_err("no key and no debug must fail");
            let text = e.to_string();
            assert!(
                text.starts_with("ML_API_KEY: required unless DEBUG=true"),
                "{text}"
            );
        }
        // Blank counts as missing.
        let e = Config::from_vars(&vars(&[("ML_API_KEY", "  \n")])).expect_err("blank key");
        assert!(e.to_string().starts_with("ML_API_KEY:"), "{e}");
    }

    #[test]
    fn key_enables_auth_and_is_trimmed() {
        let c = Config::from_vars(&vars(&[("ML_API_KEY", "s3cret-key\n")]))
            .expect("a key without DEBUG loads");
        assert!(!c.debug);
        let key = c.api_key().expect("auth enabled");
        assert_eq!(key.expose_secret(), "s3cret-key");
        // A key with DEBUG=true still enables auth.
        let c = ok(&[("ML_API_KEY", "k")]);
        assert!(c.api_key().is_some());
    }

    #[test]
    fn debug_output_hides_the_key_and_url_passwords() {
        let c = Config::from_vars(&vars(&[
            ("ML_API_KEY", "hunter2-very-secret"),
            ("DATABASE_URL", "postgres://app:dbpass@db:5432/backend"),
            (
                "ML_STORE_URL",
                "postgresql://ml@db/ml?sslmode=require&password=qpass",
            ),
            ("REDIS_URL", "rediss://:redispass@cache:6380/0"),
        ]))
        .expect("loads");
        let debug = format!("{c:?}");
        for secret in ["hunter2-very-secret", "dbpass", "qpass", "redispass"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(
            debug.contains("postgres://app:***@db:5432/backend"),
            "{debug}"
        );
        assert!(debug.contains("sslmode=require&password=***"), "{debug}");
        assert!(debug.contains("ml_api_key: \"[REDACTED]\""), "{debug}");
        // The real values are still there for the code that connects.
        assert_eq!(c.database_url, "postgres://app:dbpass@db:5432/backend");
    }

    #[test]
    fn error_message_names_variable_expectation_and_value() {
        let e = load(&[("MAX_TRIALS", "ten")]).expect_err("ten is not a number");
        assert_eq!(
            e.to_string(),
            "MAX_TRIALS: expected a positive integer, got \"ten\""
        );
        let e = load(&[("ML_API_PORT", "abc")]).expect_err("abc is not a port");
        assert_eq!(
            e.to_string(),
            "ML_API_PORT: expected a port number 1-65535, got \"abc\""
        );
    }

    #[test]
    fn each_kind_of_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("ML_API_HOST", "http://0.0.0.0"),
            ("ML_API_PORT", "0"),
            ("ML_API_PORT", "65536"),
            ("DEBUG", "maybe"),
            ("LOG_LEVEL", "verbose"),
            ("LOG_LEVEL", "info,foo=loud"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://u:p@h/db"),
            ("DATABASE_URL", "data/backend.csv"),
            ("ML_STORE_URL", "redis://localhost"),
            ("REDIS_URL", "http://localhost:6379"),
            ("REDIS_URL", "redis://"),
            ("ENABLE_HYPERPARAMETER_TUNING", "sure"),
            ("MAX_TRIALS", "0"),
            ("MAX_TRIALS", "-3"),
            ("MIN_TRAINING_SAMPLES", "0"),
            ("COMPLETION_TIME_MAE_THRESHOLD", "0"),
            ("COMPLETION_TIME_MAE_THRESHOLD", "inf"),
            ("COMPLETION_TIME_MAE_THRESHOLD", "NaN"),
            ("BUDGET_VARIANCE_MAE_THRESHOLD", "-0.1"),
            ("RISK_SCORE_ACCURACY_THRESHOLD", "1.5"),
            ("ENABLE_MODEL_MONITORING", "enabled"),
            ("DRIFT_DETECTION_WINDOW", "0"),
            ("RETRAINING_THRESHOLD", "30%"),
            ("ALLOWED_HOSTS", ""),
            ("ALLOWED_HOSTS", "https://example.com"),
            ("ALLOWED_HOSTS", "example.com:http"),
            ("ALLOWED_HOSTS", "a.com,,b.com"),
            ("MAX_WORKERS", "0"),
            ("MAX_WORKERS", "257"),
            ("PREDICTION_TIMEOUT", "0"),
            ("PREDICTION_TIMEOUT", "30s"),
            ("BATCH_SIZE", "100001"),
            ("RETRAIN_CRON", "every monday"),
            ("DRIFT_CRON", "0 0 25 * * * * *"),
            ("MAINTENANCE_CRON", "61 * * * *"),
            ("RETRAIN_CRON", "0 3 * * 8"),
            ("RETRAIN_CRON", "0 3 1 * 1"),
            ("RETRAIN_CRON", "0 0 31 2 *"),
            ("WORKER_DEAD_AFTER_SECS", "2"),
            ("MODEL_RETENTION", "0"),
            ("JOB_MAX_ATTEMPTS", "26"),
            ("JOB_RETENTION_DAYS", "0"),
            ("WORKER_HEARTBEAT_SECS", "0"),
            ("RECONCILE_INTERVAL_SECS", "0"),
            ("RECONCILE_REQUEUE_AFTER_SECS", "soon"),
            ("QUEUE_POLL_INTERVAL_MS", "0"),
            ("QUEUE_POLL_INTERVAL_MS", "60001"),
            ("REDIS_RESPONSE_TIMEOUT_MS", "0"),
            ("REDIS_QUEUE_PREFIX", "rpa ml"),
            ("MAX_BODY_BYTES", "1MB"),
            ("MAX_PROJECTS_PER_REQUEST", "0"),
            ("MAX_WAIT_SECS", "-1"),
            ("WORKER_METRICS_PORT", "70000"),
        ];
        for (name, value) in cases {
            let (var, message) = err(&[(name, value)]);
            assert_eq!(var, *name, "{name}={value:?} blamed {var}: {message}");
            assert!(message.starts_with("expected"), "{name}: {message}");
            if !value.is_empty() && !name.ends_with("_URL") {
                assert!(
                    message.contains(&format!("{value:?}")),
                    "{name}: message should quote the value: {message}"
                );
            }
        }
    }

    #[test]
    fn bad_url_errors_do_not_echo_passwords() {
        let (var, message) = err(&[("DATABASE_URL", "mysql://app:topsecret@db/x")]);
        assert_eq!(var, "DATABASE_URL");
        assert!(!message.contains("topsecret"), "{message}");
        assert!(message.contains("mysql://app:***@db/x"), "{message}");
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for (value, expected) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("Yes", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("NO", false),
        ] {
            let c = ok(&[("ENABLE_HYPERPARAMETER_TUNING", value)]);
            assert_eq!(c.enable_hyperparameter_tuning, expected, "{value}");
        }
    }

    #[test]
    fn blank_values_mean_unset() {
        let c = ok(&[
            ("REDIS_URL", ""),
            ("MLFLOW_TRACKING_URI", " "),
            ("WORKER_METRICS_PORT", ""),
            ("ML_API_PORT", ""),
            ("MAX_TRIALS", ""),
        ]);
        assert_eq!(c.redis_url, None);
        assert_eq!(c.mlflow_tracking_uri, None);
        assert_eq!(c.worker_metrics_port, None);
        assert_eq!(c.port, 8001);
        assert_eq!(c.max_trials, 20);
    }

    #[test]
    fn values_are_parsed() {
        let c = ok(&[
            ("ML_API_HOST", "0.0.0.0"),
            ("ML_API_PORT", "9000"),
            ("LOG_FORMAT", "JSON"),
            ("REDIS_URL", "redis://redis:6379/0"),
            ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
            ("DATABASE_URL", "/srv/backend/backend.db"),
            ("ML_STORE_URL", "sqlite::memory:"),
            ("RISK_SCORE_ACCURACY_THRESHOLD", "1"),
            ("RETRAINING_THRESHOLD", "0"),
            ("PREDICTION_TIMEOUT", "90"),
            ("QUEUE_POLL_INTERVAL_MS", "50"),
            ("MAX_WAIT_SECS", "0"),
            ("WORKER_METRICS_PORT", "9100"),
        ]);
        assert_eq!(c.listen_addr(), "0.0.0.0:9000");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.redis_url.as_deref(), Some("redis://redis:6379/0"));
        assert_eq!(c.mlflow_tracking_uri.as_deref(), Some("http://mlflow:5000"));
        assert_eq!(c.database_url, "sqlite:///srv/backend/backend.db");
        assert_eq!(c.ml_store_url, "sqlite::memory:");
        assert_eq!(c.risk_score_accuracy_threshold, 1.0);
        assert_eq!(c.retraining_threshold, 0.0);
        assert_eq!(c.prediction_timeout, Duration::from_secs(90));
        assert_eq!(c.poll_interval, Duration::from_millis(50));
        assert_eq!(c.max_wait, Duration::ZERO);
        assert_eq!(c.worker_metrics_port, Some(9100));
    }

    #[test]
    fn ipv6_listen_host_is_bracketed_in_listen_addr() {
        for host in ["::", "[::]"] {
            let c = ok(&[("ML_API_HOST", host)]);
            assert_eq!(c.host, "::");
            assert_eq!(c.listen_addr(), "[::]:8001");
            assert!(c.listen_addr().parse::<std::net::SocketAddr>().is_ok());
        }
    }

    #[test]
    fn log_level_accepts_directives_and_python_names() {
        assert_eq!(ok(&[("LOG_LEVEL", "DEBUG")]).log_level, "debug");
        assert_eq!(ok(&[("LOG_LEVEL", "WARNING")]).log_level, "warn");
        assert_eq!(ok(&[("LOG_LEVEL", "critical")]).log_level, "error");
        assert_eq!(
            ok(&[("LOG_LEVEL", "info, rpa_ml=DEBUG,sqlx=warning")]).log_level,
            "info,rpa_ml=debug,sqlx=warn"
        );
        assert_eq!(
            ok(&[("LOG_LEVEL", "warn,[job{kind=train}]=debug")]).log_level,
            "warn,[job{kind=train}]=debug"
        );
    }

    #[test]
    fn cron_five_field_expressions_are_accepted_and_normalized() {
        let cases = [
            ("0 3 * * 1", "0 0 3 * * Mon"),
            ("0 3 * * 0", "0 0 3 * * Sun"),
            ("0 3 * * 7", "0 0 3 * * Sun"),
            ("30 2 * * 1-5", "0 30 2 * * Mon,Tue,Wed,Thu,Fri"),
            ("0 4 * * 5-7", "0 0 4 * * Sun,Fri,Sat"),
            ("0 4 * * */2", "0 0 4 * * Sun,Tue,Thu,Sat"),
            ("0 4 * * 1,3/2", "0 0 4 * * Mon,Wed,Fri"),
            ("0 4 * * mon-fri", "0 0 4 * * mon-fri"),
            ("*/15 * * * *", "0 */15 * * * *"),
            ("0 0 1 * *", "0 0 0 1 * *"),
        ];
        for (raw, expected) in cases {
            assert_eq!(ok(&[("RETRAIN_CRON", raw)]).retrain_cron, expected, "{raw}");
        }
        // The point of the rewrite: crontab's 1 is Monday, and it must stay Monday.
        let c = ok(&[("RETRAIN_CRON", "0 3 * * 1")]);
        let schedule = cron::Schedule::from_str(&c.retrain_cron).expect("stored form parses");
        let sunday = Utc
            .with_ymd_and_hms(2024, 6, 2, 12, 0, 0)
            .single()
            .expect("date");
        let next = schedule.after(&sunday).next().expect("fires");
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!(next.to_rfc3339(), "2024-06-03T03:00:00+00:00");
    }

    #[test]
    fn cron_native_forms_pass_through() {
        let c = ok(&[
            ("RETRAIN_CRON", "0  30 4 * * Sun"),
            ("DRIFT_CRON", "0 0 2 * * * *"),
            ("MAINTENANCE_CRON", "@hourly"),
        ]);
        assert_eq!(c.retrain_cron, "0 30 4 * * Sun");
        assert_eq!(c.drift_cron, "0 0 2 * * * *");
        assert_eq!(c.maintenance_cron, "@hourly");
    }

    #[test]
    fn cron_garbage_is_rejected_naming_the_variable() {
        for raw in [
            "garbage",
            "not a cron at all",
            "0 3 * * 8",
            "0 3 * * 5-1",
            "0 3 * * 1/0",
            "0 0 3 * * Funday",
            "0 0 31 2 *",
            "0 3 1 * 1",
        ] {
            let (var, message) = err(&[("RETRAIN_CRON", raw)]);
            assert_eq!(var, "RETRAIN_CRON", "{raw}");
            assert!(message.contains(&format!("{raw:?}")), "{message}");
        }
    }

    #[test]
    fn worker_dead_after_must_exceed_heartbeat() {
        for dead_after in ["2", "1"] {
            let (var, message) = err(&[("WORKER_DEAD_AFTER_SECS", dead_after)]);
            assert_eq!(var, "WORKER_DEAD_AFTER_SECS");
            assert!(message.contains("WORKER_HEARTBEAT_SECS"), "{message}");
        }
        let (var, _) = err(&[
            ("WORKER_HEARTBEAT_SECS", "30"),
            ("WORKER_DEAD_AFTER_SECS", "20"),
        ]);
        assert_eq!(var, "WORKER_DEAD_AFTER_SECS");
        let c = ok(&[
            ("WORKER_HEARTBEAT_SECS", "5"),
            ("WORKER_DEAD_AFTER_SECS", "6"),
        ]);
        assert_eq!(c.worker_dead_after, Duration::from_secs(6));
    }

    #[test]
    fn allowed_hosts_are_parsed_and_matched() {
        let c = ok(&[(
            "ALLOWED_HOSTS",
            "API.Example.com, localhost:8001, *.internal, 10.0.0.5, [::1]:8001, ml_api",
        )]);
        assert_eq!(
            c.allowed_hosts,
            vec![
                "api.example.com",
                "localhost:8001",
                "*.internal",
                "10.0.0.5",
                "[::1]:8001",
                "ml_api"
            ]
        );
        for allowed in [
            "api.example.com",
            "api.example.com:443",
            "API.EXAMPLE.COM.",
            "localhost:8001",
            "ml.svc.internal",
            "10.0.0.5:8001",
            "[::1]:8001",
            "ml_api:8001",
        ] {
            assert!(c.host_allowed(allowed), "{allowed} should be allowed");
        }
        for refused in [
            "evil.com",
            "example.com",
            "localhost",
            "localhost:9000",
            "internal",
            "[::1]",
            "api.example.com:0",
            "",
        ] {
            assert!(!c.host_allowed(refused), "{refused} should be refused");
        }
        let any = ok(&[("ALLOWED_HOSTS", "example.com,*")]);
        assert_eq!(any.allowed_hosts, vec!["*"]);
        assert!(any.host_allowed("whatever:1234"));
    }

    #[test]
    fn redact_url_leaves_password_free_urls_alone() {
        assert_eq!(
            redact_url("sqlite://data/x.sqlite"),
            "sqlite://data/x.sqlite"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("postgres://user@db/x"), "postgres://user@db/x");
        assert_eq!(redact_url("redis://:pw@cache"), "redis://:***@cache");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    /// `.env.example` must list every variable, and its values must be the defaults.
    #[test]
    fn env_example_lists_every_variable_with_its_default() {
        let example = include_str!("../../.env.example");
        let mut listed = HashMap::new();
        for line in example.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some((name, value)) = line.split_once('=')
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                let previous = listed.insert(name.to_owned(), value.to_owned());
                assert!(previous.is_none(), "{name} is listed twice");
            }
        }
        for var in KNOWN_VARS {
            assert!(listed.contains_key(*var), "{var} missing from .env.example");
        }
        for var in listed.keys() {
            assert!(
                KNOWN_VARS.contains(&var.as_str()),
                "{var} is not read by Config"
            );
        }
        listed.insert("DEBUG".to_owned(), "true".to_owned());
        let from_example = Config::from_vars(&listed).expect(".env.example values load");
        assert_eq!(format!("{from_example:?}"), format!("{:?}", ok(&[])));
    }
}
