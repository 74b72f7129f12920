//! The layers every request passes: request id, allowed hosts, the API
//! key, metrics, and the answer for paths no route serves.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of this request (set by the router's first layer).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Counts every request by its route template and times it. Added with
/// `Router::layer`, so it runs after routing and sees the `MatchedPath`;
/// requests no route matched are counted as `unmatched`.
pub async fn track_http(req: Request, next: Next) -> Response {
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

/// Longest `x-request-id` taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client's `x-request-id` may be kept: it goes into the logs,
/// the jobs table and the queue's messages, so it must be short and plain.
pub fn sane_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Drops a client's `x-request-id` that is not [`sane_request_id`] (or is
/// sent twice), so the next layer gives the request a fresh one; the
/// response carries the id actually used.
pub async fn screen_request_id(mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let mut sent = headers.get_all(&REQUEST_ID).iter();
    let keep = match (sent.next(), sent.next()) {
        (None, _) => true,
        (Some(v), None) => sane_request_id(v.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

/// Request ids are ULIDs, like job ids: sortable by time in the logs.
#[derive(Clone, Copy, Default)]
pub struct MakeRequestUlid;

impl MakeRequestId for MakeRequestUlid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        axum::http::HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

pub async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in
/// constant time. No key configured (DEBUG only) lets everything through.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.config.api_key() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match presented {
        None => ApiError::new(
            ErrorCode::Unauthorized,
            "missing API key: send Authorization: Bearer <key> or X-API-Key",
        )
        .into_response(),
        Some(k) if constant_time_eq(k.trim().as_bytes(), expected.expose_secret().as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiError::new(ErrorCode::Unauthorized, "invalid API key").into_response(),
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive
/// (RFC 9110 §11.1), so `BEARER x` and `bearer x` count too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Length is not secret; the bytes are.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Paths answered whatever the Host header: probes and scrapers call them
/// by the pod's or container's address (the kubelet, Prometheus, a
/// container health check), which no ALLOWED_HOSTS entry names. They take
/// no input and hold no secret.
pub const ANY_HOST_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

pub async fn allowed_hosts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if ANY_HOST_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
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
            ErrorCode::HostNotAllowed,
            format!("host {host:?} is not in ALLOWED_HOSTS"),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, sane_request_id};

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer k1", "bearer k1", "BEARER k1", "bEaReR  k1"] {
            assert_eq!(bearer_token(v).map(str::trim), Some("k1"), "{v}");
        }
        for v in ["Basic k1", "Bearerk1", "Bearer", ""] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }

    #[test]
    fn request_ids_must_be_short_and_plain() {
        assert!(sane_request_id(b"01JD3X-abc.def_1:2"));
        assert!(sane_request_id(&[b'a'; 128]));
        assert!(!sane_request_id(&[b'a'; 129]));
        for bad in [
            &b""[..],
            b"a b",
            b"a\tb",
            b"<b>",
            b"a/b",
            "\u{e9}".as_bytes(),
        ] {
            assert!(!sane_request_id(bad), "{bad:?}");
        }
    }
}
