//! API errors: every error response is `{"error": {"code", "message", ...}}` with a stable code.
//! [`ApiError::from`] is the one mapping from engine errors to HTTP statuses and codes; the codes
//! are `stepwise_api::ErrorCode` (listed in docs/api.md, checked by a test).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use stepwise_api::{ErrorBody, ErrorCode, ErrorDetail};
use stepwise_engine::secrets::SecretsError;

use stepwise_engine::EngineError;
use stepwise_runtime::LoadError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    /// The stable error code.
    #[cfg(test)]
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// An error with `status`, stable `code` and a human `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a field beside `code` and `message`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, message)
    }

    /// 400 `invalid_options`.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidOptions, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.extra,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            EngineError::Load(LoadError::NotWasm)
            | EngineError::Load(LoadError::CoreModule)
            | EngineError::Load(LoadError::Invalid(_))
            | EngineError::Load(LoadError::WrongWorld(_))
            | EngineError::Load(LoadError::Describe(_)) => {
                Self::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidModule, message)
            }
            EngineError::UnknownJob { .. } => {
                Self::new(S::NOT_FOUND, ErrorCode::UnknownJob, message)
            }
            EngineError::UnknownModule(_) | EngineError::UnknownRun(_) => Self::not_found(message),
            EngineError::InvalidPayload(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidPayload, message)
            }
            EngineError::PayloadTooLarge { .. } => {
                Self::new(S::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge, message)
            }
            EngineError::Policy(_) | EngineError::InvalidIdempotencyKey => {
                Self::invalid_options(message)
            }
            EngineError::InvalidName { .. } => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidName, message)
            }
            EngineError::IdempotencyConflict { run, differs, .. } => {
                Self::new(S::CONFLICT, ErrorCode::IdempotencyConflict, message)
                    .with("run_id", run)
                    .with("differs", differs)
            }
            EngineError::NotFailed { .. } => Self::new(S::CONFLICT, ErrorCode::NotFailed, message),
            // The run was deleted (purged) between the read and the write.
            EngineError::Store(stepwise_store::StoreError::Conflict { found: None, .. }) => {
                Self::not_found(message)
            }
            EngineError::NotCancellable { status, .. } => {
                Self::new(S::CONFLICT, ErrorCode::NotCancellable, message)
                    .with("status", status.as_str())
            }
            EngineError::Secrets(SecretsError::NoKey) => Self::new(
                S::SERVICE_UNAVAILABLE,
                ErrorCode::SecretsUnavailable,
                message,
            ),
            EngineError::Secrets(SecretsError::Invalid(_)) => {
                Self::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSecret, message)
            }
            EngineError::UnknownSecret(_) => Self::not_found(message),
            EngineError::InvalidEgress(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidEgress, message)
            }
            EngineError::InvalidSchedule(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidSchedule, message)
            }
            EngineError::ScheduleExists(_) => {
                Self::new(S::CONFLICT, ErrorCode::ScheduleExists, message)
            }
            EngineError::UnknownSchedule(_) => Self::not_found(message),
            EngineError::InvalidEvent(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidEvent, message)
            }
            EngineError::EventConflict { id } => {
                Self::new(S::CONFLICT, ErrorCode::EventConflict, message).with("event_id", id)
            }
            EngineError::TenantExists(_) => {
                Self::new(S::CONFLICT, ErrorCode::TenantExists, message)
            }
            EngineError::PendingRunExists { run, .. } => {
                Self::new(S::CONFLICT, ErrorCode::PendingRunExists, message).with("run_id", run)
            }
            EngineError::RateLimited { retry_after_ms, .. } => {
                let mut e = Self::new(S::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message)
                    .with("retry_after_ms", retry_after_ms);
                e.retry_after = Some(retry_after_ms.div_ceil(1_000).max(1));
                e
            }
            EngineError::QuotaExceeded { what, limit, .. } => {
                Self::new(S::TOO_MANY_REQUESTS, ErrorCode::QuotaExceeded, message)
                    .with("quota", what)
                    .with("limit", limit)
            }
            _ => Self::new(S::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_stable_codes() {
        let cases = [
            (
                EngineError::UnknownRun("r".into()),
                404,
                ErrorCode::NotFound,
            ),
            (
                EngineError::IdempotencyConflict {
                    key: "k".into(),
                    run: "r".into(),
                    differs: vec!["payload"],
                },
                409,
                ErrorCode::IdempotencyConflict,
            ),
            (
                EngineError::Load(LoadError::CoreModule),
                422,
                ErrorCode::InvalidModule,
            ),
            (
                EngineError::PayloadTooLarge { size: 2, limit: 1 },
                413,
                ErrorCode::PayloadTooLarge,
            ),
            (
                EngineError::InvalidName {
                    name: "a/b".into(),
                    error: stepwise_core::names::check(stepwise_core::names::Kind::Queue, "a/b")
                        .unwrap_err(),
                },
                400,
                ErrorCode::InvalidName,
            ),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status);
            assert_eq!(api.code, code);
        }
    }
}
