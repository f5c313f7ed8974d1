//! # stepwise-store
//!
//! Storage as the engine needs it, at the level of runs rather than rows: [`Store`] is the
//! one interface every backend implements (the embedded redb file today, PostgreSQL shared by
//! several hosts next), so the engine never learns a backend's layout.
//!
//! What every backend promises:
//! - **Versions.** A run record carries a `version`; a write names the version it read and is
//!   refused with [`StoreError::Conflict`] when the stored one differs, never applied over it.
//! - **Claims.** [`Store::claim_due`] hands out due runs under a [`Lease`] (holder and expiry),
//!   fairly across tenants by [`stepwise_core::picker`]; a claimed run is not handed out
//!   again until [`Store::release`] (or the lease expires, for backends shared by hosts).
//! - **Atomicity.** Each write method is all or nothing; [`Store::create_run`] checks the
//!   idempotency key inside the same transaction, so concurrent creates with one key make one
//!   run.
//! - **Sequences and readiness are the backend's.** Timeline and log entries are appended in
//!   order and numbered by the backend; a run's `ready_at` and status decide its place in the
//!   ready set, which the backend maintains.
//! - **Counters, not scans.** Queue depth, dead letters and stored bytes per tenant come from
//!   counters the backend keeps with each write.
//!
//! [`conformance`] holds the tests every backend must pass (feature `conformance`).

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod counters;
mod error;
mod events;
#[cfg(feature = "conformance")]
pub mod faults;
mod records;
mod types;
mod writes;

use async_trait::async_trait;

use stepwise_core::clock::Millis;
use stepwise_core::egress::TenantEgress;
use stepwise_core::flow::EventRecord;
use stepwise_core::model::{LogLine, RunRecord, RunStatus, StepRecord, TimelineEntry};
use stepwise_core::picker::ClaimPolicy;
use stepwise_core::schedule::ScheduleRecord;
use stepwise_core::secret::SecretRecord;

pub use error::StoreError;
pub use events::{Delivery, EventFilter, EventPut, NewEvent};
pub use records::{IdempotencyRecord, ModuleRecord, QueueSettings, TenantRecord};
pub use types::{
    Census, Claimed, CommitStats, Durability, GROUP_SIZE_BOUNDS, HostInfo, LATENCY_BOUNDS_MICROS,
    Lease, LeaseStats, Listing, Occupancy, Placement, QueueId, TenantUsage, Wake, Waker,
};
pub use writes::{
    Created, DeadLetter, IdempotencyClaim, JournalWrites, KeyExpiry, NewRunWrite, RunWrite,
};

/// Which of a tenant's runs [`Store::list_runs`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this job.
    pub job: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only the children of this run.
    pub parent: Option<String>,
    /// Only runs created at or after this time.
    pub created_from: Option<Millis>,
    /// Only runs created before this time.
    pub created_before: Option<Millis>,
    /// Newest first (by creation) instead of oldest first.
    pub newest_first: bool,
}

/// Most runs one [`Store::list_runs`] call reads to fill its page.
pub const MAX_LIST_SCAN: usize = 10_000;

/// One page of a run listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsPage {
    /// The runs found, in the listing's order.
    pub runs: Vec<RunRecord>,
    /// The last run read, to pass as `after` when the listing may go on (the page is full,
    /// or [`MAX_LIST_SCAN`] runs were read); `None` when nothing follows.
    pub next: Option<String>,
}

impl RunFilter {
    /// Whether `run` of the listed tenant passes every filter but `parent` (which the
    /// backend answers from its children index).
    pub fn admits(&self, run: &RunRecord) -> bool {
        self.queue.as_ref().is_none_or(|q| &run.queue == q)
            && self.job.as_ref().is_none_or(|j| &run.job == j)
            && self.status.is_none_or(|s| run.status == s)
            && self.created_from.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
    }
}

/// A write queued by [`Store::submit_step`]: resolves once it is durable.
pub type Submitted =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// One page of a run's steps, timeline or log: the items and the position to continue from
/// when more follow.
pub type Page<T> = (Vec<T>, Option<u32>);

