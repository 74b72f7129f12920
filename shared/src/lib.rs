//! Types and plumbing shared by the api, worker and scheduler roles.

#[macro_use]
mod enums;

pub mod backend;
pub mod callback;
pub mod config;
mod db_error;
pub mod demo;
pub mod job_view;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod ml;
pub mod mlflow;
pub mod queue;
pub mod queue_retention;
pub mod queue_stats;
pub mod store;
pub mod submit;
pub mod telemetry;
