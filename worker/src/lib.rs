//! The worker role: takes job messages off the queues, moves job rows through
//! their states, and does the work (feature extraction, fitting, scoring).
//!
//! - `runner`: one supervised apalis worker per served queue, the roster
//!   heartbeat, the reconciler loop, graceful shutdown;
//! - `kernel`: one message → claim the row, run its handler, record the
//!   outcome;
//! - `lease`: the per-job lease a running job's worker renews;
//! - `jobs/`: one file per job kind (the handlers);
//! - `models`: production models loaded once per process, and retention;
//! - `queue_retention`: finished messages swept off the queue;
//! - `callbacks`: the signed POSTs of ended jobs' views to their callback URLs.

pub mod callbacks;
pub mod cancel;
pub mod jobs;
pub mod kernel;
pub mod lease;
pub mod metrics_server;
pub mod models;
pub mod outcome;
pub mod queue_retention;
pub mod reconcile;
pub mod runner;
pub mod state;

pub use runner::{WorkerOptions, run};
pub use state::{Faults, WorkerState, process_name};
