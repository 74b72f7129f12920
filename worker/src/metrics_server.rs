//! `/metrics` for a worker process (`WORKER_METRICS_PORT`). In `standalone`
//! the api's `/metrics` serves the same registry instead.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use rpa_ml_shared::metrics;

async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
}

/// Serves until `shutdown`; a port that cannot be bound stops start-up.
pub async fn serve(host: &str, port: u16, shutdown: CancellationToken) -> anyhow::Result<()> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("WORKER_METRICS_PORT: cannot listen on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "worker metrics listening");
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/health", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
