//! `rpa-ml standalone`: the whole system in one process on SQLite, with
//! demo data and first models, for a newcomer's first minute.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use rpa_ml_api::AppState;
use rpa_ml_shared::backend;
use rpa_ml_shared::config::Config;
use rpa_ml_shared::jobs::{JobPayload, QueueName, RetrainJob};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::Store;
use rpa_ml_shared::{demo, submit};
use rpa_ml_worker::{WorkerOptions, WorkerState};

use crate::cli::StandaloneArgs;
use crate::setup::{bind, connect, init_telemetry, load_config, shutdown_token};

/// Everything in one process on SQLite.
pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
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
    let (config, warnings) = load_config(&overrides)?;
    init_telemetry(&config, &warnings)?;
    let config = Arc::new(config);

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
            long_projects: None,
        });
        demo::write_sqlite(&path, &data).await?;
    }

    let conns = connect(&config).await?;
    let shutdown = shutdown_token();
    let listener = bind(&config).await?;
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

    let mut first_retrain = None;
    if conns.store.model_count().await? == 0 {
        let job = submit::submit(
            &conns.store,
            &conns.queue,
            JobPayload::Retrain(RetrainJob {
                targets: Target::ALL.into_iter().collect(),
                reason: "standalone: first models".into(),
                promote_first: !args.no_demo_promotion,
            }),
            config.job_max_attempts as i32,
            None,
        )
        .await?;
        first_retrain = Some(job.job.id.clone());
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
    if let Some(id) = &first_retrain {
        println!(
            "no models yet: training the first ones (job {id}); {base}/ready says what it waits for"
        );
    }
    {
        let (store, s) = (conns.store.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = s.cancelled() => {}
                () = print_once_ready(&store, first_retrain.as_deref(), &base, &key_hint) => {}
            }
        });
    }

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

/// Prints the lines to try once every target has a production model (what
/// `/ready` waits for), so the first prediction a newcomer sends is
/// answered. If the first retrain ends with a target still without one,
/// says which and prints them anyway.
async fn print_once_ready(store: &Store, first_retrain: Option<&str>, base: &str, key_hint: &str) {
    loop {
        let missing: Vec<Target> = match store.production_versions().await {
            Ok(p) => Target::ALL
                .into_iter()
                .filter(|t| !p.contains_key(t))
                .collect(),
            Err(_) => Target::ALL.to_vec(),
        };
        if missing.is_empty() {
            break;
        }
        let ended = match first_retrain {
            Some(id) => match store.get_job(id).await {
                Ok(Some(job)) if job.state.is_terminal() => Some(job),
                _ => None,
            },
            None => None,
        };
        if let Some(job) = ended {
            let names: Vec<&str> = missing.iter().map(|t| t.as_str()).collect();
            println!(
                "note: the first retrain ended {} and left no production model for {}: \
                 predictions of those fail until one is promoted ({base}/api/v1/models)",
                job.state,
                names.join(", ")
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    println!("Ready. Try:");
    println!("  curl -s {base}/ready");
    println!(
        "  curl -s -X POST {base}/api/v1/predict -H 'Authorization: Bearer {key_hint}' \\\n       -H 'Content-Type: application/json' -d '{{\"targets\":[\"completion_time\",\"risk\"],\"all_open\":true}}'"
    );
    println!(
        "  curl -s '{base}/api/v1/jobs/<job_id>?wait=10' -H 'Authorization: Bearer {key_hint}'"
    );
    println!("  curl -s {base}/api/v1/models -H 'Authorization: Bearer {key_hint}'");
    println!("Stop with Ctrl-C.");
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
