//! Configuration: one typed struct, read once at start-up from the
//! environment (and `.env`), validated before anything else runs. Every error
//! names the variable and says what was expected, so a bad deployment stops
//! with a message an operator can act on.
//!
//! Each variable is declared once, in `vars.rs` (doc lines, name, default,
//! kind with its bounds, field), and a declarative macro writes from that
//! entry the `Config` field, its read, [`KNOWN_VARS`] and its `.env.example`
//! text. A macro rather than a const table looked up by name: the table would
//! still need a hand-written read per field, naming the variable again, with
//! the field's type matched to its kind only by a test; the macro's reads are
//! checked by the compiler. Defaults are written as an operator would write
//! them and go through the same parser as a real value, so `.env.example`
//! shows them verbatim and a default outside its bounds fails a test.
//! `Debug` stays hand-written below, because it redacts secrets.
//!
//! `vars.rs`: the declarations, the rules between variables, `.env.example`.
//! `parse.rs`, `cron.rs`: the kinds of value and their parsers.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;

use secrecy::{ExposeSecret, SecretString};

mod cron;
mod parse;
#[cfg(test)]
mod tests;
mod vars;

pub use vars::{Config, KNOWN_VARS, env_example};

use parse::{Reader, normalize_host, split_host_port};

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

/// Something in the configuration an operator should hear about that is no
/// reason to refuse to start. Returned rather than logged, because loading
/// happens before telemetry is up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A `.env` entry no variable is declared for: almost always a typo
    /// (`ML_API_PROT`), which would otherwise leave the default in force
    /// without a word.
    UnknownVar {
        name: String,
        /// The declared variable it most likely meant, if one is close.
        nearest: Option<&'static str>,
    },
}

impl ConfigWarning {
    fn unknown_var(name: &str) -> ConfigWarning {
        ConfigWarning::UnknownVar {
            name: name.to_owned(),
            nearest: vars::nearest_known(name),
        }
    }

    /// The variable the warning is about, for a structured log field.
    pub fn var(&self) -> &str {
        match self {
            ConfigWarning::UnknownVar { name, .. } => name,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownVar {
                name,
                nearest: Some(known),
            } => write!(
                f,
                "{name} is set in .env but rpa-ml reads no such variable; did you mean {known}?"
            ),
            ConfigWarning::UnknownVar {
                name,
                nearest: None,
            } => write!(
                f,
                "{name} is set in .env but rpa-ml reads no such variable; it is ignored"
            ),
        }
    }
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
        Self::env_vars_and_warnings().map(|(vars, _)| vars)
    }

    /// [`Config::env_vars`], with a warning for every `.env` entry that is
    /// not a variable rpa-ml reads, for the caller to log once telemetry is
    /// up. Only `.env` is checked: the process environment is shared with
    /// every other program.
    pub fn env_vars_and_warnings()
    -> Result<(HashMap<String, String>, Vec<ConfigWarning>), ConfigError> {
        read_env(dotenvy::dotenv_iter())
    }

    /// Same rules over an explicit map (for tests and for `standalone` overrides); missing keys take defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let config = Config::read_each(&Reader { vars })?;
        vars::check_rules(&config)?;
        Ok(config)
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
        hosts_match(&self.allowed_hosts, host_header)
    }

    /// Whether a callback may go to `host_port` (a URL's host, IPv6 in
    /// brackets, and its port): `CALLBACK_ALLOWED_HOSTS`, matched as
    /// [`Config::host_allowed`] matches. Nothing is allowed when it is empty.
    pub fn callback_host_allowed(&self, host_port: &str) -> bool {
        hosts_match(&self.callback_allowed_hosts, host_port)
    }
}

/// Whether `host_header` (host, optional port) is one of `allowed`.
fn hosts_match(allowed: &[String], host_header: &str) -> bool {
    let Some((host, port)) = split_host_port(host_header.trim()) else {
        return false;
    };
    let host = normalize_host(host);
    allowed.iter().any(|entry| {
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.ml_api_key.expose_secret().is_empty() {
            "(empty: auth disabled)"
        } else {
            "[REDACTED]"
        };
        let secret = if self.callback_secret.expose_secret().is_empty() {
            "(not set)"
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
            .field("first_model_wait", &self.first_model_wait)
            .field("batch_size", &self.batch_size)
            .field("retrain_cron", &self.retrain_cron)
            .field("drift_cron", &self.drift_cron)
            .field("maintenance_cron", &self.maintenance_cron)
            .field("score_cron", &self.score_cron)
            .field("score_max_age", &self.score_max_age)
            .field("model_retention", &self.model_retention)
            .field("job_max_attempts", &self.job_max_attempts)
            .field("job_retention_days", &self.job_retention_days)
            .field("failed_job_retention_days", &self.failed_job_retention_days)
            .field("prediction_retention_days", &self.prediction_retention_days)
            .field(
                "idempotency_retention_hours",
                &self.idempotency_retention_hours,
            )
            .field("scheduler_catchup_max_age", &self.scheduler_catchup_max_age)
            .field("schedule_tick_ttl_days", &self.schedule_tick_ttl_days)
            .field("worker_heartbeat", &self.worker_heartbeat)
            .field("worker_dead_after", &self.worker_dead_after)
            .field("job_lease", &self.job_lease)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("requeue_after", &self.requeue_after)
            .field("poll_interval", &self.poll_interval)
            .field("redis_response_timeout", &self.redis_response_timeout)
            .field("redis_retention", &self.redis_retention)
            .field("queue_prefix", &self.queue_prefix)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_projects_per_request", &self.max_projects_per_request)
            .field("max_wait", &self.max_wait)
            .field("callback_allowed_hosts", &self.callback_allowed_hosts)
            .field("callback_secret", &secret)
            .field("callback_max_attempts", &self.callback_max_attempts)
            .field("callback_backoff", &self.callback_backoff)
            .field("callback_timeout", &self.callback_timeout)
            .field("events_max_streams", &self.events_max_streams)
            .field("events_max", &self.events_max)
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

/// `.env` (when `dotenv` found one) overlaid by the process environment.
fn read_env(
    dotenv: dotenvy::Result<dotenvy::Iter<File>>,
) -> Result<(HashMap<String, String>, Vec<ConfigWarning>), ConfigError> {
    let mut vars = HashMap::new();
    let mut warnings = Vec::new();
    match dotenv {
        Ok(iter) => {
            for item in iter {
                let (key, value) = item.map_err(dotenv_error)?;
                if !KNOWN_VARS.contains(&key.as_str()) && !vars.contains_key(&key) {
                    warnings.push(ConfigWarning::unknown_var(&key));
                }
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
    Ok((vars, warnings))
}
