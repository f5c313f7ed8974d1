//! API errors: every error response is `{"error": {"code", "message", ...}}` with a stable code.
//! [`ApiError::from`] is the one mapping from engine errors to HTTP statuses and codes; the codes
//! are listed in docs/api.md (checked by a test against [`CODES`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use stepwise_engine::secrets::SecretsError;

use stepwise_engine::EngineError;
use stepwise_runtime::LoadError;

/// Every error code the API can return.
pub const CODES: [&str; 20] = [
    "invalid_json",
    "invalid_payload",
    "invalid_options",
    "invalid_name",
    "unauthorized",
    "forbidden",
    "not_found",
    "unknown_job",
    "idempotency_conflict",
    "not_failed",
    "tenant_exists",
    "payload_too_large",
    "module_too_large",
    "invalid_module",
    "internal",
    "shutting_down",
    "quota_exceeded",
    "invalid_egress",
    "invalid_secret",
    "secrets_unavailable",
];

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    /// The stable error code.
    #[cfg(test)]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// An error with `status`, stable `code` and a human `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(CODES.contains(&code), "undocumented error code {code}");
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a field beside `code` and `message`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 400 `invalid_options`.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_options", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = self.extra;
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %error["message"], "request failed");
        }
        (self.status, Json(json!({ "error": error }))).into_response()
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
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_module", message)
            }
            EngineError::UnknownJob { .. } => Self::new(S::NOT_FOUND, "unknown_job", message),
            EngineError::UnknownModule(_) | EngineError::UnknownRun(_) => Self::not_found(message),
            EngineError::InvalidPayload(_) => Self::new(S::BAD_REQUEST, "invalid_payload", message),
            EngineError::PayloadTooLarge { .. } => {
                Self::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            EngineError::Policy(_) | EngineError::InvalidIdempotencyKey => {
                Self::invalid_options(message)
            }
            EngineError::InvalidTenantName(_) | EngineError::InvalidQueueName(_) => {
                Self::new(S::BAD_REQUEST, "invalid_name", message)
            }
            EngineError::IdempotencyConflict { run, .. } => {
                Self::new(S::CONFLICT, "idempotency_conflict", message).with("run_id", run)
            }
            EngineError::NotFailed { .. } => Self::new(S::CONFLICT, "not_failed", message),
            EngineError::Secrets(SecretsError::NoKey) => {
                Self::new(S::SERVICE_UNAVAILABLE, "secrets_unavailable", message)
            }
            EngineError::Secrets(SecretsError::Invalid(_)) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_secret", message)
            }
            EngineError::UnknownSecret(_) => Self::not_found(message),
            EngineError::InvalidEgress(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_egress", message)
            }
            EngineError::TenantExists(_) => Self::new(S::CONFLICT, "tenant_exists", message),
            EngineError::QuotaExceeded { what, limit, .. } => {
                Self::new(S::TOO_MANY_REQUESTS, "quota_exceeded", message)
                    .with("quota", what)
                    .with("limit", limit)
            }
            _ => Self::new(S::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_stable_codes() {
        let cases = [
            (EngineError::UnknownRun("r".into()), 404, "not_found"),
            (
                EngineError::IdempotencyConflict {
                    key: "k".into(),
                    run: "r".into(),
                },
                409,
                "idempotency_conflict",
            ),
            (
                EngineError::Load(LoadError::CoreModule),
                422,
                "invalid_module",
            ),
            (
                EngineError::PayloadTooLarge { size: 2, limit: 1 },
                413,
                "payload_too_large",
            ),
            (
                EngineError::InvalidQueueName("a/b".into()),
                400,
                "invalid_name",
            ),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status);
            assert_eq!(api.code, code);
        }
    }
}