/// The storage interface. See the crate docs for what every implementation promises.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // Runs.

    /// Creates a run (at version 1) with its first records, unless its idempotency key is
    /// held by another run.
    async fn create_run(&self, new: NewRunWrite) -> Result<Created, StoreError>;
    /// A run's record.
    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Run `id` if it belongs to `tenant`, `None` otherwise; another tenant's run is not read
    /// (so it answers like a missing one, in content and in time).
    async fn tenant_run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// A run's recorded steps, by ordinal: what an attempt replays.
    async fn load_journal(&self, run: &str) -> Result<Vec<StepRecord>, StoreError>;
    /// The number of the latest attempt on a run's timeline (its last entry that names an
    /// attempt): an attempt cut short by a crash is on the timeline but not in the record.
    async fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError>;
    /// Makes a step's completion (and what came before it in the attempt) durable, without
    /// touching the run record.
    async fn record_step(&self, run: &str, journal: JournalWrites) -> Result<(), StoreError>;
    /// Queues `journal` for `run` now and returns a future that resolves once it is durable.
    /// Every write submitted after this call returns is applied after it, so the caller may
    /// go on without waiting (an attempt's start is never durable after its first step).
    fn submit_step(&self, run: &str, journal: JournalWrites) -> Submitted;
    /// Writes runs' new states over the versions they were read at, all or none; returns the
    /// versions stored. A stale version refuses the whole write.
    async fn write_runs(&self, writes: Vec<RunWrite>) -> Result<Vec<u64>, StoreError>;
    /// Takes a run whose record cannot be processed out of scheduling for good, keeping it
    /// (and why) for the operator.
    async fn set_aside(&self, run: &str, why: String) -> Result<(), StoreError>;
    /// Runs that were set aside, with why.
    async fn unreadable_runs(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// A tenant's runs matching `filter`, in creation order (newest first with
    /// `filter.newest_first`) after the run `after`, at most `limit`. With `filter.parent`,
    /// only that run's children (of any step). At most [`MAX_LIST_SCAN`] runs are read per
    /// call, so a rare match never reads a tenant's whole history at once: the page may then
    /// hold fewer than `limit` runs (even none) and say where to go on.
    async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunsPage, StoreError>;
    /// The ids of the first `limit` runs `parent`'s steps started, oldest first.
    async fn child_ids(&self, parent: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` of a run's steps from ordinal `from`.
    async fn steps_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<StepRecord>, StoreError>;
    /// Up to `limit` of a run's timeline entries from position `from`.
    async fn timeline_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<TimelineEntry>, StoreError>;
    /// Up to `limit` of a run's log lines from position `from`.
    async fn logs_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<LogLine>, StoreError>;

    // Events.

    /// Stores `event` for `tenant` unless its id is taken, and in the same write wakes every
    /// run waiting on its name and correlation key (their `ready_at` moves to the event's
    /// arrival; the record's version stays, see [`RunWrite`]).
    async fn put_event(&self, tenant: &str, event: NewEvent) -> Result<EventPut, StoreError>;
    /// The earliest event of `tenant` named `name` with exactly `key`, received between
    /// `since` and `until` (both included) and not numbered in `skip`; and the newest event
    /// number stored when it was read (whatever its name).
    async fn match_event(
        &self,
        tenant: &str,
        name: &str,
        key: Option<&str>,
        since: Millis,
        until: Millis,
        skip: &[u64],
    ) -> Result<(Option<EventRecord>, u64), StoreError>;
    /// A tenant's event by id.
    async fn event(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>, StoreError>;
    /// A tenant's events matching `filter`, newest first, numbered below `before`, at most
    /// `limit`.
    async fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The (run, step) pairs whose waits took event `seq` of `tenant`, at most `limit`.
    async fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Events whose retention passed at `now`, as (tenant, seq), at most `limit`.
    async fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Forgets events, given as (tenant, seq), with what was recorded of their deliveries.
    async fn remove_events(&self, events: &[(String, u64)]) -> Result<(), StoreError>;

    // Claims.

    /// Claims up to `room` runs due at `now`, under `policy`'s limits.
    async fn claim_due(
        &self,
        now: Millis,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Ends the claim on `run`: `served_ms` of attempt time is charged to its tenant, and the
    /// run (if still waiting) is due again no earlier than `hold_until`.
    async fn release(
        &self,
        run: &str,
        served_ms: u64,
        hold_until: Option<Millis>,
    ) -> Result<(), StoreError>;
    /// Makes a waiting, unclaimed run that a release held back due at its stored time again
    /// (a hold lifted early: its queue's rate limit changed). Nothing durable changes.
    async fn lift_hold(&self, run: &str) -> Result<(), StoreError>;
    /// Whether `run` is claimed now.
    async fn is_claimed(&self, run: &str) -> Result<bool, StoreError>;
    /// When the next run not yet due becomes due, if any.
    async fn next_due(&self) -> Result<Option<Millis>, StoreError>;
    /// Whether any unclaimed run is waiting (due or not).
    async fn has_unclaimed(&self) -> Result<bool, StoreError>;
    /// What claimed runs hold, and how many wait.
    async fn occupancy(&self) -> Result<Occupancy, StoreError>;
    /// Every waiting run with when it is due, earliest first.
    async fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError>;

    // Dead letters and idempotency.

    /// A queue's dead letters, as (run, dead-lettered at), in run order.
    async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError>;
    /// Whether `run` is listed in its queue's dead letters.
    async fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError>;
    /// Deletes `runs`, which must be dead letters of `tenant`'s `queue` (others named are left
    /// alone): each run's record, steps, timeline, logs and listing, its dead-letter entry,
    /// and the idempotency key it holds (which is then free). Counters follow.
    async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        runs: &[String],
    ) -> Result<(), StoreError>;
    /// The holder of an idempotency key, expired or not.
    async fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Keys whose retention passed at `now`, as (tenant, queue, key), at most `limit`.
    async fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Forgets keys, given as (tenant, queue, key).
    async fn remove_idempotency(&self, keys: &[(String, String, String)])
    -> Result<(), StoreError>;

    // Counters.

    /// Counts over every run, from counters.
    async fn census(&self) -> Result<Census, StoreError>;
    /// The counters of one queue.
    async fn queue_census(&self, tenant: &str, queue: &str) -> Result<Census, StoreError>;
    /// The counters of one tenant's queues, with its stored bytes: what [`Store::census`]
    /// holds of that tenant, read without reading any other tenant's counters.
    async fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError>;
    /// What a tenant holds against its quotas.
    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError>;
    /// The work of the commit path, for metrics and benchmarks.
    fn stats(&self) -> &CommitStats;

    // Hosts.

    /// The id of this host, the holder named on its claims.
    fn host_id(&self) -> &str {
        "local"
    }
    /// How this host's leases fared, for metrics.
    fn lease_stats(&self) -> LeaseStats {
        LeaseStats::default()
    }
    /// Registers what to call when another host changed something this host keeps or
    /// schedules by: work that may have become due (another host's enqueue, an expired lease
    /// to take over), so the scheduler looks again rather than polling; or a tenant's
    /// settings, so the engine reads them again. A backend used by one host never calls it.
    fn set_waker(&self, waker: Waker) {
        let _ = waker;
    }
    /// The hosts using this store now, with their claims.
    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError>;

    // Tenants, modules, queues.

    /// Creates a tenant with its first token (stored hashed).
    async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        token_hash: &str,
    ) -> Result<(), StoreError>;
    /// A tenant.
    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError>;
    /// The tenant a token (hashed) belongs to.
    async fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
    /// Stores a component's bytes under its hash (shared by every tenant that deploys it).
    async fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A stored component's bytes.
    async fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records that `tenant` deployed `module`: its jobs are routed to it from now on.
    async fn deploy_module(&self, tenant: &str, module: &ModuleRecord) -> Result<(), StoreError>;
    /// The modules `tenant` deployed.
    async fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError>;
    /// The module serving `job` for `tenant`.
    async fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError>;
    /// Whether `tenant` deployed the module `hash`.
    async fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError>;
    /// Sets a queue's settings.
    async fn put_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: &QueueSettings,
    ) -> Result<(), StoreError>;
    /// Every queue with settings, as (tenant, queue, settings).
    async fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError>;

    // Schedules.

    /// Stores `tenant`'s schedule: created when `expected` is `None` (refused with
    /// [`StoreError::Conflict`] if one of that name exists), else written over version
    /// `expected` (refused if the stored version differs). Returns the version stored.
    async fn put_schedule(
        &self,
        tenant: &str,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// A tenant's schedule.
    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ScheduleRecord>, StoreError>;
    /// A tenant's schedules, by name.
    async fn schedules_of(&self, tenant: &str) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// Every schedule, as (tenant, schedule).
    async fn all_schedules(&self) -> Result<Vec<(String, ScheduleRecord)>, StoreError>;
    /// Removes a tenant's schedule; whether it existed.
    async fn remove_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    // Egress and secrets.

    /// Sets a tenant's egress settings.
    async fn put_egress(&self, tenant: &str, settings: &TenantEgress) -> Result<(), StoreError>;
    /// A tenant's egress settings (the default when it has none).
    async fn egress(&self, tenant: &str) -> Result<TenantEgress, StoreError>;
    /// Every tenant's egress settings.
    async fn egress_all(&self) -> Result<Vec<(String, TenantEgress)>, StoreError>;
    /// Stores secrets, as (tenant, record), all or none.
    async fn put_secrets(&self, secrets: &[(String, SecretRecord)]) -> Result<(), StoreError>;
    /// Removes a tenant's secret.
    async fn remove_secret(&self, tenant: &str, name: &str) -> Result<(), StoreError>;
    /// A tenant's secrets, by name.
    async fn secrets_of(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError>;
    /// Every tenant's secrets.
    async fn secrets_all(&self) -> Result<Vec<(String, Vec<SecretRecord>)>, StoreError>;
}
