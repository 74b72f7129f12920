//! `/api/v1/monitoring/*`: drift reports and model metrics.

use axum::Router;

use crate::AppState;

/// Routes behind the API key.
pub fn protected() -> Router<AppState> {
    Router::new()
}
