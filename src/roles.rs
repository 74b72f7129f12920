//! Wiring: configuration → connections → the role's loop.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use rpa_ml_api::AppState;
use rpa_ml_shared::backend::{self, BackendDb};
use rpa_ml_shared::config::Config;
use rpa_ml_shared::jobs::{JobPayload, QueueName, RetrainJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::queue::{Queue, QueueSettings};
use rpa_ml_shared::store::Store;
use rpa_ml_shared::{demo, submit, telemetry};
use rpa_ml_worker::{WorkerOptions, WorkerState};

use crate::cli::{Cli, Command, DemoArgs, StandaloneArgs};

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::DemoData(args) => demo_data(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Standalone(args) => standalone(args).await,
        Command::Train(args) => crate::train::run(args).await,
        other => {
            let config = Arc::new(load_config(&HashMap::new())?);
            telemetry::init(&config.log_level, config.log_format)?;
            match other {
                Command::Api(a) => {
                    let mut c = (*config).clone();
                    if let Some(p) = a.port {
                        c.port = p;
                    }
                    api(Arc::new(c)).await
                }
                Command::Worker(w) => {
                    let queues = w
                        .queues
                        .iter()
                        .map(|q| QueueName::from_str(q).map_err(anyhow::Error::msg))
                        .collect::<anyhow::Result<Vec<_>>>()
                        .context("--queues")?;
                    let opts = WorkerOptions {
                        queues,
                        concurrency: w.concurrency.unwrap_or(config.max_workers),
                        reconcile: !w.no_reconcile,
                    };
                    worker(config, opts).await
                }
                Command::Scheduler => scheduler(config).await,
                Command::Migrate => migrate(config).await,
                Command::DemoData(_)
                | Command::Bench(_)
                | Command::Standalone(_)
                | Command::Train(_) => Ok(()),
            }
        }
    }
}

