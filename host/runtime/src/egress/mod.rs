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
mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use send::EgressHooks;
pub use stepwise_core::egress::{
    EgressConfig, EgressLimits, EgressRule, LimitsPatch, RuleError, RuleSpec, Scheme, SecretSource,
    TenantEgress, rules,
};

use stepwise_core::model::HttpCall;

/// A failure to set up egress (a bad CA file).
#[derive(Debug, thiserror::Error)]
#[error("egress: {0}")]
pub struct EgressSetupError(String);

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
            gate: None,
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
    /// What each request waits for before it is sent.
    gate: Option<crate::step_host::SendGate>,
}

impl AttemptEgress {
    /// These settings, with every request waiting for `gate` first.
    pub fn gated(mut self, gate: Option<crate::step_host::SendGate>) -> Self {
        self.gate = gate;
        self
    }

    /// The calls finished or refused since the last take, each with whether it was refused.
    pub fn take_calls(&self) -> Vec<(HttpCall, bool)> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The tenant's secrets, for reads and masking.
    pub fn secrets(&self) -> &dyn SecretSource {
        &*self.secrets
    }
}
