//! Secrets held by the host for a tenant's handlers: stored sealed ([`cipher`]), kept opened in
//! memory per tenant, and used two ways, each chosen per secret:
//!
//! - **bound to hosts** — the guest writes `{{secret:NAME}}` in a request header and the host
//!   puts the value in only when the request goes to a host the secret is bound to (the same
//!   `[scheme://]host[:port]` patterns as egress rules, so `api.stripe.com` means HTTPS on
//!   443); a request carrying it anywhere else is refused. The guest never sees the value.
//! - **readable** — `ctx.secret("NAME")` returns the value, for uses that are not headers.
//!
//! Every value is masked (`[secret:NAME]`) in the run's log lines, captured output and error
//! messages. No API returns a value; the listing shows names, bindings and dates.

pub mod cipher;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

pub use cipher::SecretKeys;
pub use stepwise_core::secret::{Sealed, SecretInfo, SecretRecord};

use stepwise_runtime::egress::{EgressRule, RuleSpec, Scheme, SecretSource};

/// Most secrets one tenant may hold.
pub const MAX_SECRETS: usize = 100;

/// Largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 << 10;

/// Most hosts one secret may be bound to.
pub const MAX_HOSTS: usize = 16;

/// Shortest value that is masked in logs: shorter ones would mask ordinary text.
const MIN_MASKED: usize = 4;

/// Key material as text: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KeyText(pub String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText([redacted])")
    }
}

/// The operator's secrets settings: the key that seals values (64 hex digits) and the keys it
/// replaced, still accepted for opening until every row is re-sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsConfig {
    /// The current key; none: secrets unavailable.
    pub key: Option<KeyText>,
    /// Earlier keys.
    pub previous_keys: Vec<KeyText>,
}

impl SecretsConfig {
    /// The keys, none when no key is configured.
    pub fn keys(&self) -> Result<Option<SecretKeys>, SecretsError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let previous: Vec<String> = self.previous_keys.iter().map(|k| k.0.clone()).collect();
        SecretKeys::from_hex(&key.0, &previous).map(Some)
    }
}

/// Why a secrets operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The operator configured no key, so no secret can be stored or used.
    #[error(
        "secrets are not available: the operator has configured no secrets key \
         (`secrets_key` in the config or STEPWISE_SECRETS_KEY)"
    )]
    NoKey,
    /// A configured key is malformed.
    #[error("bad secrets key: {0}")]
    BadKey(String),
    /// A stored value does not open with any configured key.
    #[error("secret {name} of tenant {tenant} does not open with the configured keys")]
    Unreadable {
        /// Its tenant.
        tenant: String,
        /// Its name.
        name: String,
    },
    /// The request to store a secret is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// A secret as a tenant sends it (`PUT /v1/secrets/{name}`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    /// The value: 1 to 8 KiB of UTF-8.
    pub value: String,
    /// Hosts whose requests may carry it in a header.
    #[serde(default)]
    pub hosts: Vec<RuleSpec>,
    /// Whether `ctx.secret` may read it.
    #[serde(default)]
    pub readable: bool,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("hosts", &self.hosts)
            .field("readable", &self.readable)
            .finish_non_exhaustive()
    }
}

/// Refuses a name that is not 1-64 ASCII letters, digits or `_`.
pub fn check_name(name: &str) -> Result<(), SecretsError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SecretsError::Invalid(format!(
            "secret name {:?} is not 1-64 ASCII letters, digits or '_'",
            stepwise_core::text::prefix(name, 80)
        )))
    }
}

/// Checks a new secret; returns its bindings normalised.
pub fn check(name: &str, secret: &NewSecret) -> Result<Vec<EgressRule>, SecretsError> {
    check_name(name)?;
    if secret.value.is_empty() || secret.value.len() > MAX_VALUE_BYTES {
        return Err(SecretsError::Invalid(format!(
            "secret {name}: the value is {} bytes; it must be 1 to {MAX_VALUE_BYTES}",
            secret.value.len()
        )));
    }
    if secret.hosts.len() > MAX_HOSTS {
        return Err(SecretsError::Invalid(format!(
            "secret {name}: bound to {} hosts, at most {MAX_HOSTS}",
            secret.hosts.len()
        )));
    }
    if secret.hosts.is_empty() && !secret.readable {
        return Err(SecretsError::Invalid(format!(
            "secret {name} is bound to no host and not readable: nothing could use it \
             (give `hosts`, or `readable: true`)"
        )));
    }
    if secret.hosts.iter().any(|h| !h.methods.is_empty()) {
        return Err(SecretsError::Invalid(format!(
            "secret {name}: a binding names hosts only, not methods"
        )));
    }
    secret
        .hosts
        .iter()
        .map(EgressRule::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| SecretsError::Invalid(format!("secret {name}: {e}")))
}

/// One opened secret.
struct Secret {
    value: String,
    hosts: Vec<EgressRule>,
    readable: bool,
}

/// A tenant's opened secrets.
#[derive(Default)]
pub struct TenantSecrets {
    by_name: HashMap<String, Secret>,
}

