//! Outbound HTTP for guests (`wasi:http/outgoing-handler`), deny by default.
//!
//! Every request a guest sends passes, in order: the attempt's request cap; the tenant's
//! allowlist ([`rules`]); DNS resolution, after which every address the name resolves to must
//! be public unless the operator set `allow_private` ([`addr`]); then the host connects to the
//! address it checked (never resolving again, so a name cannot change between check and
//! connect), speaks TLS with the Mozilla roots plus the operator's extra CA, and sends
//! HTTP/1.1 with the attempt's size caps and timeouts, all inside the attempt's deadline.
//! Each call is kept on the run's timeline without headers, bodies or query strings.
//!
//! The sender is written here rather than taken from wasmtime's default sender because that
//! one resolves and connects in one step (no place to check the addresses) and has no caps.

pub mod addr;
pub mod rules;
mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use rules::{EgressRule, RuleError, RuleSpec, Scheme};
pub use send::EgressHooks;

use crate::model::HttpCall;

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

/// A failure to set up egress (a bad CA file).
#[derive(Debug, thiserror::Error)]
#[error("egress: {0}")]
pub struct EgressSetupError(String);

/// A tenant's egress settings, as stored and as `GET/PUT /v1/egress` shows them.
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

/// Outbound calls by tenant and outcome class (`2xx` ... `5xx`, `error`, `denied`).
#[derive(Debug, Default)]
pub struct EgressStats {
    counts: Mutex<HashMap<(String, &'static str), u64>>,
}

impl EgressStats {
    fn count(&self, tenant: &str, class: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((tenant.to_owned(), class)).or_default() += 1;
    }

    /// Every (tenant, class, count), sorted.
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = counts
            .iter()
            .map(|((t, c), n)| (t.clone(), *c, *n))
            .collect();
        all.sort();
        all
    }
}

/// Egress shared by every attempt: the operator's policy, the TLS client settings, the
/// tenants' parsed rules and the counters.
pub struct Egress {
    config: EgressConfig,
    tls: Arc<rustls::ClientConfig>,
    tenants: RwLock<HashMap<String, Arc<TenantPolicy>>>,
    stats: EgressStats,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("config", &self.config)
            .finish()
    }
}

/// One tenant's rules and limits, parsed.
#[derive(Debug, Default)]
struct TenantPolicy {
    rules: Vec<EgressRule>,
    limits: Option<LimitsPatch>,
}

impl Egress {
    /// Builds the TLS settings (reading the extra CA file, if any).
    pub fn new(config: EgressConfig) -> Result<Self, EgressSetupError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &config.ca_file {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| EgressSetupError(format!("ca_file {}: {e}", path.display())))?;
            let mut added = 0;
            for cert in certs {
                let cert =
                    cert.map_err(|e| EgressSetupError(format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| EgressSetupError(format!("ca_file {}: {e}", path.display())))?;
                added += 1;
            }
            if added == 0 {
                return Err(EgressSetupError(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EgressSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config,
            tls: Arc::new(tls),
            tenants: RwLock::default(),
            stats: EgressStats::default(),
        })
    }

    /// The operator's settings.
    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    /// Outbound call counters.
    pub fn stats(&self) -> &EgressStats {
        &self.stats
    }

    /// Checks a tenant's settings: every rule parses and every limit is within the caps.
    pub fn check(&self, settings: &TenantEgress) -> Result<Vec<EgressRule>, String> {
        let rules = rules::parse_all(&settings.rules).map_err(|e| e.to_string())?;
        if let Some(limits) = &settings.limits {
            limits.check(&self.config.caps())?;
        }
        Ok(rules)
    }

    /// Installs a tenant's settings for its next attempts (already checked and stored).
    pub fn install(&self, tenant: &str, settings: &TenantEgress) -> Result<(), String> {
        let rules = self.check(settings)?;
        let policy = Arc::new(TenantPolicy {
            rules,
            limits: settings.limits,
        });
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_owned(), policy);
        Ok(())
    }

    /// `tenant`'s installed rules and limits (none installed: nothing allowed).
    fn policy_of(&self, tenant: &str) -> Arc<TenantPolicy> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// Of the normalised patterns in `needs`, those no rule of `tenant` covers.
    pub fn uncovered<'a>(&self, tenant: &str, needs: &'a [String]) -> Vec<&'a str> {
        let policy = self.policy_of(tenant);
        needs
            .iter()
            .filter(|need| {
                let spec = RuleSpec {
                    pattern: (*need).clone(),
                    methods: Vec::new(),
                };
                match EgressRule::parse(&spec) {
                    Ok(need) => !policy.rules.iter().any(|r| r.covers(&need)),
                    Err(_) => true,
                }
            })
            .map(String::as_str)
            .collect()
    }

    /// The settings one attempt of `tenant`'s runs sends with, until `deadline`.
    pub fn for_attempt(
        self: &Arc<Self>,
        tenant: &str,
        deadline: Instant,
        secrets: Arc<dyn SecretSource>,
    ) -> AttemptEgress {
        let policy = self.policy_of(tenant);
        let caps = self.config.caps();
        let limits = policy
            .limits
            .unwrap_or_default()
            .over(EgressLimits::default())
            .clamp(&caps);
        AttemptEgress {
            shared: self.clone(),
            tenant: tenant.to_owned(),
            policy,
            limits,
            deadline,
            secrets,
            calls: Arc::default(),
        }
    }
}

/// What one attempt may reach, with what limits, and the calls it made so far.
pub struct AttemptEgress {
    shared: Arc<Egress>,
    tenant: String,
    policy: Arc<TenantPolicy>,
    limits: EgressLimits,
    deadline: Instant,
    secrets: Arc<dyn SecretSource>,
    calls: Arc<Mutex<Vec<(HttpCall, bool)>>>,
}

impl AttemptEgress {
    /// The calls finished or refused since the last take, each with whether it was refused.
    pub fn take_calls(&self) -> Vec<(HttpCall, bool)> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The tenant's secrets, for reads and masking.
    pub fn secrets(&self) -> &dyn SecretSource {
        &*self.secrets
    }
}
