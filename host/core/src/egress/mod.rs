//! What a tenant's egress is, as data: the allowlist grammar ([`rules`]), the per-attempt
//! limits with their defaults and the operator's caps, the settings a tenant stores, and the
//! view of a tenant's secrets that outbound requests and log masking use. Sending lives in
//! the runtime; this is what the store, the engine and the API share.

pub mod rules;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use rules::{EgressRule, RuleError, RuleSpec, Scheme};

/// What the egress hooks, the guest's secret reads and log masking see of a tenant's secrets
/// (implemented by `crate::secrets`).
pub trait SecretSource: Send + Sync {
    /// The value of `name` for a header of a request to `scheme://host:port`, or why not.
    fn for_header(
        &self,
        name: &str,
        scheme: Scheme,
        host: &str,
        port: u16,
    ) -> Result<String, String>;
    /// The value of a readable secret, or why not.
    fn readable(&self, name: &str) -> Result<String, String>;
    /// `text` with every secret value replaced by `[secret:NAME]`.
    fn mask(&self, text: &str) -> String;
}

/// Per-attempt limits on outbound HTTP. Every field has a documented default and an
/// operator cap ([`EgressConfig::caps`]); a tenant may choose other values within the caps.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressLimits {
    /// Requests one attempt may send (refused ones count too).
    pub max_requests: u32,
    /// Requests of one attempt in flight at once.
    pub max_concurrent: u32,
    /// Bytes of one request body.
    pub max_request_bytes: u64,
    /// Bytes of one response body; past it the body ends with an error.
    pub max_response_bytes: u64,
    /// Time to connect (TCP and TLS), in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time from sending the request to the response's headers, in milliseconds.
    pub first_byte_timeout_ms: u64,
}

impl Default for EgressLimits {
    /// 100 requests per attempt, 8 at once, 1 MiB request and 8 MiB response bodies, 10 s to
    /// connect, 30 s to the first byte.
    fn default() -> Self {
        Self {
            max_requests: 100,
            max_concurrent: 8,
            max_request_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 30_000,
        }
    }
}

impl EgressLimits {
    /// The largest values an operator may allow: 10,000 requests, 64 at once, 64 MiB bodies,
    /// 60 s to connect, 10 min to the first byte.
    pub const CEILING: Self = Self {
        max_requests: 10_000,
        max_concurrent: 64,
        max_request_bytes: 64 << 20,
        max_response_bytes: 64 << 20,
        connect_timeout_ms: 60_000,
        first_byte_timeout_ms: 600_000,
    };

    /// Each field at most `cap`'s, and at least 1.
    pub fn clamp(self, cap: &Self) -> Self {
        let f = |v: u64, c: u64| v.clamp(1, c.max(1));
        let g = |v: u32, c: u32| v.clamp(1, c.max(1));
        Self {
            max_requests: g(self.max_requests, cap.max_requests),
            max_concurrent: g(self.max_concurrent, cap.max_concurrent),
            max_request_bytes: f(self.max_request_bytes, cap.max_request_bytes),
            max_response_bytes: f(self.max_response_bytes, cap.max_response_bytes),
            connect_timeout_ms: f(self.connect_timeout_ms, cap.connect_timeout_ms),
            first_byte_timeout_ms: f(self.first_byte_timeout_ms, cap.first_byte_timeout_ms),
        }
    }

    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("max_requests", u64::from(self.max_requests)),
            ("max_concurrent", u64::from(self.max_concurrent)),
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
        ]
    }
}

/// Some of [`EgressLimits`]' fields: what a tenant or the operator set; the rest come from a
/// base (the defaults for a tenant, [`EgressLimits::CEILING`] for the operator's caps).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// See [`EgressLimits::max_requests`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// See [`EgressLimits::max_concurrent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// See [`EgressLimits::max_request_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// See [`EgressLimits::max_response_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// See [`EgressLimits::connect_timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// See [`EgressLimits::first_byte_timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_ms: Option<u64>,
}

impl LimitsPatch {
    /// `base` with the fields this patch sets.
    pub fn over(&self, base: EgressLimits) -> EgressLimits {
        EgressLimits {
            max_requests: self.max_requests.unwrap_or(base.max_requests),
            max_concurrent: self.max_concurrent.unwrap_or(base.max_concurrent),
            max_request_bytes: self.max_request_bytes.unwrap_or(base.max_request_bytes),
            max_response_bytes: self.max_response_bytes.unwrap_or(base.max_response_bytes),
            connect_timeout_ms: self.connect_timeout_ms.unwrap_or(base.connect_timeout_ms),
            first_byte_timeout_ms: self
                .first_byte_timeout_ms
                .unwrap_or(base.first_byte_timeout_ms),
        }
    }

    /// Refuses a set field that is 0 or over `cap`, naming it.
    pub fn check(&self, cap: &EgressLimits) -> Result<(), String> {
        let given = [
            self.max_requests.map(u64::from),
            self.max_concurrent.map(u64::from),
            self.max_request_bytes,
            self.max_response_bytes,
            self.connect_timeout_ms,
            self.first_byte_timeout_ms,
        ];
        for (value, (name, cap)) in given.into_iter().zip(cap.fields()) {
            match value {
                Some(0) => return Err(format!("{name} must be at least 1")),
                Some(v) if v > cap => return Err(format!("{name} {v} is over the cap of {cap}")),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The operator's egress settings (`[egress]` in the server config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Allow requests to loopback, private and link-local addresses. Off by default: only
    /// tests and local development should turn it on.
    pub allow_private: bool,
    /// A PEM file of extra CA certificates trusted beside the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The most any tenant's attempts may use, at most [`EgressLimits::CEILING`] (unset
    /// fields: the ceiling). The defaults are lowered to meet them.
    pub caps: LimitsPatch,
}

impl EgressConfig {
    /// The caps in force.
    pub fn caps(&self) -> EgressLimits {
        self.caps.over(EgressLimits::CEILING)
    }

    /// Refuses caps over the ceiling or at 0, naming the key.
    pub fn check(&self) -> Result<(), String> {
        self.caps
            .check(&EgressLimits::CEILING)
            .map_err(|e| format!("egress.caps: {e}"))
    }
}

/// A tenant's egress settings, as stored and as `GET/PUT /v1/egress` shows them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEgress {
    /// The allowlist; empty: nothing may be reached.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Limits other than the defaults, within the operator's caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsPatch>,
}
