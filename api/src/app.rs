//! The router with its layers, and the server loop.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use rpa_ml_shared::config::Config;

use crate::middleware::{self, REQUEST_ID};
use crate::routes;
use crate::state::AppState;

/// Builds the application router with every layer applied.
pub fn router(state: AppState) -> Router {
    // Layers run from the last added: the key first, then idempotency.
    let protected = routes::protected()
        .route_layer(from_fn_with_state(state.clone(), crate::idempotency::layer))
        .route_layer(from_fn_with_state(state.clone(), middleware::require_key));
    Router::new()
        .merge(routes::public())
        .merge(protected)
        .fallback(middleware::not_found)
        .layer(from_fn(middleware::track_http))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), middleware::allowed_hosts))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let rid = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %rid)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, middleware::MakeRequestUlid))
        .layer(from_fn(middleware::screen_request_id))
        .with_state(state)
}

/// Serves the router until `shutdown` resolves, then drains connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long `?wait=` may hold a request, whatever the client asks.
pub fn max_wait(config: &Config) -> Duration {
    config.max_wait
}
