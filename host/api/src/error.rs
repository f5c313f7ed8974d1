//! The error body every route answers on failure: `{"error": {"code", "message", ...}}`.
//! The code is stable (clients match on it); the message is for people; some codes carry
//! more fields (`quota`, `limit`, `differs`, ...).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    /// The body is not JSON, not an object, or does not match the request's schema.
    InvalidJson = "invalid_json",
    /// The payload is not acceptable to the job.
    InvalidPayload = "invalid_payload",
    /// An option, query parameter or path parameter is out of range or malformed.
    InvalidOptions = "invalid_options",
    /// A tenant, queue or job name breaks its rule.
    InvalidName = "invalid_name",
    /// No token, or an unknown one.
    Unauthorized = "unauthorized",
    /// The token may not do this.
    Forbidden = "forbidden",
    /// No such route, run, module or secret (for this tenant).
    NotFound = "not_found",
    /// None of the tenant's modules offers the job.
    UnknownJob = "unknown_job",
    /// The idempotency key is held by a run created from a different request.
    IdempotencyConflict = "idempotency_conflict",
    /// A pending run holds the key and the enqueue asked `on_duplicate: reject`.
    PendingRunExists = "pending_run_exists",
    /// Too many requests: the tenant's enqueue rate limit; retry after `Retry-After` seconds.
    RateLimited = "rate_limited",
    /// Only a failed run can be retried.
    NotFailed = "not_failed",
    /// The run has already ended; it cannot be cancelled.
    NotCancellable = "not_cancellable",
    /// The event id was used for an event with another name, key or payload.
    EventConflict = "event_conflict",
    /// The event's name, correlation key or id breaks its rule.
    InvalidEvent = "invalid_event",
    /// A schedule's expression, zone or options are unusable.
    InvalidSchedule = "invalid_schedule",
    /// A schedule of that name exists.
    ScheduleExists = "schedule_exists",
    /// A tenant of that name exists.
    TenantExists = "tenant_exists",
    /// The body or payload is over its limit.
    PayloadTooLarge = "payload_too_large",
    /// The component is over the module size limit.
    ModuleTooLarge = "module_too_large",
    /// The component cannot be deployed (not a component, wrong world, bad `describe`).
    InvalidModule = "invalid_module",
    /// The server failed; the request may be retried.
    Internal = "internal",
    /// The server is shutting down and takes no new work.
    ShuttingDown = "shutting_down",
    /// A tenant quota would be exceeded; nothing was stored.
    QuotaExceeded = "quota_exceeded",
    /// The egress settings are malformed.
    InvalidEgress = "invalid_egress",
    /// The secret is malformed.
    InvalidSecret = "invalid_secret",
    /// The server has no secrets key configured.
    SecretsUnavailable = "secrets_unavailable",
    /// The request took too long to arrive.
    RequestTimeout = "request_timeout",
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The stable code.
    pub code: ErrorCode,
    /// A readable explanation naming what was wrong.
    pub message: String,
    /// More fields, for some codes.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_text() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, Value::String(code.as_str().to_owned()));
        }
        let body: ErrorBody = serde_json::from_str(
            r#"{"error": {"code": "quota_exceeded", "message": "m", "quota": "modules"}}"#,
        )
        .unwrap();
        assert_eq!(body.error.code, ErrorCode::QuotaExceeded);
        assert_eq!(body.error.details["quota"], "modules");
    }
}
