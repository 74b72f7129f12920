//! `Idempotency-Key` on the POSTs that create a job
//! ([`crate::routes::job_creating`]). A layer validates the key, hashes the
//! request (method, path and query, canonical JSON body) and answers a key
//! already used within `IDEMPOTENCY_RETENTION_HOURS`: the same request gets
//! its job again (200, `Idempotent-Replayed: true`), another request 422.
//! A new key travels to [`crate::routes::predict::enqueue`] in the request's
//! extensions, and the store writes it with the job in one transaction.

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use rpa_ml_shared::config::Config;
use rpa_ml_shared::store::{IdempotencyKey, KeyedJob};

use crate::error::{ApiError, ErrorCode};
use crate::middleware::request_id;
use crate::state::AppState;

pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const MAX_KEY_LEN: usize = 255;

/// A new key and the hash of the request that brings it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: String,
    pub request_hash: String,
}

impl Claim {
    /// The key as the store takes it, with its window as of now.
    pub fn store_key<'a>(&'a self, config: &Config) -> IdempotencyKey<'a> {
        IdempotencyKey {
            key: &self.key,
            request_hash: &self.request_hash,
            not_before: window_start(config),
        }
    }
}

fn window_start(config: &Config) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::hours(i64::from(config.idempotency_retention_hours))
}

/// What a job-creating handler passes on to `enqueue`: the request id and
/// the idempotency key, if the request brought one.
pub struct JobRequest {
    pub request_id: Option<String>,
    pub claim: Option<Claim>,
}

impl<S: Send + Sync> FromRequestParts<S> for JobRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(JobRequest {
            request_id: request_id(&parts.headers),
            claim: parts.extensions.get::<Claim>().cloned(),
        })
    }
}

/// The layer (a `route_layer` of the protected routes, so after the API
/// key check). Other routes, and requests without the header, pass as
/// they came.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let creates_job = req.method() == Method::POST
        && req.extensions().get::<MatchedPath>().is_some_and(|p| {
            crate::routes::job_creating()
                .iter()
                .any(|r| r == p.as_str())
        });
    if !creates_job || !req.headers().contains_key(&KEY_HEADER) {
        return next.run(req).await;
    }
    let key = match parse_key(&req) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    // Read through the body limit the router sets.
    let probe = Request::from_parts(parts.clone(), body);
    let bytes = match crate::extract::read_body(probe, &state).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let claim = Claim {
        request_hash: request_hash(parts.method.as_str(), &target, &bytes),
        key,
    };
    match state.store.keyed_job(&claim.store_key(&state.config)).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Some(found)) => taken(&state.config, &claim.key, found),
        Ok(None) => {
            let mut parts = parts;
            parts.extensions.insert(claim);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// The answer for a key already used: the same request's job again, or 422.
pub fn taken(config: &Config, key: &str, found: KeyedJob) -> Response {
    match found {
        KeyedJob::Same(job) => {
            let mut response =
                crate::routes::predict::accepted(&job, axum::http::StatusCode::OK, false, None);
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            response
        }
        KeyedJob::Other(job_id) => ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            format!(
                "Idempotency-Key {key:?} was used within the last {} h for another request \
                 (job {job_id}): its method, path or body differ; send a new key with a new request",
                config.idempotency_retention_hours
            ),
        )
        .into_response(),
    }
}

/// One key, 1 to 255 printable ASCII characters.
fn parse_key(req: &Request) -> Result<String, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("invalid Idempotency-Key: {why}"),
        )
    };
    let mut values = req.headers().get_all(&KEY_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid("send it once"));
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(invalid("it is empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(invalid(&format!(
            "{} characters; at most {MAX_KEY_LEN}",
            bytes.len()
        )));
    }
    if let Some(pos) = bytes.iter().position(|b| !(b' '..=b'~').contains(b)) {
        return Err(invalid(&format!(
            "byte {pos} is not printable ASCII (space to ~)"
        )));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// SHA-256 (hex) of the method, the path with its query, and the body: a
/// JSON body in canonical form (keys sorted, no spaces), so the same
/// request written differently hashes the same. An empty body counts as
/// `{}`; a body that is not JSON is hashed as sent.
pub fn request_hash(method: &str, target: &str, body: &[u8]) -> String {
    let canonical = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".to_vec()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                let mut out = String::new();
                canonical_json(&v, &mut out);
                out.into_bytes()
            }
            Err(_) => body.to_vec(),
        }
    };
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(target.as_bytes());
    h.update(b"\n");
    h.update(&canonical);
    hex::encode(h.finalize())
}

fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_written_differently_hashes_the_same() {
        let a = request_hash(
            "POST",
            "/api/v1/predict",
            br#"{"targets": ["risk"], "project_ids": [1, 2]}"#,
        );
        let b = request_hash(
            "POST",
            "/api/v1/predict",
            br#"{"project_ids":[1,2],"targets":["risk"]}"#,
        );
        assert_eq!(a, b);
        let other_body = request_hash(
            "POST",
            "/api/v1/predict",
            br#"{"project_ids":[2,1],"targets":["risk"]}"#,
        );
        assert_ne!(a, other_body);
        let other_path = request_hash(
            "POST",
            "/api/v1/predict/risk",
            br#"{"project_ids":[1,2],"targets":["risk"]}"#,
        );
        assert_ne!(a, other_path);
        assert_eq!(
            request_hash("POST", "/api/v1/models/retrain", b""),
            request_hash("POST", "/api/v1/models/retrain", b" {} ")
        );
    }
}
