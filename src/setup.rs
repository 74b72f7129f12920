//! What every role does before its loop: load the configuration, open the
//! store, the queue and the backend database, and listen for shutdown.

use std::collections::HashMap;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::backend::BackendDb;
use rpa_ml_shared::config::{Config, ConfigWarning};
use rpa_ml_shared::queue::{Queue, QueueSettings};
use rpa_ml_shared::store::Store;
use rpa_ml_shared::telemetry;

/// `.env` (if present), then the process environment, then `overrides`.
/// Also returns the warnings about `.env` (entries rpa-ml does not read),
/// for [`init_telemetry`] to log once logging is up.
pub fn load_config(
    overrides: &HashMap<String, String>,
) -> anyhow::Result<(Config, Vec<ConfigWarning>)> {
    let (mut vars, warnings) = Config::env_vars_and_warnings()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    let config =
        Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok((config, warnings))
}

/// Starts logging as configured, then logs the configuration's warnings.
pub fn init_telemetry(config: &Config, warnings: &[ConfigWarning]) -> anyhow::Result<()> {
    telemetry::init(&config.log_level, config.log_format)?;
    for w in warnings {
        tracing::warn!(config.var = w.var(), "{w}");
    }
    Ok(())
}

/// Open connections shared by the roles of one process.
pub struct Connections {
    pub store: Store,
    pub queue: Queue,
    pub backend: BackendDb,
}

/// The ML store with a pool of `pool` connections, migrated.
pub async fn open_store(config: &Config, pool: u32) -> anyhow::Result<Store> {
    let store = Store::connect(&config.ml_store_url, pool)
        .await
        .with_context(|| {
            format!(
                "ML_STORE_URL: cannot open {}",
                rpa_ml_shared::config::redact_url(&config.ml_store_url)
            )
        })?;
    store.migrate().await.context("migrating the ML store")?;
    Ok(store)
}

pub async fn connect(config: &Config) -> anyhow::Result<Connections> {
    let store = open_store(config, 16).await?;
    let queue = match (&config.redis_url, &store) {
        (Some(url), _) => Queue::connect_redis(
            url,
            &QueueSettings {
                prefix: config.queue_prefix.clone(),
                response_timeout: config.redis_response_timeout,
            },
        )
        .await
        .with_context(|| {
            format!(
                "REDIS_URL: cannot connect to {}",
                rpa_ml_shared::config::redact_url(url)
            )
        })?,
        (None, Store::Sqlite(_)) => {
            // apalis-sqlite keeps its own migration history, so the queue
            // lives in its own file beside the store.
            let path = embedded_queue_path(&config.ml_store_url);
            Queue::connect_sqlite_file(&path)
                .await
                .with_context(|| format!("setting up the embedded queue in {path}"))?
        }
        (None, Store::Postgres(_)) => bail!(
            "REDIS_URL: required when ML_STORE_URL is PostgreSQL (the embedded queue lives in a SQLite ML store)"
        ),
    };
    let backend = BackendDb::connect(&config.database_url, 8)
        .await
        .with_context(|| {
            format!(
                "DATABASE_URL: cannot open {}",
                rpa_ml_shared::config::redact_url(&config.database_url)
            )
        })?;
    Ok(Connections {
        store,
        queue,
        backend,
    })
}

/// `data/ml-store.sqlite` → `data/ml-store-queue.sqlite`.
fn embedded_queue_path(store_url: &str) -> String {
    let path = rpa_ml_shared::store::sqlite_path(store_url);
    match path
        .strip_suffix(".sqlite")
        .or_else(|| path.strip_suffix(".db"))
    {
        Some(stem) => format!("{stem}-queue.sqlite"),
        None => format!("{path}-queue.sqlite"),
    }
}

/// Cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutdown signal received; finishing in-flight work");
        t.cancel();
    });
    token
}

/// The api's listening socket (`ML_API_HOST`, `ML_API_PORT`).
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| {
            format!(
                "ML_API_HOST/ML_API_PORT: cannot listen on {}",
                config.listen_addr()
            )
        })
}
