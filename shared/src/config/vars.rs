//! Every variable rpa-ml reads, declared once, in `.env.example` order: its
//! doc lines, name, default (as an operator would write it), kind (which
//! carries its bounds), and the `Config` field it fills. The rules between
//! variables follow the declarations.

use secrecy::ExposeSecret;

use super::parse::{
    AllowedHosts, Bool, CallbackHosts, Cron, DatabaseUrl, Days, Float, Int, ListenHost, LogLevel,
    Millis, Optional, Path, Port, QueuePrefix, Reader, RedisUrl, Secret, Secs, Text, TextOrJson,
};
use super::{ConfigError, invalid};

/// One `# --- Title ---` block of `.env.example`.
pub(super) struct Section {
    pub(super) title: &'static str,
    /// Lines printed under the title, before the first group.
    pub(super) intro: &'static [&'static str],
    /// Variables printed together, a blank line between groups.
    pub(super) groups: &'static [&'static [Var]],
}

pub(super) struct Var {
    pub(super) name: &'static str,
    pub(super) default: &'static str,
    pub(super) doc: &'static [&'static str],
}

/// Writes, from one entry per variable, the `Config` struct (the doc lines
/// become the field's rustdoc), `KNOWN_VARS`, the table `.env.example` is
/// rendered from, and the read of each field. A declared variable is
/// therefore always read, once, under its declared name, into a field of
/// the type its kind produces.
///
/// Entry: `/// doc lines` then `NAME = "default", kind => field: Type;`,
/// optionally `, "note"` before the `;` for rustdoc that is not for operators.
macro_rules! declare {
    ($(
        $(#[doc = $intro:literal])*
        section $title:literal {
            $({
                $(
                    $(#[doc = $doc:literal])+
                    $name:ident = $default:literal, $kind:expr
                        => $field:ident: $ty:ty $(, $note:literal)?;
                )+
            })+
        }
    )+) => {
        /// Every setting, read once at start-up and validated before anything
        /// runs ([`Config::from_env`]). Each field's first lines are its
        /// variable's entry in `.env.example`.
        #[derive(Clone)]
        // The doc lines are written for `.env.example`, where `[::1]` is an
        // address, not a link.
        #[allow(rustdoc::broken_intra_doc_links)]
        pub struct Config {
            $($($(
                $(#[doc = $doc])+
                #[doc = ""]
                #[doc = concat!("From `", stringify!($name), "`.")]
                $(#[doc = $note])?
                pub $field: $ty,
            )+)+)+
        }

        /// Every variable [`Config`] reads, in `.env.example` order.
        pub const KNOWN_VARS: &[&str] = &[$($($(stringify!($name),)+)+)+];

        pub(super) const SECTIONS: &[Section] = &[$(
            Section {
                title: $title,
                intro: &[$($intro),*],
                groups: &[$(&[$(
                    Var {
                        name: stringify!($name),
                        default: $default,
                        doc: &[$($doc),+],
                    },
                )+],)+],
            },
        )+];

        impl Config {
            /// Each variable on its own; `check_rules` then checks them together.
            pub(super) fn read_each(r: &Reader<'_>) -> Result<Config, ConfigError> {
                Ok(Config {
                    $($($($field: r.read(stringify!($name), $default, &$kind)?,)+)+)+
                })
            }
        }

        /// Field names, for the test that the hand-written `Debug` shows them all.
        #[cfg(test)]
        pub(super) const FIELDS: &[&str] = &[$($($(stringify!($field),)+)+)+];

        /// Each variable's bounds as its kind states them, for the doc test.
        #[cfg(test)]
        pub(super) fn kind_bounds() -> Vec<(&'static str, Option<String>)> {
            vec![$($($((stringify!($name), super::parse::Kind::bounds(&$kind)),)+)+)+]
        }
    };
}

declare! {
    section "HTTP API" {
        {
            /// Address the api role listens on; 0.0.0.0 (or ::) to accept outside connections.
            ML_API_HOST = "127.0.0.1", ListenHost => host: String;
            /// Port the api role listens on (1-65535).
            ML_API_PORT = "8001", Port => port: u16;
        }
        {
            /// Debug mode (true/false/1/0/yes/no). Only with true may ML_API_KEY be empty,
            /// which disables authentication. Never true in production.
            DEBUG = "false", Bool => debug: bool;
        }
    }

    section "Security" {
        {
            /// Bearer / X-API-Key token guarding every mutating and ops endpoint.
            /// REQUIRED unless DEBUG=true. Use a long random value: openssl rand -hex 32
            ML_API_KEY = "", Secret => ml_api_key: secrecy::SecretString,
                "Empty only when `debug` is true; use [`Config::api_key`].";
        }
        {
            /// Host headers to accept: "*" for any, or a comma-separated list of hostnames,
            /// each with an optional :port (without one, any port); *.example.com matches
            /// subdomains of example.com. IPv6 literals in brackets, like [::1]:8001.
            /// /health, /ready and /metrics answer any host (probes call them by address).
            ALLOWED_HOSTS = "*", AllowedHosts => allowed_hosts: Vec<String>,
                "Stored lower-cased, or as exactly `[\"*\"]` for any host; use [`Config::host_allowed`].";
        }
        {
            /// Largest request body accepted, in bytes (>= 1).
            MAX_BODY_BYTES = "1048576", Int::at_least(1).in_unit("bytes")
                => max_body_bytes: usize;
            /// Most projects one prediction request may name (>= 1).
            MAX_PROJECTS_PER_REQUEST = "10000", Int::at_least(1)
                => max_projects_per_request: usize;
            /// Longest a client may block on ?wait= for a job's result, in seconds (0 disables waiting).
            MAX_WAIT_SECS = "30", Secs { min: 0 } => max_wait: std::time::Duration;
        }
    }

    section "Callbacks and job event streams" {
        {
            /// Hosts a job's callback_url may point at: a comma-separated list of hostnames or
            /// IP addresses, each with an optional :port (without one, any port);
            /// *.example.com matches subdomains of example.com. Empty: callbacks are refused
            /// (no callbacks to arbitrary addresses). "*" is not accepted: name the receivers.
            CALLBACK_ALLOWED_HOSTS = "", CallbackHosts => callback_allowed_hosts: Vec<String>,
                "Stored lower-cased; use [`Config::callback_host_allowed`].";
            /// Key of the HMAC-SHA256 signature on every callback, one per deployment; the
            /// receiver holds the same value. REQUIRED when CALLBACK_ALLOWED_HOSTS is set.
            /// Use a long random value: openssl rand -hex 32
            CALLBACK_SECRET = "", Secret => callback_secret: secrecy::SecretString;
            /// Deliveries tried per callback before it is marked failed (1-100).
            CALLBACK_MAX_ATTEMPTS = "8", Int::between(1, 100) => callback_max_attempts: u32;
            /// Pause after the first failed delivery, in milliseconds, doubled after each
            /// further failure up to an hour (1-3600000).
            CALLBACK_BACKOFF_MS = "1000", Millis { max: Some(3_600_000) }
                => callback_backoff: std::time::Duration;
            /// Longest one delivery may take, connect to response, in seconds (>= 1).
            CALLBACK_TIMEOUT_SECS = "10", Secs { min: 1 } => callback_timeout: std::time::Duration;
        }
        {
            /// Concurrent GET /api/v1/jobs/{id}/events streams one api process serves; past
            /// it a new stream is refused with 503 too_many_streams (1-100000).
            EVENTS_MAX_STREAMS = "100", Int::between(1, 100_000) => events_max_streams: usize;
            /// Longest one event stream stays open, in seconds; it then ends with a
            /// `timeout` event and the client reconnects (>= 1).
            EVENTS_MAX_SECS = "300", Secs { min: 1 } => events_max: std::time::Duration;
        }
    }

    section "Logging" {
        {
            /// A level (trace, debug, info, warn, error, off; WARNING and CRITICAL are read
            /// as warn and error) or tracing EnvFilter directives, such as
            /// "info,rpa_ml_worker=debug". RUST_LOG, when set, overrides it.
            LOG_LEVEL = "info", LogLevel => log_level: String,
                "Stored as normalised `EnvFilter` directives.";
            /// Log line format: text or json.
            LOG_FORMAT = "text", TextOrJson => log_format: super::LogFormat;
        }
    }

    section "Data" {
        {
            /// The backend's database, opened read-only: sqlite:..., postgres://...,
            /// postgresql://..., or a path ending .sqlite or .db.
            DATABASE_URL = "sqlite://data/backend.sqlite", DatabaseUrl => database_url: String,
                "A bare path is stored as `sqlite://<path>`.";
            /// This service's own store (jobs, model registry, monitoring); same forms.
            ML_STORE_URL = "sqlite://data/ml-store.sqlite", DatabaseUrl => ml_store_url: String,
                "A bare path is stored as `sqlite://<path>`.";
            /// Directory for this host's copy of model artifacts (the ML store keeps them;
            /// workers fetch and verify what they lack), so no volume need be shared.
            MODEL_STORAGE_PATH = "data/models", Path => model_storage_path: std::path::PathBuf;
            /// Directory for computed feature sets.
            FEATURE_STORE_PATH = "data/features", Path => feature_store_path: std::path::PathBuf;
        }
    }

    section "Queue" {
        {
            /// Redis for the job queues (redis:// or rediss://). Unset: the embedded
            /// SQLite queue, for `standalone`.
            REDIS_URL = "", Optional(RedisUrl) => redis_url: Option<String>;
            /// Prefix for every Redis key this service writes (no spaces).
            REDIS_QUEUE_PREFIX = "rpa-ml", QueuePrefix => queue_prefix: String;
            /// How long to wait for a Redis reply before giving up, in milliseconds (>= 1).
            REDIS_RESPONSE_TIMEOUT_MS = "5000", Millis { max: None }
                => redis_response_timeout: std::time::Duration;
            /// Seconds a finished job's message (payload, status, done entry) stays on the
            /// queue after the job ends; workers sweep older ones away (0: at the next
            /// sweep). The ML store keeps every job; the queue only carries work.
            REDIS_RETENTION_SECS = "300", Secs { min: 0 } => redis_retention: std::time::Duration;
            /// How often an idle worker polls for new jobs, in milliseconds (1-60000).
            QUEUE_POLL_INTERVAL_MS = "200", Millis { max: Some(60_000) }
                => poll_interval: std::time::Duration;
            /// Prediction jobs one worker runs at once (1-256).
            MAX_WORKERS = "4", Int::between(1, 256) => max_workers: usize;
            /// Longest a prediction job may run, in seconds (>= 1).
            PREDICTION_TIMEOUT = "30", Secs { min: 1 } => prediction_timeout: std::time::Duration;
            /// Longest a prediction waits, in seconds, for a queued or running retrain to give
            /// its target a first production model; past it, it fails saying there is none (>= 1).
            FIRST_MODEL_WAIT_SECS = "3600", Secs { min: 1 }
                => first_model_wait: std::time::Duration;
            /// Projects scored per chunk of a prediction job (1-100000).
            BATCH_SIZE = "500", Int::between(1, 100_000) => batch_size: usize;
            /// Attempts per job before it is marked dead (1-25).
            JOB_MAX_ATTEMPTS = "3", Int::between(1, 25) => job_max_attempts: u32;
            /// Days finished jobs and their results are kept (>= 1).
            // Zero would delete results before the backend has polled them.
            JOB_RETENTION_DAYS = "7", Days => job_retention_days: u32;
            /// Days failed and dead jobs are kept, for investigation (>= 1).
            FAILED_JOB_RETENTION_DAYS = "30", Days => failed_job_retention_days: u32;
            /// Days stored per-project predictions are kept; realised performance is
            /// measured on them when their projects close (>= 1).
            PREDICTION_RETENTION_DAYS = "180", Days => prediction_retention_days: u32;
            /// Hours an Idempotency-Key is remembered: a POST that repeats it with the same
            /// body within them answers the job the first one created (1-8760).
            IDEMPOTENCY_RETENTION_HOURS = "24", Int::between(1, 8760)
                => idempotency_retention_hours: u32;
            /// How often a worker reports it is alive, in seconds (>= 1).
            WORKER_HEARTBEAT_SECS = "2", Secs { min: 1 } => worker_heartbeat: std::time::Duration;
            /// Silence after which a worker counts as dead on the roster (and its jobs
            /// claimed before job leases existed are recovered), in seconds (must be more
            /// than WORKER_HEARTBEAT_SECS).
            WORKER_DEAD_AFTER_SECS = "10", Secs { min: 1 }
                => worker_dead_after: std::time::Duration;
            /// Lease of a running job, in seconds (>= 3): its worker renews it every third
            /// of this while the job runs, and the reconciler takes back a job whose lease
            /// ran out, even if its worker still heart-beats.
            JOB_LEASE_SECS = "15", Secs { min: 3 } => job_lease: std::time::Duration;
            /// How often the reconciler compares the jobs table with the queue, in seconds (>= 1).
            RECONCILE_INTERVAL_SECS = "5", Secs { min: 1 }
                => reconcile_interval: std::time::Duration;
            /// Age after which a queued job missing from the queue is pushed again, in seconds (>= 1).
            RECONCILE_REQUEUE_AFTER_SECS = "15", Secs { min: 1 }
                => requeue_after: std::time::Duration;
            /// Port for a worker's /metrics endpoint (1-65535). Unset: no endpoint.
            WORKER_METRICS_PORT = "", Optional(Port) => worker_metrics_port: Option<u16>;
        }
    }

    /// Cron expressions with seconds: sec min hour day-of-month month day-of-week
    /// [year], where day-of-week numbers run 1 (Sunday) to 7; prefer names (Mon).
    /// Classic 5-field crontab lines (0 or 7 = Sunday, 1 = Monday) are accepted too
    /// and converted.
    section "Schedules" {
        {
            /// Retraining of every model; default Mondays 03:00.
            RETRAIN_CRON = "0 0 3 * * Mon", Cron => retrain_cron: String,
                "Stored with a seconds field, as `cron::Schedule::from_str` takes it.";
            /// Drift check; default daily 02:00.
            DRIFT_CRON = "0 0 2 * * *", Cron => drift_cron: String,
                "Stored with a seconds field, as `cron::Schedule::from_str` takes it.";
            /// Maintenance (retention, reconciliation sweep); default hourly.
            MAINTENANCE_CRON = "0 0 * * * *", Cron => maintenance_cron: String,
                "Stored with a seconds field, as `cron::Schedule::from_str` takes it.";
            /// Batch scoring of every open project for every target with a production
            /// model, kept as each project's latest forecast; default daily 01:00.
            SCORE_CRON = "0 0 1 * * *", Cron => score_cron: String,
                "Stored with a seconds field, as `cron::Schedule::from_str` takes it.";
            /// Age in seconds past which a kept forecast is answered `stale` (>= 1);
            /// default 36 hours, so one missed daily run shows.
            SCORE_MAX_AGE = "129600", Secs { min: 1 } => score_max_age: std::time::Duration;
            /// A tick missed while every scheduler was down is enqueued once when one comes
            /// back, if it is younger than this many seconds (0: never catch up).
            SCHEDULER_CATCHUP_MAX_AGE_SECS = "21600", Secs { min: 0 }
                => scheduler_catchup_max_age: std::time::Duration;
            /// Days a tick's idempotency key is kept (must exceed the catch-up age).
            // A tick key must outlive the catch-up window, or a scheduler
            // coming back could enqueue a tick that already ran.
            SCHEDULE_TICK_TTL_DAYS = "30", Days => schedule_tick_ttl_days: u32;
        }
    }

    section "Training" {
        {
            /// Search hyperparameters with cross-validation (true/false).
            ENABLE_HYPERPARAMETER_TUNING = "false", Bool => enable_hyperparameter_tuning: bool;
            /// Trials per search (>= 1).
            MAX_TRIALS = "20", Int::at_least(1) => max_trials: u32;
            /// Fewest training examples a model is fitted on (>= 1).
            MIN_TRAINING_SAMPLES = "50", Int::at_least(1) => min_training_samples: usize;
            /// Model versions kept per target (>= 1).
            MODEL_RETENTION = "5", Int::at_least(1) => model_retention: usize;
        }
    }

    section "Promotion gates: a candidate must do at least this well" {
        {
            /// Largest mean absolute error for completion time, in days (> 0).
            COMPLETION_TIME_MAE_THRESHOLD = "5.0", Float::Positive
                => completion_time_mae_threshold: f64;
            /// Largest mean absolute error for budget variance, as a fraction of budget (> 0).
            BUDGET_VARIANCE_MAE_THRESHOLD = "0.15", Float::Positive
                => budget_variance_mae_threshold: f64;
            /// Smallest accuracy for the risk classifier (0 to 1).
            RISK_SCORE_ACCURACY_THRESHOLD = "0.75", Float::ZeroToOne
                => risk_score_accuracy_threshold: f64;
        }
    }

    section "Monitoring" {
        {
            /// Drift checks and realised-error tracking (true/false).
            ENABLE_MODEL_MONITORING = "true", Bool => enable_model_monitoring: bool;
            /// Days of recent data compared with a model's training data (>= 1).
            DRIFT_DETECTION_WINDOW = "30", Days => drift_detection_window_days: u32;
            /// Share of drifted features above which a retrain is enqueued (0 to 1).
            RETRAINING_THRESHOLD = "0.3", Float::ZeroToOne => retraining_threshold: f64;
        }
    }

    section "MLflow (optional)" {
        {
            /// Runs and model versions are also exported when this is an http(s) URL.
            MLFLOW_TRACKING_URI = "", Optional(Text) => mlflow_tracking_uri: Option<String>;
            /// Experiment name used for that export.
            MLFLOW_EXPERIMENT_NAME = "rpa-ml", Text => mlflow_experiment_name: String;
        }
    }
}

/// The rules between variables, each written once; checked after every
/// variable has been read on its own.
pub(super) fn check_rules(c: &Config) -> Result<(), ConfigError> {
    if c.ml_api_key.expose_secret().is_empty() && !c.debug {
        return Err(invalid(
            "ML_API_KEY",
            "required unless DEBUG=true (an empty key disables authentication, \
             which is only allowed in debug); set a long random value, \
             e.g. from `openssl rand -hex 32`",
        ));
    }
    if !c.callback_allowed_hosts.is_empty() && c.callback_secret.expose_secret().is_empty() {
        return Err(invalid(
            "CALLBACK_SECRET",
            "required when CALLBACK_ALLOWED_HOSTS is set (every callback is signed with it); \
             set a long random value, e.g. from `openssl rand -hex 32`",
        ));
    }
    if c.worker_dead_after <= c.worker_heartbeat {
        return Err(invalid(
            "WORKER_DEAD_AFTER_SECS",
            format!(
                "expected more seconds than WORKER_HEARTBEAT_SECS ({}), got \"{}\"",
                c.worker_heartbeat.as_secs(),
                c.worker_dead_after.as_secs()
            ),
        ));
    }
    Ok(())
}

const HEADER: &str = r#"# rpa-ml configuration.
#
# Copy to .env (`cp .env.example .env`) and uncomment what you change; every
# value below is the default. Variables in the real environment win over .env.
# .env feeds rpa-ml's configuration only: it is not exported to the process,
# so put RUST_LOG in the real environment if you use it.
# A blank value means "use the default" (ALLOWED_HOSTS excepted: blank is an error).
# Invalid values stop start-up with a message naming the variable.
#
# Run with neither ML_API_KEY nor DEBUG=true and the service refuses to start.
"#;

/// The text of `.env.example`: every variable, commented out at its default,
/// under its doc lines. A test keeps the committed file equal to it.
pub fn env_example() -> String {
    // `///` lines arrive with the space that follows the slashes.
    let line = |out: &mut String, text: &str| {
        let text = text.strip_prefix(' ').unwrap_or(text);
        out.push_str(format!("# {text}").trim_end());
        out.push('\n');
    };
    let mut out = HEADER.to_owned();
    for section in SECTIONS {
        let rule = format!("\n# --- {} ", section.title);
        out.push_str(&format!("{rule:-<81}\n"));
        for text in section.intro {
            line(&mut out, text);
        }
        for group in section.groups {
            out.push('\n');
            for var in *group {
                for text in var.doc {
                    line(&mut out, text);
                }
                out.push_str(&format!("# {}={}\n", var.name, var.default));
            }
        }
    }
    out
}

/// The declared variable an unknown name most likely meant: the nearest by
/// edit distance (a swap of neighbours counts as one edit; case is ignored),
/// if it is near enough to be a slip rather than another program's variable.
pub(super) fn nearest_known(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    let limit = (name.len() / 4).max(2);
    KNOWN_VARS
        .iter()
        .map(|known| (edit_distance(&name, known), *known))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of adjacent bytes each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
