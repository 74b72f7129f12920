//! The api role: a thin axum service. It validates requests, writes the job
//! row, pushes the message, and answers `202 Accepted`; it reads job status,
//! results and the model registry. It does no ML work.

pub mod error;
pub mod extract;
pub mod monitoring;
pub mod openapi;
pub mod ops;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use rpa_ml_shared::backend::BackendDb;
use rpa_ml_shared::config::Config;
use rpa_ml_shared::queue::Queue;
use rpa_ml_shared::store::Store;
use rpa_ml_shared::submit::Submitter;

use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub queue: Queue,
    pub backend: BackendDb,
    pub known_projects: Arc<KnownProjects>,
    pub submitter: Submitter,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Store, queue: Queue, backend: BackendDb) -> Self {
        AppState {
            submitter: Submitter::start(store.clone(), queue.clone()),
            config,
            store,
            queue,
            backend,
            known_projects: Arc::default(),
        }
    }
}

/// Project ids the backend has been seen to hold. Projects are created,
/// not deleted, so an id seen once is remembered and the hot path skips
/// the backend query; an id not yet seen is always looked up. (A project
/// deleted later is still answered per project by the worker.)
#[derive(Default)]
pub struct KnownProjects {
    ids: std::sync::RwLock<std::collections::HashSet<i64>>,
}

impl KnownProjects {
    /// The subset of `ids` that exist.
    pub async fn existing(
        &self,
        backend: &BackendDb,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, rpa_ml_shared::backend::BackendError> {
        let unseen: Vec<i64> = match self.ids.read() {
            Ok(known) => ids
                .iter()
                .copied()
                .filter(|id| !known.contains(id))
                .collect(),
            Err(_) => ids.to_vec(),
        };
        let found = if unseen.is_empty() {
            Default::default()
        } else {
            backend.existing_projects(&unseen).await?
        };
        if !found.is_empty()
            && let Ok(mut known) = self.ids.write()
            && known.len() < 5_000_000
        {
            known.extend(found.iter().copied());
        }
        let unseen: std::collections::HashSet<i64> = unseen.into_iter().collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !unseen.contains(id) || found.contains(id))
            .collect())
    }
}

/// Builds the application router with every layer applied.
pub fn router(state: AppState) -> Router {
    let protected = routes::protected()
        .merge(monitoring::protected())
        .merge(ops::protected())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(routes::public())
        .merge(ops::public())
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(track_http))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), allowed_hosts))
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
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUlid))
        .with_state(state)
}

/// Counts every request by its route template and times it. Added with
/// `Router::layer`, so it runs after routing and sees the `MatchedPath`;
/// requests no route matched are counted as `unmatched`.
async fn track_http(req: Request, next: middleware::Next) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = rpa_ml_shared::metrics::global();
    m.http_duration
        .get_or_create(&rpa_ml_shared::metrics::RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&rpa_ml_shared::metrics::HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Request ids are ULIDs, like job ids: sortable by time in the logs.
#[derive(Clone, Copy, Default)]
struct MakeRequestUlid;

impl MakeRequestId for MakeRequestUlid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in
/// constant time. No key configured (DEBUG only) lets everything through.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.config.api_key() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key: send Authorization: Bearer <key> or X-API-Key",
        )
        .into_response(),
        Some(k) if constant_time_eq(k.trim().as_bytes(), expected.expose_secret().as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key")
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Length is not secret; the bytes are.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

async fn allowed_hosts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("")
        .to_string();
    if state.config.host_allowed(&host) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "host_not_allowed",
            format!("host {host:?} is not in ALLOWED_HOSTS"),
        )
        .into_response()
    }
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
