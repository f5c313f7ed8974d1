//! Stored records of the service side: tenants, deployed modules, queue settings and
//! idempotency keys.

use serde::{Deserialize, Serialize};

use stepwise_core::JobSpec;
use stepwise_core::clock::Millis;

/// A tenant: the unit of isolation. Every module, queue and run belongs to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
}

/// A module as deployed by one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// sha256 (hex) of the component.
    pub hash: String,
    /// Size of the component, in bytes.
    pub size: u64,
    /// The jobs it offers, from its own `describe`.
    pub jobs: Vec<JobSpec>,
    /// When it was (last) deployed.
    pub deployed_at: Millis,
}

/// Settings of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Attempts of this queue's runs executing at once; `None` = only the global limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Starts of this queue's runs per window, counted per `rate_key` (runs without one
    /// share one count); `None` = no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<stepwise_core::rate::RateLimit>,
}

/// Who holds an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The run created under the key.
    pub run: String,
    /// sha256 (hex) of the canonical JSON of the request it was created with: its job,
    /// payload, policy overrides and priority (keys taken by older versions: the payload).
    pub payload_hash: String,
    /// When the key was taken.
    pub created_at: Millis,
    /// When the key may be forgotten; absent while its run has not ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

impl IdempotencyRecord {
    /// Whether the record no longer holds its key at `now`.
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}
