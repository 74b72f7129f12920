//! Operator endpoints (queues, jobs, workers) and the ops page.

use axum::Router;

use crate::AppState;

/// Routes that check the API key themselves (the page) or need none.
pub fn public() -> Router<AppState> {
    Router::new()
}

/// Routes behind the API key.
pub fn protected() -> Router<AppState> {
    Router::new()
}
