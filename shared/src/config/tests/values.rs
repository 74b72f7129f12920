use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc, Weekday};
use secrecy::ExposeSecret;

use super::{err, load, ok, vars};
use crate::config::{Config, LogFormat, redact_url};

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
    assert_eq!(c.job_lease, Duration::from_secs(15));
    assert_eq!(c.reconcile_interval, Duration::from_secs(5));
    assert_eq!(c.requeue_after, Duration::from_secs(15));
    assert_eq!(c.poll_interval, Duration::from_millis(200));
    assert_eq!(c.redis_response_timeout, Duration::from_millis(5000));
    assert_eq!(c.redis_retention, Duration::from_secs(300));
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
        ("JOB_LEASE_SECS", "2"),
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
