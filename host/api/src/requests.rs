//! What clients send. Every body is a JSON object and unknown fields are refused at every
//! level, so a misspelt option is an error instead of a silent default.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise_core::egress::RuleSpec;
use stepwise_core::policy::Backoff;
use utoipa::ToSchema;

use crate::names::{JobName, TenantName};

/// `POST /v1/tenants` (operator token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The new tenant's name.
    pub name: TenantName,
}

/// `POST /v1/queues/{queue}/jobs`: a run to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enqueue {
    /// A job of one of the tenant's modules (the newest module offering it runs the run).
    pub job: JobName,
    /// Any JSON value, at most the payload limit (1 MiB by default) as stored. Integers must
    /// fit in 64 bits: a larger one is refused rather than rounded.
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Same key and same request: the existing run is returned. Same key and a different
    /// request: `409 idempotency_conflict`. 1–256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Attempts per step, counting the first (1 to the operator's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay between attempts; absent fields take the defaults (1000 ms, at most 1 h, ×2, 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Wall-clock limit of one attempt, in milliseconds (1 to the operator's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Fuel one attempt may burn (1 to the operator's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Linear memory one attempt may use, in bytes (at most the operator's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Start no earlier than this long after the enqueue (`30s`, `5m`, `1h 30m`); at most
    /// 365 days. Not with `run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Start no earlier than this RFC 3339 time (`2030-01-01T00:00:00Z`; offsets are
    /// normalized to UTC); at most 365 days ahead. Not with `delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Among the tenant's runs due at the same time, higher priorities start first. Never
    /// affects other tenants.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Makes the run the one pending (not yet started) run of this queue and job with this
    /// key, 1–256 bytes; `on_duplicate` says what a later enqueue with the key does while it
    /// is pending. Once it has started, a new enqueue creates a new run. Not with
    /// `idempotency_key` or `debounce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// With `key`: `reject` (default: `409 pending_run_exists`), `keep` (the pending run is
    /// returned) or `replace` (the pending run takes this payload, start time, priority and
    /// policy options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_duplicate: Option<stepwise_core::keyed::OnDuplicate>,
    /// Starts the run once `period` passed without another enqueue with this key (or
    /// `max_wait` after the first), with the latest payload; every enqueue meanwhile
    /// answers with the same run. Not with `key`, `delay`, `run_at` or `idempotency_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DebounceSpec>,
    /// The lane of the queue's rate limit the run counts against (1–256 bytes): each
    /// `rate_key` gets the whole limit; runs without one share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<String>,
}

/// `debounce` of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebounceSpec {
    /// The debounce key (1–256 bytes), shared with `key` among one queue's and job's runs.
    pub key: String,
    /// Quiet time after the last enqueue (`1s`, `5m`), 1 ms to 365 days.
    pub period: String,
    /// Longest delay after the first enqueue, at least `period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<String>,
}

/// A rate limit: at most `max` per `per`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Starts per window, 1 to 100,000.
    pub max: u32,
    /// The sliding window (`1s`, `1m`), 1 ms to 24 h.
    pub per: String,
}

impl Enqueue {
    /// A request for `job` with `payload` and no options.
    pub fn new(job: JobName, payload: Value) -> Self {
        Self {
            job,
            payload,
            idempotency_key: None,
            max_attempts: None,
            backoff: None,
            timeout_ms: None,
            fuel: None,
            memory_bytes: None,
            delay: None,
            run_at: None,
            priority: 0,
            key: None,
            on_duplicate: None,
            debounce: None,
            rate_key: None,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// `POST /v1/runs/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRun {
    /// Why, for the run's timeline (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the child runs it started (and theirs) that have not ended are cancelled
    /// too; default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<bool>,
}

/// `POST /v1/runs/cancel`: cancel every run not yet ended that matches (at least one filter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelMatching {
    /// Only runs of this queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::QueueName>,
    /// Only runs of this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::JobName>,
    /// Only runs in this state: `queued`, `retrying`, `sleeping` or `running` (an attempt
    /// executing now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::RunState>,
    /// Why, for each run's timeline (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /v1/queues/{queue}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutQueue {
    /// Attempts of the queue's runs executing at once (at least 1); absent or null: only the
    /// tenant's and the host's limits apply.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Starts of the queue's runs per window, counted per `rate_key`; runs over it wait
    /// (their view says why). Absent or null: no rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
}

/// `PUT /v1/secrets/{name}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value: 1 byte to 8 KiB of UTF-8. Never shown again.
    pub value: String,
    /// Hosts whose requests may carry it in a header (`[scheme://]host[:port]` rules).
    #[serde(default)]
    pub hosts: Vec<RuleSpec>,
    /// Whether the handler may read it with `ctx.secret`.
    #[serde(default)]
    pub readable: bool,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret")
            .field("hosts", &self.hosts)
            .field("readable", &self.readable)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let ok: Enqueue = serde_json::from_str(r#"{"job": "a", "payload": [1]}"#).unwrap();
        assert_eq!(ok.payload, serde_json::json!([1]));
        for bad in [
            r#"{"job": "a", "jobs": 1}"#,
            r#"{"job": "a", "backoff": {"initial": 5}}"#,
            r#"{"job": "a/b"}"#,
            r#"{"job": "a", "priority": 2147483648}"#,
        ] {
            assert!(serde_json::from_str::<Enqueue>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<PutQueue>(r#"{"concurency": 1}"#).is_err());
    }

    #[test]
    fn a_secret_value_never_reaches_debug_output() {
        let s: PutSecret = serde_json::from_str(r#"{"value": "hunter22"}"#).unwrap();
        assert!(!format!("{s:?}").contains("hunter22"));
    }
}