impl std::fmt::Debug for TenantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSecrets")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretSource for TenantSecrets {
    fn for_header(
        &self,
        name: &str,
        scheme: Scheme,
        host: &str,
        port: u16,
    ) -> Result<String, String> {
        let secret = self.by_name.get(name).ok_or_else(|| {
            format!("the request names secret {name}, which the tenant has not set")
        })?;
        if secret
            .hosts
            .iter()
            .any(|r| r.allows(scheme, host, port, ""))
        {
            return Ok(secret.value.clone());
        }
        Err(format!(
            "secret {name} is not bound to {}://{host}:{port}",
            scheme.as_str()
        ))
    }

    fn readable(&self, name: &str) -> Result<String, String> {
        match self.by_name.get(name) {
            None => Err(format!("no secret named {name}")),
            Some(s) if !s.readable => Err(format!(
                "secret {name} is bound to hosts and not readable: use it as {{{{secret:{name}}}}} \
                 in a request header"
            )),
            Some(s) => Ok(s.value.clone()),
        }
    }

    fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, s) in &self.by_name {
            if s.value.len() < MIN_MASKED {
                continue;
            }
            // The value as it appears in JSON text too (a step output), where quotes,
            // backslashes and control characters are escaped.
            let json = serde_json::to_string(&s.value).unwrap_or_default();
            let escaped = json
                .get(1..json.len().saturating_sub(1))
                .unwrap_or_default();
            for form in [s.value.as_str(), escaped] {
                if !form.is_empty() && out.contains(form) {
                    out = out.replace(form, &format!("[secret:{name}]"));
                }
            }
        }
        out
    }
}

/// Every tenant's opened secrets and the keys that seal them.
#[derive(Debug, Default)]
pub struct Secrets {
    keys: Option<SecretKeys>,
    tenants: RwLock<HashMap<String, Arc<TenantSecrets>>>,
}

impl Secrets {
    /// With `keys` (none: secrets unavailable).
    pub fn new(keys: Option<SecretKeys>) -> Self {
        Self {
            keys,
            tenants: RwLock::default(),
        }
    }

    /// The keys, or why there are none.
    pub fn keys(&self) -> Result<&SecretKeys, SecretsError> {
        self.keys.as_ref().ok_or(SecretsError::NoKey)
    }

    /// Opens and installs a tenant's stored secrets (replacing what was installed).
    pub fn install(&self, tenant: &str, records: &[SecretRecord]) -> Result<(), SecretsError> {
        let keys = self.keys()?;
        let mut by_name = HashMap::new();
        for r in records {
            let value = keys.open(tenant, &r.name, &r.sealed)?;
            let value = String::from_utf8(value).map_err(|_| SecretsError::Unreadable {
                tenant: tenant.to_owned(),
                name: r.name.clone(),
            })?;
            let hosts = r
                .hosts
                .iter()
                .filter_map(|h| EgressRule::parse(h).ok())
                .collect();
            by_name.insert(
                r.name.clone(),
                Secret {
                    value,
                    hosts,
                    readable: r.readable,
                },
            );
        }
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_owned(), Arc::new(TenantSecrets { by_name }));
        Ok(())
    }

    /// The tenants with secrets installed.
    pub fn tenants(&self) -> Vec<String> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// A tenant's secrets as its attempts see them.
    pub fn of(&self, tenant: &str) -> Arc<TenantSecrets> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str, hosts: &[&str], readable: bool) -> NewSecret {
        NewSecret {
            value: value.into(),
            hosts: hosts
                .iter()
                .map(|h| RuleSpec {
                    pattern: h.to_string(),
                    methods: vec![],
                })
                .collect(),
            readable,
        }
    }

    fn installed(records: &[(&str, NewSecret)]) -> Arc<TenantSecrets> {
        let secrets = Secrets::new(Some(
            SecretKeys::from_hex(&SecretKeys::generate(), &[]).unwrap(),
        ));
        let keys = secrets.keys().unwrap();
        let rows: Vec<SecretRecord> = records
            .iter()
            .map(|(name, s)| SecretRecord {
                name: name.to_string(),
                sealed: keys.seal("t", name, s.value.as_bytes()),
                hosts: s.hosts.clone(),
                readable: s.readable,
                updated_at: 0,
            })
            .collect();
        secrets.install("t", &rows).unwrap();
        secrets.of("t")
    }

    #[test]
    fn a_bound_secret_goes_only_to_its_hosts() {
        let s = installed(&[("KEY", secret("sk_live_abc", &["api.stripe.com"], false))]);
        assert_eq!(
            s.for_header("KEY", Scheme::Https, "api.stripe.com", 443)
                .unwrap(),
            "sk_live_abc"
        );
        assert!(
            s.for_header("KEY", Scheme::Https, "evil.com", 443)
                .unwrap_err()
                .contains("not bound")
        );
        assert!(
            s.for_header("KEY", Scheme::Http, "api.stripe.com", 80)
                .is_err(),
            "never over plain HTTP"
        );
        assert!(
            s.for_header("NOPE", Scheme::Https, "api.stripe.com", 443)
                .is_err()
        );
        assert!(s.readable("KEY").unwrap_err().contains("not readable"));
    }

    #[test]
    fn values_are_masked_and_readable_ones_read() {
        let s = installed(&[
            ("SIGNING", secret("whsec_0123456789", &[], true)),
            ("PIN", secret("12", &[], true)),
        ]);
        assert_eq!(s.readable("SIGNING").unwrap(), "whsec_0123456789");
        assert_eq!(
            s.mask("sig whsec_0123456789 end"),
            "sig [secret:SIGNING] end"
        );
        assert_eq!(s.mask("12 apples"), "12 apples", "too short to mask");
    }

    #[test]
    fn bad_secrets_are_refused_with_the_reason() {
        for (name, s, says) in [
            ("bad name", secret("v", &[], true), "letters"),
            ("N", secret("", &[], true), "1 to"),
            (
                "N",
                secret(&"x".repeat(MAX_VALUE_BYTES + 1), &[], true),
                "1 to",
            ),
            ("N", secret("v", &[], false), "nothing could use it"),
            ("N", secret("v", &["*.com"], false), "top-level"),
        ] {
            let e = check(name, &s).unwrap_err().to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
    }
}
