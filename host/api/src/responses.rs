//! What the routes other than the run views answer.

use serde::{Deserialize, Serialize};
use stepwise_core::Millis;
use stepwise_core::egress::{EgressLimits, LimitsPatch, RuleSpec};
use stepwise_core::job::JobSpec;
use stepwise_core::secret::SecretInfo;
use utoipa::ToSchema;

use crate::run::Run;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// One host using the store, in `GET /v1/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    /// Its id: the holder named on its claims.
    pub id: String,
    /// When it started (milliseconds since the Unix epoch).
    pub started_at: Millis,
    /// When it last renewed its leases.
    pub last_seen: Millis,
    /// Runs it holds claims on (attempts executing there).
    pub claims: u64,
    /// When the first of its leases lapses unless renewed; absent without claims, and for
    /// the embedded store, whose claims last as long as its process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_lease_expiry: Option<Millis>,
}

/// `GET /v1/hosts`: the hosts using the store now (those whose last renewal is younger than
/// a lease), and which one answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hosts {
    /// The host that answered.
    pub this_host: String,
    /// The live hosts, by id.
    pub hosts: Vec<Host>,
}

/// `POST /v1/tenants`: the tenant and its first token (shown only here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    /// The tenant's name.
    pub tenant: String,
    /// Its API token (`sw_…`).
    pub token: String,
}

/// A deployed module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Module {
    /// sha256 (hex) of the component.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// The jobs it offers, from its `describe`.
    pub jobs: Vec<JobSpec>,
    /// When it was (last) deployed (ms since the Unix epoch).
    pub deployed_at: Millis,
}

/// `POST /v1/modules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    /// The module.
    #[serde(flatten)]
    pub module: Module,
    /// Hosts its jobs declare that the tenant's egress rules do not allow.
    pub warnings: Vec<String>,
}

/// `GET /v1/modules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModuleList {
    /// The tenant's modules.
    pub modules: Vec<Module>,
}

/// `POST /v1/queues/{queue}/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    /// The run created, or the one already holding the idempotency key.
    pub run: Run,
    /// Whether the run already existed (answered `200`; a new run is `201`).
    pub deduplicated: bool,
    /// What the enqueue did: `created`, `deduplicated` (idempotency key), `kept`, `replaced`
    /// or `debounced` (a pending run's key).
    pub outcome: String,
}

/// A queue (`GET /v1/queues/{queue}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Its name.
    pub queue: String,
    /// Its concurrency limit, if it has one.
    pub concurrency: Option<u32>,
    /// Its rate limit, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<stepwise_core::rate::RateLimit>,
    /// Runs stored, in any state.
    pub runs: u64,
    /// Runs not yet final.
    pub depth: u64,
    /// Attempts executing now.
    pub running: u64,
    /// Runs in its dead-letter list.
    pub dead_letters: u64,
}

/// `GET /v1/queues`: every queue of the tenant that has runs or settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// By name.
    pub queues: Vec<QueueView>,
}

/// `GET /v1/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// Names, bindings and times; never values.
    pub secrets: Vec<SecretInfo>,
}

/// `DELETE /v1/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretDeleted {
    /// The name deleted.
    pub deleted: String,
}

/// `GET/PUT /v1/egress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EgressView {
    /// The allowlist.
    pub rules: Vec<RuleSpec>,
    /// The limits the tenant set.
    pub limits: LimitsPatch,
    /// The limits its attempts run with (its own within the operator's caps).
    pub effective_limits: EgressLimits,
    /// What the operator allows every tenant.
    pub operator: EgressOperator,
}

/// The operator's egress policy, which no tenant setting widens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EgressOperator {
    /// Whether private and loopback addresses may be reached.
    pub allow_private: bool,
    /// The highest limits a tenant may choose.
    pub caps: EgressLimits,
}

/// `POST /v1/queues/{queue}/dead-letters/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    /// The runs retried.
    pub retried: Vec<String>,
}

/// `POST /v1/runs/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelledRuns {
    /// The runs cancelled (at most 1,000 per call), oldest first.
    pub cancelled: Vec<String>,
    /// Whether more matching runs are left: call again.
    pub more: bool,
}

/// `DELETE /v1/queues/{queue}/dead-letters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Purged {
    /// How many dead-lettered runs were deleted.
    pub purged: u64,
}
