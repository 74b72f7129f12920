//! One error shape for every response: `{"error": {"code", "message"}}`.
//!
//! Every code the API can answer is a row of [`ErrorCode::spec`]: its
//! stable name, its HTTP status and what it means (the OpenAPI document
//! lists the same rows). Messages are for people; internal details are
//! logged here once and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use rpa_ml_shared::backend::BackendError;
use rpa_ml_shared::queue::QueueError;
use rpa_ml_shared::store::StoreError;

/// One row of the table.
pub struct CodeSpec {
    pub code: &'static str,
    pub status: StatusCode,
    pub meaning: &'static str,
}

/// Declares [`ErrorCode`], its `ALL` list and its `spec` from one row per
/// code, so a code cannot be added without its status and meaning.
macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:ident, $meaning:literal),)*) => {
        /// The codes clients can act on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn spec(self) -> CodeSpec {
                match self {
                    $(ErrorCode::$variant => CodeSpec {
                        code: $code,
                        status: StatusCode::$status,
                        meaning: $meaning,
                    },)*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson => ("invalid_json", BAD_REQUEST, "the body is not JSON (line and column in the message)"),
    InvalidBody => ("invalid_body", BAD_REQUEST, "the body could not be read"),
    ValidationError => ("validation_error", BAD_REQUEST, "a field or query parameter is missing or invalid (its path in the message)"),
    UnknownTarget => ("unknown_target", BAD_REQUEST, "a target other than completion_time, budget_variance or risk"),
    HostNotAllowed => ("host_not_allowed", BAD_REQUEST, "the Host header is not in ALLOWED_HOSTS"),
    InvalidIdempotencyKey => ("invalid_idempotency_key", BAD_REQUEST, "the Idempotency-Key header is empty, sent twice, longer than 255 characters or not printable ASCII"),
    Unauthorized => ("unauthorized", UNAUTHORIZED, "missing or wrong API key"),
    NotFound => ("not_found", NOT_FOUND, "no such route, job, target or model version"),
    ProjectNotFound => ("project_not_found", NOT_FOUND, "none of the requested projects exist; nothing was queued"),
    RetrainInProgress => ("retrain_in_progress", CONFLICT, "another retrain of an overlapping target set is active"),
    InvalidJobState => ("invalid_job_state", CONFLICT, "the job's state does not allow this (the message names it)"),
    DuplicateActive => ("duplicate_active", CONFLICT, "an identical job is already queued or running"),
    NotCancellable => ("not_cancellable", CONFLICT, "a running job without checkpoints cannot be cancelled"),
    AlreadyProduction => ("already_production", CONFLICT, "the version is already in production"),
    NoProductionModel => ("no_production_model", CONFLICT, "the target has no production model"),
    NothingToRollBackTo => ("nothing_to_roll_back_to", CONFLICT, "no earlier production version to go back to"),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "the body is larger than MAX_BODY_BYTES"),
    BatchTooLarge => ("batch_too_large", PAYLOAD_TOO_LARGE, "more project ids than MAX_PROJECTS_PER_REQUEST"),
    TooManyIds => ("too_many_ids", UNPROCESSABLE_ENTITY, "more than 500 project ids in one read of the latest forecasts; ask in pages"),
    CallbackNotAllowed => ("callback_not_allowed", UNPROCESSABLE_ENTITY, "the callback_url is not an http(s) URL, carries credentials, or its host is not in CALLBACK_ALLOWED_HOSTS (the message says which); nothing was queued"),
    IdempotencyKeyReused => ("idempotency_key_reused", UNPROCESSABLE_ENTITY, "the Idempotency-Key was used within IDEMPOTENCY_RETENTION_HOURS for another request (method, path or body)"),
    InternalError => ("internal_error", INTERNAL_SERVER_ERROR, "a bug; it has been logged"),
    TooManyStreams => ("too_many_streams", SERVICE_UNAVAILABLE, "EVENTS_MAX_STREAMS event streams are open on this api process; poll GET /api/v1/jobs/{id} or try again shortly"),
    DependencyUnavailable => ("dependency_unavailable", SERVICE_UNAVAILABLE, "the ML store, the queue or the backend database does not answer; try again shortly"),
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        self.spec().code
    }

    pub const fn status(self) -> StatusCode {
        self.spec().status
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(dependency = what, error = %detail, "dependency unavailable");
        Self::new(
            ErrorCode::DependencyUnavailable,
            format!("{what} is unavailable; try again shortly"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::InternalError,
            "internal error; it has been logged",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code.as_str(), "message": self.message}}));
        (self.status(), body).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            ApiError::unavailable("the ML store", e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::unavailable("the queue", e)
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        if e.is_transient() {
            ApiError::unavailable("the backend database", e)
        } else {
            ApiError::internal(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a code is listed twice");
    }
}
