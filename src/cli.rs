//! Command-line interface. Configuration comes from the environment (and
//! `.env`); flags only choose what a process does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rpa-ml",
    version,
    about = "Trains and serves completion-time, budget-variance and risk predictions for RPA projects.",
    long_about = "Trains and serves completion-time, budget-variance and risk predictions for RPA projects.\n\n\
        Three roles joined by a queue: `api` accepts jobs over HTTP, `worker` runs them, `scheduler` \
        enqueues recurring ones. `standalone` runs all three in one process on SQLite with demo data.\n\n\
        Configuration is read from the environment and from a `.env` file; see `.env.example`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (enqueues jobs, serves status, results and models).
    Api(ApiArgs),
    /// Run jobs from the queues (feature extraction, fitting, scoring).
    Worker(WorkerArgs),
    /// Enqueue recurring jobs from RETRAIN_CRON / DRIFT_CRON / MAINTENANCE_CRON.
    Scheduler,
    /// API, worker and scheduler in one process on SQLite; creates demo data
    /// and trains the first models when missing. Needs neither Redis nor PostgreSQL.
    Standalone(StandaloneArgs),
    /// Create or upgrade the ML store's tables (ML_STORE_URL) and the queue's.
    Migrate,
    /// Write a demo backend database that follows the backend's schema.
    DemoData(DemoArgs),
    /// Measure a running system over HTTP: throughput, latency, worker CPU per job.
    Bench(BenchArgs),
    /// Train and evaluate every target offline (no queue, no registry) and
    /// print the report: the same code as the retrain job.
    Train(TrainArgs),
    /// GET a health endpoint once (for container health checks): exit 0 on
    /// a 2xx answer, 1 otherwise with the reason on stderr. Needs nothing
    /// else in the image.
    Healthcheck(HealthcheckArgs),
    /// Copy the model registry and every artifact (checksummed) out of the
    /// ML store into a new folder.
    Backup {
        /// Folder to create (must be empty or absent).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup's registry and artifacts into an empty ML store, after
    /// checking every artifact against its SHA-256.
    Restore {
        /// Folder written by `rpa-ml backup`.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to GET (default: the api's /health on 127.0.0.1 and ML_API_PORT).
    #[arg(long, conflicts_with_all = ["ready", "worker"])]
    pub url: Option<String>,
    /// Check the api's /ready?models=false (ML store, queue and backend reachable) instead of /health.
    #[arg(long, conflicts_with = "worker")]
    pub ready: bool,
    /// Check a worker's /health on WORKER_METRICS_PORT instead of the api.
    #[arg(long)]
    pub worker: bool,
    /// Seconds to wait for the answer, connection included.
    #[arg(long, default_value_t = 3.0, value_parser = positive_secs)]
    pub timeout: f64,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!(
            "expected seconds between 0 and 3600 (like 3 or 0.5), got {s:?}"
        )),
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Backend database to learn from (default: DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Targets to train (default: all three).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Port to listen on (overrides ML_API_PORT).
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to serve, comma-separated: predict, train, maintenance.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "predict,train,maintenance"
    )]
    pub queues: Vec<String>,
    /// Concurrent prediction jobs (default MAX_WORKERS). Training runs one at a time.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Do not run the reconciler nor the queue retention sweep in this process
    /// (another process runs them).
    #[arg(long)]
    pub no_reconcile: bool,
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Port to listen on (overrides ML_API_PORT).
    #[arg(long)]
    pub port: Option<u16>,
    /// Projects in the demo backend generated when DATABASE_URL names no database.
    #[arg(long, default_value_t = 2000)]
    pub demo_projects: usize,
    /// Folder for the embedded databases, models and features.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Do not promote the first models by hand when they miss their gates.
    /// By default the demo promotes them (marked as such in the registry)
    /// so that predictions work; at scale an operator decides.
    #[arg(long)]
    pub no_demo_promotion: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of projects.
    #[arg(long, default_value_t = 5000)]
    pub projects: usize,
    /// Random seed: the same seed gives the same database.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// SQLite file to create (must not exist).
    #[arg(
        long,
        conflicts_with = "database_url",
        required_unless_present = "database_url"
    )]
    pub out: Option<PathBuf>,
    /// PostgreSQL database to load instead (its backend tables must not exist).
    #[arg(long)]
    pub database_url: Option<String>,
    /// "Today" of the generated world, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Make projects started in the last 90 days come from a shifted
    /// population (bigger, more complex); for drift tests.
    #[arg(long)]
    pub shift: Option<f64>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// API key (default: ML_API_KEY).
    #[arg(long, env = "ML_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Number of predict jobs to submit.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Distinct projects per job: the open projects of the backend, cycling
    /// over jobs; the closed ones too when a job needs more than are open.
    #[arg(long, default_value_t = 1)]
    pub projects_per_job: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Target to predict.
    #[arg(long, default_value = "completion_time")]
    pub target: String,
    /// Also measure idle-queue latency with this many sequential jobs.
    #[arg(long, default_value_t = 50)]
    pub latency_samples: usize,
    /// Only measure enqueueing: submit the jobs, do not wait for results.
    #[arg(long)]
    pub submit_only: bool,
    /// Project ids to use (default: read them from the backend database);
    /// repeats are dropped.
    #[arg(long, value_delimiter = ',')]
    pub project_ids: Vec<i64>,
    /// Backend database to read the project ids from, read-only (default: DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Processes to measure instead of the local api and `rpa-ml worker`
    /// processes found by port and name: ROLE=PID or PID (a worker),
    /// comma-separated, e.g. `api=812,worker1=820,pg=77`. Each counts with
    /// its descendants (Celery's prefork children, uvicorn's workers).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<String>,
    /// Also write the figures as one JSON object to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Priority measurement instead of the load run: queue `--jobs` LOW jobs
    /// of `--projects-per-job` projects, then submit this many HIGH
    /// 1-project jobs one after another and print their submit → result
    /// p50 / p99; the backlog left is cancelled. Only against 127.0.0.1.
    #[arg(long, default_value_t = 0)]
    pub priority_samples: usize,
    /// Longest the priority measurement samples, in seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
}
