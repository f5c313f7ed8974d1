//! A tenant's egress settings: read, checked against the operator's caps, stored, and
//! installed for its next attempts.

use super::{Engine, EngineError};
use stepwise_runtime::egress::{EgressRule, RuleSpec, TenantEgress};

impl Engine {
    /// A tenant's egress settings as stored (none: nothing allowed).
    pub async fn egress_settings(&self, tenant: &str) -> Result<TenantEgress, EngineError> {
        Ok(self.inner.store.egress(tenant).await?)
    }

    /// Replaces a tenant's egress settings. Every rule is parsed and every limit checked
    /// against the operator's caps first; on any refusal nothing is stored. Returns the
    /// settings in their normalised form (`api.stripe.com` → `https://api.stripe.com:443`).
    pub async fn set_egress(
        &self,
        tenant: &str,
        settings: TenantEgress,
    ) -> Result<TenantEgress, EngineError> {
        let egress = &self.inner.egress;
        let rules = egress
            .check(&settings)
            .map_err(EngineError::InvalidEgress)?;
        let normalised = TenantEgress {
            rules: dedup(rules.iter().map(EgressRule::spec)),
            limits: settings.limits,
        };
        self.inner.store.put_egress(tenant, &normalised).await?;
        egress
            .install(tenant, &normalised)
            .map_err(EngineError::InvalidEgress)?;
        tracing::info!(tenant = %tenant, rules = normalised.rules.len(), "egress settings replaced");
        Ok(normalised)
    }

    /// Warnings for a deploy: each host a job of `jobs` declares that `tenant`'s egress rules
    /// do not allow (its requests there would be refused).
    pub fn egress_warnings(&self, tenant: &str, jobs: &[stepwise_runtime::JobSpec]) -> Vec<String> {
        let mut out = Vec::new();
        for job in jobs {
            for host in self.inner.egress.uncovered(tenant, &job.hosts) {
                out.push(format!(
                    "job '{}' calls {host}, which tenant '{tenant}''s egress rules do not \
                     allow: its requests there will be refused (stepwise egress allow {host})",
                    job.name
                ));
            }
        }
        out
    }

    /// The shared egress policy (operator settings and counters).
    pub fn egress(&self) -> &stepwise_runtime::egress::Egress {
        &self.inner.egress
    }
}

/// The rules in order, each once.
fn dedup(specs: impl Iterator<Item = RuleSpec>) -> Vec<RuleSpec> {
    let mut out: Vec<RuleSpec> = Vec::new();
    for s in specs {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