/// `.env` (if present), then the process environment, then `overrides`.
pub fn load_config(overrides: &HashMap<String, String>) -> anyhow::Result<Config> {
    let mut vars = Config::env_vars().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// Open connections shared by the roles of one process.
pub struct Connections {
    pub store: Store,
    pub queue: Queue,
    pub backend: BackendDb,
}

pub async fn connect(config: &Config) -> anyhow::Result<Connections> {
    let store = Store::connect(&config.ml_store_url, 16)
        .await
        .with_context(|| {
            format!(
                "ML_STORE_URL: cannot open {}",
                rpa_ml_shared::config::redact_url(&config.ml_store_url)
            )
        })?;
    store.migrate().await.context("migrating the ML store")?;
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

async fn api(config: Arc<Config>) -> anyhow::Result<()> {
    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    let listener = tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| {
            format!(
                "ML_API_HOST/ML_API_PORT: cannot listen on {}",
                config.listen_addr()
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, queue = conns.queue.backend_name(), store = conns.store.backend_name(), "api listening");
    let state = AppState::new(config, conns.store, conns.queue, conns.backend);
    rpa_ml_api::serve(listener, state, async move { shutdown.cancelled().await }).await?;
    Ok(())
}

async fn worker(config: Arc<Config>, opts: WorkerOptions) -> anyhow::Result<()> {
    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    let state = WorkerState::new(
        config,
        conns.store,
        conns.queue,
        conns.backend,
        rpa_ml_worker::process_name(),
    );
    if let Some(port) = state.config.worker_metrics_port {
        // Bind before taking jobs, so a taken port stops start-up.
        let host = state.config.host.clone();
        let s = shutdown.clone();
        let server =
            tokio::spawn(async move { rpa_ml_worker::metrics_server::serve(&host, port, s).await });
        tokio::task::yield_now().await;
        if server.is_finished() {
            return server.await?;
        }
        let (run, _) = tokio::join!(rpa_ml_worker::run(state, opts, shutdown.clone()), async {
            match server.await {
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "worker metrics server stopped");
                    shutdown.cancel();
                }
                Err(e) => tracing::error!(error = %e, "worker metrics server panicked"),
                Ok(Ok(())) => {}
            }
        });
        return run;
    }
    rpa_ml_worker::run(state, opts, shutdown).await
}

async fn scheduler(config: Arc<Config>) -> anyhow::Result<()> {
    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    rpa_ml_scheduler::run(config, conns.store, conns.queue, shutdown).await
}

async fn migrate(config: Arc<Config>) -> anyhow::Result<()> {
    let conns = connect(&config).await?;
    println!(
        "ML store ({}) and queue ({}) are up to date",
        conns.store.backend_name(),
        conns.queue.backend_name()
    );
    Ok(())
}

async fn demo_data(args: DemoArgs) -> anyhow::Result<()> {
    let as_of = args
        .as_of
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let started = std::time::Instant::now();
    let data = demo::generate(&demo::DemoConfig {
        projects: args.projects,
        seed: args.seed,
        as_of,
        shift: args.shift,
    });
    let s = data.summary();
    let target = if let Some(out) = &args.out {
        if out.exists() {
            bail!(
                "--out: {} already exists; remove it or choose another file",
                out.display()
            );
        }
        if let Some(parent) = out.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        demo::write_sqlite(out, &data).await?;
        out.display().to_string()
    } else if let Some(url) = &args.database_url {
        demo::write_postgres(url, &data).await?;
        rpa_ml_shared::config::redact_url(url)
    } else {
        bail!("give --out FILE.sqlite or --database-url postgres://...");
    };
    println!(
        "wrote {} projects ({} open, {} completed, {} cancelled), {} tasks, {} time entries, {} expenses to {target} in {:.2}s (seed {}, as of {as_of})",
        s.projects,
        s.open,
        s.completed,
        s.cancelled,
        s.tasks,
        s.time_entries,
        s.expenses,
        started.elapsed().as_secs_f64(),
        args.seed
    );
    Ok(())
}

/// Everything in one process on SQLite.
async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut overrides = HashMap::new();
    let env = Config::env_vars().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let env_or = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let path_in = |name: &str| dir.join(name).to_string_lossy().into_owned();
    if env_or("DATABASE_URL").is_none() {
        overrides.insert(
            "DATABASE_URL".into(),
            format!("sqlite://{}", path_in("backend.sqlite")),
        );
    }
    if env_or("ML_STORE_URL").is_none() {
        overrides.insert(
            "ML_STORE_URL".into(),
            format!("sqlite://{}", path_in("ml-store.sqlite")),
        );
    }
    if env_or("MODEL_STORAGE_PATH").is_none() {
        overrides.insert("MODEL_STORAGE_PATH".into(), path_in("models"));
    }
    if env_or("FEATURE_STORE_PATH").is_none() {
        overrides.insert("FEATURE_STORE_PATH".into(), path_in("features"));
    }
    // The embedded default is one process: its queue is SQLite, whatever
    // REDIS_URL says.
    overrides.insert("REDIS_URL".into(), String::new());
    if let Some(p) = args.port {
        overrides.insert("ML_API_PORT".into(), p.to_string());
    }
    // A newcomer has no key yet: make one, keep it, and print it.
    let generated_key = if env_or("ML_API_KEY").is_none() {
        let key = standalone_key(dir)?;
        overrides.insert("ML_API_KEY".into(), key.clone());
        Some(key)
    } else {
        None
    };
    let config = Arc::new(load_config(&overrides)?);
    telemetry::init(&config.log_level, config.log_format)?;

    if let Some(path) = backend::sqlite_path(&config.database_url)
        && !path.exists()
    {
        println!(
            "DATABASE_URL names no database yet: generating {} demo projects into {}",
            args.demo_projects,
            path.display()
        );
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let data = demo::generate(&demo::DemoConfig {
            projects: args.demo_projects,
            seed: 42,
            as_of: chrono::Utc::now().date_naive(),
            shift: None,
        });
        demo::write_sqlite(&path, &data).await?;
    }

    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    let listener = tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| {
            format!(
                "ML_API_HOST/ML_API_PORT: cannot listen on {}",
                config.listen_addr()
            )
        })?;
    let addr = listener.local_addr()?;

    let mut tasks = tokio::task::JoinSet::new();
    let worker_state = WorkerState::new(
        config.clone(),
        conns.store.clone(),
        conns.queue.clone(),
        conns.backend.clone(),
        rpa_ml_worker::process_name(),
    );
    {
        let opts = WorkerOptions {
            queues: QueueName::ALL.to_vec(),
            concurrency: config.max_workers,
            reconcile: true,
        };
        let s = shutdown.clone();
        tasks.spawn(async move { rpa_ml_worker::run(worker_state, opts, s).await });
    }
    {
        let (c, st, q, s) = (
            config.clone(),
            conns.store.clone(),
            conns.queue.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move { rpa_ml_scheduler::run(c, st, q, s).await });
    }
    {
        let state = AppState::new(
            config.clone(),
            conns.store.clone(),
            conns.queue.clone(),
            conns.backend.clone(),
        );
        let s = shutdown.clone();
        tasks.spawn(async move {
            rpa_ml_api::serve(listener, state, async move { s.cancelled().await })
                .await
                .map_err(anyhow::Error::from)
        });
    }

    if conns.store.model_count().await? == 0 {
        let job = submit::submit(
            &conns.store,
            &conns.queue,
            JobPayload::Retrain(RetrainJob {
                targets: Target::ALL.into_iter().collect(),
                reason: "standalone: first models".into(),
            }),
            config.job_max_attempts as i32,
            None,
        )
        .await?;
        println!(
            "no models yet: training the first ones (job {})",
            job.job.id
        );
        if !args.no_demo_promotion {
            let store = conns.store.clone();
            let id = job.job.id.clone();
            tokio::spawn(async move {
                if let Err(e) = promote_first_models(&store, &id).await {
                    tracing::warn!(error = %e, "could not promote the first models");
                }
            });
        }
    }

    let key_hint = match &generated_key {
        Some(k) => k.clone(),
        None => "$ML_API_KEY".into(),
    };
    let base = format!("http://{addr}");
    println!();
    println!(
        "rpa-ml is running at {base}  (embedded: SQLite queue and store in {})",
        dir.display()
    );
    if generated_key.is_some() {
        println!(
            "API key (generated, kept in {}): {key_hint}",
            dir.join("api-key").display()
        );
    }
    println!("Try:");
    println!("  curl -s {base}/ready");
    println!(
        "  curl -s -X POST {base}/api/v1/predict -H 'Authorization: Bearer {key_hint}' \\\n       -H 'Content-Type: application/json' -d '{{\"targets\":[\"completion_time\",\"risk\"],\"all_open\":true}}'"
    );
    println!(
        "  curl -s '{base}/api/v1/jobs/<job_id>?wait=10' -H 'Authorization: Bearer {key_hint}'"
    );
    println!("  curl -s {base}/api/v1/models -H 'Authorization: Bearer {key_hint}'");
    println!("Stop with Ctrl-C.");

    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        let res = res.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = res {
            tracing::error!(error = %e, "a role stopped with an error; shutting down");
            shutdown.cancel();
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The demo's stand-in for an operator's decision: once the first retrain
/// ends, a target left without a production model gets its first version
/// promoted by hand, with the gate it missed written into the registry.
async fn promote_first_models(store: &Store, job_id: &str) -> anyhow::Result<()> {
    loop {
        match store.get_job(job_id).await?.map(|j| j.state) {
            Some(s) if s.is_terminal() => break,
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            None => return Ok(()),
        }
    }
    let models = store.list_models().await?;
    for target in Target::ALL {
        let mine: Vec<_> = models.iter().filter(|m| m.target == target).collect();
        if mine
            .iter()
            .any(|m| m.stage == rpa_ml_shared::store::ModelStage::Production)
        {
            continue;
        }
        let Some(first) = mine.iter().min_by_key(|m| m.version) else {
            continue;
        };
        let reason = format!(
            "promoted by `rpa-ml standalone` for the demo although it missed its gate ({}); \
             an operator would decide this (POST /api/v1/models/{target}/promote)",
            first
                .stage_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        );
        store
            .set_model_stage(
                target,
                first.version,
                rpa_ml_shared::store::ModelStage::Production,
                Some(&reason),
            )
            .await?;
        tracing::warn!(model.target = %target, model.version = first.version, "{reason}");
        println!("note: {target} v{} {reason}", first.version);
    }
    Ok(())
}

fn standalone_key(dir: &Path) -> anyhow::Result<String> {
    let file = dir.join("api-key");
    if let Ok(k) = std::fs::read_to_string(&file) {
        let k = k.trim().to_string();
        if !k.is_empty() {
            return Ok(k);
        }
    }
    let key = format!("rpa-{}", ulid::Ulid::new().to_string().to_lowercase());
    std::fs::write(&file, format!("{key}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(key)
}
