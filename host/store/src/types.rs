//! The values storage hands back and the settings it takes: what every backend means by a
//! durable commit, the counters it keeps, the claims it grants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use stepwise_core::clock::Millis;
use stepwise_core::histogram::Histogram;
use stepwise_core::model::RunRecord;

/// What a commit promises once it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every acknowledged write is on disk (fsync before the acknowledgement).
    #[default]
    Immediate,
    /// Acknowledged writes reach disk within ~100 ms; a crash may lose that window.
    Eventual,
}

/// What a tenant holds against its quotas; see [`crate::Store::tenant_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Runs not yet final, over all its queues.
    pub waiting_runs: u64,
    /// Bytes of records its runs stored (runs, steps, timelines, logs).
    pub stored_bytes: u64,
    /// Events stored (kept for their retention).
    pub events: u64,
}

/// Which of a run's lists a page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A run's steps, by ordinal.
    Steps,
    /// A run's timeline, by sequence.
    Timeline,
    /// A run's log, by sequence.
    Logs,
}

/// Counts over every stored run; see [`crate::Store::census`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Runs by status.
    pub by_status: BTreeMap<stepwise_core::model::RunStatus, u64>,
    /// Stored runs, by (tenant, queue).
    pub runs: BTreeMap<(String, String), u64>,
    /// Runs not yet final, by (tenant, queue).
    pub depth: BTreeMap<(String, String), u64>,
    /// Dead-lettered runs, by (tenant, queue).
    pub dead_letters: BTreeMap<(String, String), u64>,
    /// Bytes of records stored by each tenant's runs .
    pub stored_bytes: BTreeMap<String, u64>,
}

/// A queue, named by tenant and queue name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId {
    /// The tenant.
    pub tenant: String,
    /// The queue.
    pub queue: String,
}

/// What the scheduler needs to know about a waiting run, fixed for its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its queue.
    pub queue: Arc<QueueId>,
    /// Higher starts first among the tenant's due runs.
    pub priority: i32,
    /// The memory cap of its attempts, counted against the host's memory budget.
    pub memory_bytes: u64,
}

impl Placement {
    /// The placement of `run`.
    pub fn of(run: &RunRecord) -> Self {
        Self {
            queue: Arc::new(QueueId {
                tenant: run.tenant.clone(),
                queue: run.queue.clone(),
            }),
            priority: run.priority,
            memory_bytes: run.policy.memory_bytes,
        }
    }
}

/// Who holds a claim and until when. A backend shared by several hosts hands a run to
/// another holder once the lease expired (its host died); the embedded one holds claims for
/// as long as its process lives, so its leases never expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder (a host's id).
    pub holder: String,
    /// When the claim lapses unless renewed; `Millis::MAX`: never.
    pub expires_at: Millis,
}

/// A host using the store, as [`crate::Store::hosts`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostInfo {
    /// Its id (the holder named on its claims).
    pub id: String,
    /// When it started.
    pub started_at: Millis,
    /// When it last renewed its leases (or, for the embedded store, now).
    pub last_seen: Millis,
    /// Runs it holds claims on.
    pub claims: u64,
    /// When the first of its leases lapses unless renewed.
    pub next_expiry: Option<Millis>,
}

/// How a host's leases fared since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Writes refused because the lease they were made under no longer held the run.
    pub writes_refused: u64,
    /// Claims found taken over by another host when renewing.
    pub leases_lost: u64,
    /// Runs claimed from a host whose lease had lapsed.
    pub takeovers: u64,
}

/// Why a backend wakes the engine; see [`crate::Store::set_waker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Work may have become due that this host did not write: the scheduler looks again.
    Work,
    /// Another host changed this tenant's settings (queue settings, egress, secrets): the
    /// engine reads them again.
    Settings(String),
    /// Changes by other hosts may have been missed (the backend lost its connection for a
    /// while): the engine reads every tenant's settings again.
    AllSettings,
}

/// What a backend calls to wake the engine; see [`crate::Store::set_waker`].
pub type Waker = Arc<dyn Fn(Wake) + Send + Sync>;

/// A run claimed for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The run.
    pub run: String,
    /// Its placement.
    pub placement: Placement,
    /// The claim's lease.
    pub lease: Lease,
}

/// Slots and memory held by claimed runs, and the runs waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Claimed runs (attempts executing).
    pub running: usize,
    /// Memory caps of the claimed runs, summed.
    pub memory_in_use: u64,
    /// Runs waiting (due or not), not counting parked entries of claimed runs.
    pub waiting: usize,
    /// Claimed runs by tenant.
    pub running_by_tenant: BTreeMap<String, usize>,
    /// Claimed runs by queue.
    pub running_by_queue: BTreeMap<(String, String), usize>,
}

/// Counters describing the commit path's work, shared with readers for metrics and benchmarks.
#[derive(Debug)]
pub struct CommitStats {
    /// Write transactions committed.
    pub commits: AtomicU64,
    /// Mutations (rows written or removed) committed.
    pub rows: AtomicU64,
    /// Caller batches acknowledged.
    pub batches: AtomicU64,
    /// Commits by how long they took, in microseconds, over [`LATENCY_BOUNDS_MICROS`].
    pub commit_latency: Histogram,
    /// Commits by how many caller batches they acknowledged, over [`GROUP_SIZE_BOUNDS`].
    pub group_sizes: Histogram,
}

impl CommitStats {
    /// (commits, rows) so far.
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.commits.load(std::sync::atomic::Ordering::Relaxed),
            self.rows.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl Default for CommitStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            commit_latency: Histogram::new(&LATENCY_BOUNDS_MICROS),
            group_sizes: Histogram::new(&GROUP_SIZE_BOUNDS),
        }
    }
}

/// Upper bounds of the group-size histogram (caller batches per commit).
pub const GROUP_SIZE_BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 512, 4_096];

/// Upper bounds of the commit-latency histogram, in microseconds.
pub const LATENCY_BOUNDS_MICROS: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];
