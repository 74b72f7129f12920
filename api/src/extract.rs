//! A JSON body extractor whose rejections are [`ApiError`]s, so a malformed
//! or oversized body gets the same error shape as everything else. It does
//! not insist on a Content-Type: a body that parses as a JSON object is
//! accepted.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::{ApiError, ErrorCode};

pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body means `T::default()`.
pub struct JsonBodyOrDefault<T>(pub T);

impl<S, T> FromRequest<S> for JsonBodyOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBodyOrDefault(T::default()));
        }
        parse(&bytes).map(JsonBodyOrDefault)
    }
}

/// The body, within the router's limit (413 beyond it).
pub(crate) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is larger than MAX_BODY_BYTES",
            )
        } else {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("could not read request body: {e}"),
            )
        }
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde fills a struct from an array as well (`[]` for `{}`); every
    // body here is an object, as the document says.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::validation(
            "invalid request body: expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            ErrorCode::InvalidJson
        } else {
            ErrorCode::ValidationError
        };
        let message = if path.is_empty() || path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        ApiError::new(code, message)
    })
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                "request body is empty; expected a JSON object",
            ));
        }
        let value = parse(&bytes)?;
        Ok(JsonBody(value))
    }
}
