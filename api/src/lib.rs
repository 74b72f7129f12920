//! The api role: a thin axum service. It validates requests, writes the job
//! row, pushes the message, and answers `202 Accepted`; it reads job status,
//! results and the model registry. It does no ML work.
//!
//! - `app`: the router and its layers (`middleware`), the server loop;
//! - `routes/`: one file per resource; `openapi`: the document;
//! - `error`: the table of error codes; `extract`: the JSON body;
//!   `input`: the field rules bodies share with the document;
//! - `idempotency`: `Idempotency-Key` on the POSTs that create a job;
//! - `views`: how rows look in responses.

pub mod app;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod input;
pub mod known_projects;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod views;

pub use app::{max_wait, router, serve};
pub use state::AppState;
