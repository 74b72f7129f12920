//! What every handler shares.

use std::sync::Arc;

use rpa_ml_shared::backend::BackendDb;
use rpa_ml_shared::config::Config;
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::Store;
use rpa_ml_shared::submit::Submitter;

use crate::known_projects::KnownProjects;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub queue: Queue,
    pub backend: BackendDb,
    pub known_projects: Arc<KnownProjects>,
    pub submitter: Submitter,
    /// One permit per open job event stream (`EVENTS_MAX_STREAMS`).
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Store, queue: Queue, backend: BackendDb) -> Self {
        AppState {
            submitter: Submitter::start(store.clone(), queue.clone()),
            event_streams: Arc::new(tokio::sync::Semaphore::new(config.events_max_streams)),
            config,
            store,
            queue,
            backend,
            known_projects: Arc::default(),
        }
    }
}
