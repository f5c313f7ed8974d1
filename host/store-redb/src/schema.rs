//! Every redb table the host uses, defined in one place so the on-disk layout can be read at a
//! glance and a second backend (PostgreSQL) can mirror it table by table.
//!
//! Values are JSON documents (serde) so records can gain fields without a migration; keys are
//! typed tuples so ranges (a run's steps, the due runs) are single scans.

use redb::TableDefinition;

/// Bumped when a change to these tables needs a migration; checked when a store opens.
/// 3: run records carry a `version` (absent in older records, read as 0) and timeline and
/// log sequence numbers are assigned by the writer; a version-2 file is migrated on open by
/// bumping this number, since its rows read as they are.
pub const SCHEMA_VERSION: u64 = 3;

/// The oldest schema a store is migrated from; older files are refused.
pub const OLDEST_MIGRATED: u64 = 2;

/// `"schema_version"` → version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// run id → [`stepwise_core::model::RunRecord`] (JSON).
pub const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// (run id, step ordinal) → [`stepwise_core::model::StepRecord`] (JSON). Ordinals keep steps in the order
/// they first began; the record carries its own ordinal, assigned by the journal (which holds a
/// run's steps in memory), so recording a step is one insert.
pub const STEPS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("steps");

/// (run id, sequence) → [`stepwise_core::model::TimelineEntry`] (JSON).
pub const TIMELINE: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("timeline");

/// (run id, sequence) → [`stepwise_core::model::LogLine`] (JSON).
pub const LOGS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("logs");

/// (ready at ms, run id) → (): every run that is waiting for an attempt, ordered by due time.
pub const READY: TableDefinition<(u64, &str), ()> = TableDefinition::new("ready");

/// (tenant, queue, run id) → dead-lettered at ms.
pub const DEAD_LETTERS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("dead_letters");

/// (tenant, run id) → (): a tenant's runs, in id (creation) order.
pub const TENANT_RUNS: TableDefinition<(&str, &str), ()> = TableDefinition::new("tenant_runs");

/// (tenant, queue, idempotency key) → [`super::IdempotencyRecord`] (JSON).
pub const IDEMPOTENCY: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("idempotency");

/// tenant name → [`super::TenantRecord`] (JSON).
pub const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");

/// sha256 (hex) of an API token → tenant name. Tokens themselves are never stored.
pub const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");

/// (tenant, module sha256) → [`super::ModuleRecord`] (JSON): what a tenant deployed.
pub const TENANT_MODULES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("tenant_modules");

/// (tenant, job name) → module sha256: the newest deployed module serving that job.
pub const JOB_ROUTES: TableDefinition<(&str, &str), &str> = TableDefinition::new("job_routes");

/// (tenant, queue) → [`super::QueueSettings`] (JSON).
pub const QUEUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("queues");

/// (tenant, queue, counter) → count: runs by status (`queued`, `retrying`, `sleeping`,
/// `completed`, `failed`) and `dead_letters`, kept by the writer with every commit so
/// statistics never scan the runs. Built from a scan once for a store that predates it
/// (meta key `counters_built`).
pub const COUNTERS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("counters");

/// sha256 hex → component bytes, content-addressed.
pub const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");

/// tenant → [`stepwise_core::egress::TenantEgress`] (JSON): the tenant's egress rules and limits.
pub const EGRESS: TableDefinition<&str, &[u8]> = TableDefinition::new("egress");

/// (tenant, secret name) → [`stepwise_core::secret::SecretRecord`] (JSON): the value sealed with the
/// operator's key, never in clear.
pub const SECRETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("secrets");

/// (tenant, event seq) → [`stepwise_core::flow::EventRecord`] (JSON). Sequence numbers are
/// assigned by the writer per tenant, from meta key `"event_seq:<tenant>"`.
pub const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");

/// (tenant, event id) → event seq: what makes a repeated send with one id store nothing.
pub const EVENT_IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("event_ids");

/// (tenant, name, correlation key or "", received at ms, seq) → (): what a wait matches, in
/// arrival order. Correlation keys are never empty, so "" stands for none.
pub const EVENT_INDEX: TableDefinition<(&str, &str, &str, u64, u64), ()> =
    TableDefinition::new("event_index");

/// (expires at ms, tenant, seq) → (): events by the end of their retention.
pub const EVENT_EXPIRY: TableDefinition<(u64, &str, u64), ()> =
    TableDefinition::new("event_expiry");

/// (tenant, event seq, run id) → step name: the waits that took an event.
pub const EVENT_DELIVERIES: TableDefinition<(&str, u64, &str), &str> =
    TableDefinition::new("event_deliveries");

/// (tenant, name, correlation key or "", run id) → (): runs waiting for an event, kept by the
/// writer from each run record's `wait`.
pub const WAITERS: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("waiters");

/// (parent run id, child run id) → (): every run a run's steps started.
pub const CHILDREN: TableDefinition<(&str, &str), ()> = TableDefinition::new("children");

/// (parent run id, step) → children of that step not yet ended: the end of the last one
/// wakes a parent waiting on the step without reading its siblings.
pub const PENDING_CHILDREN: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("pending_children");

/// (tenant, name, correlation key or "") → the newest event seq with that name and key: a
/// wait stored with an older `seen` is due at once.
pub const EVENT_LATEST: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("event_latest");

/// (tenant, queue, job, key) → run id: the run last created under a key. It holds the key
/// while it is pending ([`stepwise_core::keyed::is_pending`]); after that a new run takes it.
pub const PENDING_KEYS: TableDefinition<(&str, &str, &str, &str), &str> =
    TableDefinition::new("pending_keys");

/// (tenant, schedule name) → [`stepwise_core::schedule::ScheduleRecord`] (JSON).
pub const SCHEDULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("schedules");

/// The meta key of the last event sequence number assigned to `tenant`.
pub fn event_seq_key(tenant: &str) -> String {
    format!("event_seq:{tenant}")
}

/// Above every string key the host stores (ids, names, keys): the end of a prefix range.
pub const MAX_KEY: &str = "\u{10FFFF}";
