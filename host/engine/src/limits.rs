//! What one tenant may use: its share of attempt slots (a cap and a weight), its quotas on
//! stored objects, and the host's memory budget across all tenants — the operator's defaults
//! with per-tenant overrides, and the [`ClaimPolicy`] the scheduler claims runs under.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Engine;
use stepwise_core::picker::ClaimPolicy;

/// One tenant's overrides of the operator's defaults; absent fields inherit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Most attempts of the tenant executing at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Share weight: a tenant of weight 2 gets twice the slots of one of weight 1 when both
    /// have work waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u64>,
    /// Most runs not yet final (queued, retrying, sleeping, running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting_runs: Option<u64>,
    /// Most modules deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_modules: Option<usize>,
    /// Most bytes of modules deployed, all together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_module_bytes_total: Option<u64>,
    /// Most bytes of records its runs may store (runs, steps, timelines, logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_bytes: Option<u64>,
    /// Most enqueue requests per window (`429` with `Retry-After` past it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueue_rate: Option<stepwise_core::rate::RateLimit>,
}

/// The operator's per-tenant defaults and overrides. Every default is stated on
/// [`TenantLimits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLimits {
    /// Slots one tenant may hold; `None` = half of the engine's concurrency (at least 1), so
    /// one tenant's long attempts always leave room for the others.
    pub concurrency: Option<usize>,
    /// See [`TenantSettings::max_waiting_runs`].
    pub max_waiting_runs: u64,
    /// See [`TenantSettings::max_modules`].
    pub max_modules: usize,
    /// See [`TenantSettings::max_module_bytes_total`].
    pub max_module_bytes_total: u64,
    /// See [`TenantSettings::max_stored_bytes`].
    pub max_stored_bytes: u64,
    /// See [`TenantSettings::enqueue_rate`]; `None` = unlimited.
    pub enqueue_rate: Option<stepwise_core::rate::RateLimit>,
    /// Per-tenant overrides, by tenant name.
    pub overrides: HashMap<String, TenantSettings>,
}

impl Default for TenantLimits {
    /// Half the slots each, weight 1, 100,000 waiting runs, 100 modules and 1 GiB of modules,
    /// 10 GiB of stored records, no enqueue rate limit.
    fn default() -> Self {
        Self {
            concurrency: None,
            max_waiting_runs: 100_000,
            max_modules: 100,
            max_module_bytes_total: 1 << 30,
            max_stored_bytes: 10 << 30,
            enqueue_rate: None,
            overrides: HashMap::new(),
        }
    }
}

impl TenantLimits {
    fn get(&self, tenant: &str) -> TenantSettings {
        self.overrides.get(tenant).copied().unwrap_or_default()
    }

    /// `tenant`'s slot cap under an engine running `concurrency` attempts at once.
    pub fn concurrency_of(&self, tenant: &str, concurrency: usize) -> usize {
        self.get(tenant)
            .concurrency
            .or(self.concurrency)
            .unwrap_or(concurrency / 2)
            .clamp(1, concurrency.max(1))
    }

    /// `tenant`'s share weight.
    pub fn weight_of(&self, tenant: &str) -> u64 {
        self.get(tenant).weight.unwrap_or(1).clamp(1, 1_000)
    }

    /// `tenant`'s quota of runs not yet final.
    pub fn max_waiting_runs_of(&self, tenant: &str) -> u64 {
        self.get(tenant)
            .max_waiting_runs
            .unwrap_or(self.max_waiting_runs)
    }

    /// `tenant`'s quota of stored bytes.
    pub fn max_stored_bytes_of(&self, tenant: &str) -> u64 {
        self.get(tenant)
            .max_stored_bytes
            .unwrap_or(self.max_stored_bytes)
    }

    /// `tenant`'s limit on enqueue requests, if any.
    pub fn enqueue_rate_of(&self, tenant: &str) -> Option<stepwise_core::rate::RateLimit> {
        self.get(tenant).enqueue_rate.or(self.enqueue_rate)
    }

    /// `tenant`'s quota of modules, as (count, total bytes).
    pub fn modules_quota_of(&self, tenant: &str) -> (usize, u64) {
        let s = self.get(tenant);
        (
            s.max_modules.unwrap_or(self.max_modules),
            s.max_module_bytes_total
                .unwrap_or(self.max_module_bytes_total),
        )
    }
}

/// Half the machine's memory (`MemTotal` in /proc/meminfo), or 4 GiB where that cannot be
/// read: enough that a burst of attempts at their memory caps queues instead of swapping.
pub fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb.saturating_mul(1024));
    total.map_or(4 << 30, |bytes| bytes / 2)
}

/// The limits the scheduler claims runs under, read from the engine's settings.
pub(crate) struct EnginePolicy<'a> {
    engine: &'a Engine,
}

impl ClaimPolicy for EnginePolicy<'_> {
    fn tenant_limit(&self, tenant: &str) -> usize {
        let config = self.engine.config();
        config.tenants.concurrency_of(tenant, config.concurrency)
    }

    fn tenant_weight(&self, tenant: &str) -> u64 {
        self.engine.config().tenants.weight_of(tenant)
    }

    fn queue_limit(&self, tenant: &str, queue: &str) -> Option<usize> {
        self.engine
            .queue_settings(tenant, queue)
            .concurrency
            .map(|n| n as usize)
    }

    fn memory_budget(&self) -> u64 {
        self.engine.config().memory_budget_bytes
    }
}

impl Engine {
    pub(crate) fn claim_policy(&self) -> EnginePolicy<'_> {
        EnginePolicy { engine: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_default_to_half_the_slots_and_overrides_win() {
        let mut limits = TenantLimits::default();
        assert_eq!(limits.concurrency_of("a", 64), 32);
        assert_eq!(limits.concurrency_of("a", 1), 1);
        limits.overrides.insert(
            "big".into(),
            TenantSettings {
                concurrency: Some(1_000),
                weight: Some(3),
                ..TenantSettings::default()
            },
        );
        assert_eq!(limits.concurrency_of("big", 64), 64);
        assert_eq!(limits.weight_of("big"), 3);
        assert_eq!(limits.weight_of("a"), 1);
        assert!(default_memory_budget() > 0);
    }
}
