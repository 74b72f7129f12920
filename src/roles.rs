//! One function per subcommand: configuration → connections → the role's
//! loop (`standalone` has a file of its own).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};

use rpa_ml_api::AppState;
use rpa_ml_shared::config::Config;
use rpa_ml_shared::demo;
use rpa_ml_shared::jobs::QueueName;
use rpa_ml_worker::{WorkerOptions, WorkerState};

use crate::cli::{Cli, Command, DemoArgs};
use crate::setup::{bind, connect, init_telemetry, load_config, open_store, shutdown_token};

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::DemoData(args) => demo_data(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Standalone(args) => crate::standalone::run(args).await,
        Command::Train(args) => crate::train::run(args).await,
        Command::Healthcheck(args) => crate::healthcheck::run(args).await,
        other => {
            let (config, warnings) = load_config(&HashMap::new())?;
            init_telemetry(&config, &warnings)?;
            let config = Arc::new(config);
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
                Command::Backup { out } => {
                    let store = open_store(&config, 4).await?;
                    crate::backup::backup(&store, &out).await
                }
                Command::Restore { from } => {
                    let store = open_store(&config, 4).await?;
                    crate::backup::restore(&store, &from).await
                }
                Command::DemoData(_)
                | Command::Bench(_)
                | Command::Standalone(_)
                | Command::Train(_)
                | Command::Healthcheck(_) => Ok(()),
            }
        }
    }
}

async fn api(config: Arc<Config>) -> anyhow::Result<()> {
    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    let listener = bind(&config).await?;
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
    // Artifacts written to disk before they were kept in the store: moved
    // in when this host can read them and they match their checksum.
    let missing = conns.store.models_without_stored_artifact().await?;
    let (mut moved, mut left) = (0, Vec::new());
    for (sha, path) in missing {
        let file = std::path::PathBuf::from(&path);
        let checked = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                rpa_ml_shared::ml::parse_artifact(&bytes, &sha, &file)
                    .map(|_| bytes)
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(bytes) => {
                conns.store.put_artifact(&sha, &bytes).await?;
                moved += 1;
            }
            Err(e) => left.push(format!("{path}: {e}")),
        }
    }
    if moved > 0 {
        println!("moved {moved} model artifact(s) from disk into the ML store");
    }
    if !left.is_empty() {
        println!(
            "{} model artifact(s) not in the ML store and not readable here (run `rpa-ml migrate` where they are):\n  {}",
            left.len(),
            left.join("\n  ")
        );
    }
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
        long_projects: None,
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
