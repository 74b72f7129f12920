//! What every job handler of one worker process shares: configuration,
//! connections, loaded models, the process's name, fault injection.

use std::sync::Arc;

use rpa_ml_shared::backend::BackendDb;
use rpa_ml_shared::config::Config;
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::{Holder, JobRow, Store};
use rpa_ml_shared::telemetry::hostname;

/// Everything a job handler needs, shared by all tasks of one process.
pub struct WorkerState {
    pub config: Arc<Config>,
    pub store: Store,
    pub queue: Queue,
    pub backend: BackendDb,
    pub models: crate::models::ModelCache,
    /// This process's name in the roster and in `jobs.worker`.
    pub name: String,
    pub faults: Faults,
    /// Set when MLFLOW_TRACKING_URI is an http(s) URL.
    pub mlflow: Option<rpa_ml_shared::mlflow::Mlflow>,
}

/// Fault injection for the durability tests, off unless set:
/// `RPA_ML_FAULT_DELAY_MS` holds every job that long after its claim (so a
/// test can kill a worker that holds jobs); `RPA_ML_FAULT_ABORT=1` aborts
/// the process when a job starts (a job that kills its worker);
/// `RPA_ML_FAULT_NO_LEASE=1` never renews a job's lease (a live worker that
/// lost track of the jobs it runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub delay: Option<std::time::Duration>,
    pub abort: bool,
    pub no_lease: bool,
}

impl Faults {
    pub fn from_env() -> Self {
        let delay = std::env::var("RPA_ML_FAULT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis);
        let abort = std::env::var("RPA_ML_FAULT_ABORT").is_ok_and(|v| v == "1");
        let no_lease = std::env::var("RPA_ML_FAULT_NO_LEASE").is_ok_and(|v| v == "1");
        if delay.is_some() || abort || no_lease {
            tracing::warn!(
                ?delay,
                abort,
                no_lease,
                "fault injection is on (test setting)"
            );
        }
        Faults {
            delay,
            abort,
            no_lease,
        }
    }
}

impl WorkerState {
    /// This process as the holder of `job`, as claimed: the fence of every
    /// write it makes to the job's row.
    pub fn holder<'a>(&'a self, job: &JobRow) -> Holder<'a> {
        Holder {
            worker: &self.name,
            attempt: job.attempts,
        }
    }

    pub fn new(
        config: Arc<Config>,
        store: Store,
        queue: Queue,
        backend: BackendDb,
        name: String,
    ) -> Arc<Self> {
        Arc::new(WorkerState {
            models: crate::models::ModelCache::new(
                store.clone(),
                config.model_storage_path.clone(),
            ),
            store,
            queue,
            backend,
            name,
            faults: Faults::from_env(),
            config: config.clone(),
            mlflow: rpa_ml_shared::mlflow::Mlflow::from_config(
                config.mlflow_tracking_uri.as_deref(),
                &config.mlflow_experiment_name,
            ),
        })
    }
}

/// A unique name per process start: host, pid and a random suffix, so a
/// restarted worker never collides with its predecessor's registration.
pub fn process_name() -> String {
    let host = hostname();
    let suffix = ulid::Ulid::new().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}
