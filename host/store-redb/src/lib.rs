//! # stepwise-store-redb
//!
//! The embedded backend of [`stepwise_store::Store`]: runs, step journals, timelines, logs,
//! the ready index, dead letters, modules and settings in one redb file — the one crate that
//! knows about redb.
//!
//! Reads are plain methods on a read transaction; every write becomes a [`Batch`] handed to
//! [`RedbStore::commit`], which the group-commit writer (`writer.rs`) folds together with
//! other runs' batches into one transaction and one fsync. `backend.rs` maps the trait's
//! domain operations onto batches; the writer checks run versions inside the transaction,
//! numbers timeline and log entries, and keeps the counters and the ready index.

mod backend;
mod batch;
mod events;
mod read;
mod ready;
mod schedules;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use redb::{Database, ReadableTable};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

pub use batch::{Batch, CommitOutcome, IdempotencyGuard};
pub use stepwise_core::picker::ClaimPolicy;
pub use stepwise_store::{
    Census, Claimed, CommitStats, Durability, GROUP_SIZE_BOUNDS, IdempotencyRecord,
    LATENCY_BOUNDS_MICROS, Listing, ModuleRecord, Occupancy, Placement, QueueId, QueueSettings,
    StoreError, TenantRecord, TenantUsage,
};

/// The next free timeline and log sequence numbers of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequences {
    /// Next timeline sequence.
    pub timeline: u32,
    /// Next log sequence.
    pub logs: u32,
}

/// The embedded store: one redb file plus its group-commit writer.
pub struct RedbStore {
    db: Arc<Database>,
    /// Taken on drop so the writer thread sees the channel close, flushes and exits.
    writer: Option<mpsc::Sender<writer::Pending>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CommitStats>,
    ready: Arc<ready::ReadyIndex>,
    path: PathBuf,
    unreadable: std::sync::Mutex<Vec<Unreadable>>,
    /// When this process opened the file (wall clock).
    opened_at: stepwise_core::clock::Millis,
}

/// Default for the most memory redb may use to cache pages. redb's own default (1 GiB) lets the
/// cache grow with the number of stored runs; bounded, a host with 100,000 sleeping runs keeps
/// its memory flat and the OS page cache serves the cold pages. A larger cache speeds up large
/// backlogs (see README, Benchmarks).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The embedded backend's settings: its part of what the operator configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbOptions {
    /// What an acknowledged write promises.
    pub durability: Durability,
    /// Most memory redb may use to cache pages, in bytes.
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    /// Immediate durability, a [`DEFAULT_CACHE_BYTES`] cache.
    fn default() -> Self {
        Self {
            durability: Durability::Immediate,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file `stepwise.redb` in `dir`, with the default cache.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, durability, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store file `stepwise.redb` in `dir`; redb caches at most
    /// `cache_bytes` of pages.
    pub fn open_with_cache(
        dir: &Path,
        durability: Durability,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let open_err = |path: &Path, e: &dyn std::fmt::Display| StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(dir, &e))?;
        let path = dir.join("stepwise.redb");
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| open_err(&path, &e))?;
        let db = Arc::new(db);
        init_schema(&db)?;
        let (entries, unreadable) = load_ready(&db)?;
        let ready = Arc::new(ready::ReadyIndex::new(entries));
        let stats = Arc::new(CommitStats::default());
        let (writer, thread) = writer::spawn(db.clone(), durability, stats.clone(), ready.clone())?;
        Ok(Self {
            db,
            writer: Some(writer),
            writer_thread: Some(thread),
            stats,
            ready,
            path,
            unreadable: std::sync::Mutex::new(unreadable),
            opened_at: stepwise_core::clock::wall_ms(),
        })
    }

    /// Runs left out of scheduling because their stored record cannot be decoded, as
    /// (run id, why). Each fails on its own; everything else goes on.
    pub fn unreadable_runs(&self) -> Vec<(String, String)> {
        self.unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes `run` out of scheduling for good because its record cannot be decoded: its
    /// ready entry is removed (durably) and it is listed by [`Store::unreadable_runs`].
    pub async fn set_aside(
        &self,
        run: &str,
        at: Option<stepwise_core::clock::Millis>,
        why: String,
    ) -> Result<(), StoreError> {
        tracing::error!(run = %run, error = %why, "run record cannot be read; run set aside");
        self.unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((run.to_owned(), why));
        let mut batch = Batch::new();
        batch.move_ready(run, at, None);
        self.commit(batch).await.map(|_| ())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `batch` atomically; returns once it is committed (and, in `immediate` mode, on
    /// disk). Concurrent callers share transactions.
    pub async fn commit(&self, batch: Batch) -> Result<CommitOutcome, StoreError> {
        if batch.is_empty() && batch.guard.is_none() {
            return Ok(CommitOutcome::Applied);
        }
        self.submit(batch)?
            .await
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// Queues `batch` for the writer now (batches apply in the order queued); the receiver
    /// answers once it was committed.
    pub(crate) fn submit(
        &self,
        batch: Batch,
    ) -> Result<oneshot::Receiver<Result<CommitOutcome, StoreError>>, StoreError> {
        let (ack, done) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or(StoreError::WriterStopped)?
            .send(writer::Pending { batch, ack })
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(done)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// (commits, rows) so far.
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.rows.load(Ordering::Relaxed),
        )
    }
}

impl Drop for RedbStore {
    /// Waits for the writer to finish what it holds, so the file lock is released and a new
    /// `RedbStore` can open the same file as soon as this one is gone.
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// A ready entry with its run's placement.
type ReadyEntry = (stepwise_core::clock::Millis, String, Placement);

/// A run set aside, with the reason.
type Unreadable = (String, String);

/// Every entry of the durable ready index with its run's placement, to seed the in-memory
/// index; and the runs whose records cannot be decoded (left out, each with the reason).
fn load_ready(db: &Database) -> Result<(Vec<ReadyEntry>, Vec<Unreadable>), StoreError> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let table = txn.open_table(schema::READY)?;
    let runs = txn.open_table(schema::RUNS)?;
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for entry in table.iter()? {
        let (k, _) = entry?;
        let (at, id) = k.value();
        let run: Result<stepwise_core::model::RunRecord, StoreError> = match runs.get(id)? {
            Some(v) => decode(v.value(), || format!("run {id}")),
            None => Err(StoreError::Corrupt {
                what: format!("run {id}"),
                message: "listed as ready but not stored".into(),
            }),
        };
        match run {
            Ok(run) => out.push((at, id.to_owned(), Placement::of(&run))),
            Err(e) => {
                tracing::error!(run = %id, error = %e, "run record cannot be read; run set aside");
                unreadable.push((id.to_owned(), e.to_string()));
            }
        }
    }
    Ok((out, unreadable))
}

/// Decodes a stored record; `what` names it (built only when decoding fails).
fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what(),
        message: e.to_string(),
    })
}

/// Creates every table (so readers never see a missing one) and checks the schema version.
fn init_schema(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(schema::META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        match found {
            Some(v) if (schema::OLDEST_MIGRATED..schema::SCHEMA_VERSION).contains(&v) => {
                tracing::info!(
                    from = v,
                    to = schema::SCHEMA_VERSION,
                    "store schema migrated"
                );
                meta.insert("schema_version", schema::SCHEMA_VERSION)?;
            }
            Some(v) if v != schema::SCHEMA_VERSION => {
                return Err(StoreError::Schema {
                    found: v,
                    expected: schema::SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", schema::SCHEMA_VERSION)?;
            }
        }
        txn.open_table(schema::RUNS)?;
        txn.open_table(schema::STEPS)?;
        txn.open_table(schema::TIMELINE)?;
        txn.open_table(schema::LOGS)?;
        txn.open_table(schema::READY)?;
        txn.open_table(schema::DEAD_LETTERS)?;
        txn.open_table(schema::MODULES)?;
        txn.open_table(schema::TENANT_RUNS)?;
        txn.open_table(schema::IDEMPOTENCY)?;
        txn.open_table(schema::TENANTS)?;
        txn.open_table(schema::TOKENS)?;
        txn.open_table(schema::TENANT_MODULES)?;
        txn.open_table(schema::JOB_ROUTES)?;
        txn.open_table(schema::QUEUES)?;
        txn.open_table(schema::COUNTERS)?;
        txn.open_table(schema::EGRESS)?;
        txn.open_table(schema::SECRETS)?;
        txn.open_table(schema::EVENTS)?;
        txn.open_table(schema::EVENT_IDS)?;
        txn.open_table(schema::EVENT_INDEX)?;
        txn.open_table(schema::EVENT_EXPIRY)?;
        txn.open_table(schema::EVENT_DELIVERIES)?;
        txn.open_table(schema::WAITERS)?;
        txn.open_table(schema::CHILDREN)?;
        txn.open_table(schema::PENDING_CHILDREN)?;
        txn.open_table(schema::EVENT_LATEST)?;
        txn.open_table(schema::SCHEDULES)?;
        if meta.get("counters_built")?.is_none() {
            build_counters(&txn)?;
            meta.insert("counters_built", 1)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Counts every stored run and dead letter into the counters table: once, for a store written
/// before the counters existed (a new store counts from empty).
fn build_counters(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut counts: std::collections::BTreeMap<(String, String, &'static str), u64> =
        Default::default();
    {
        let runs = txn.open_table(schema::RUNS)?;
        for entry in runs.iter()? {
            let (k, v) = entry?;
            // A record that cannot be decoded is not counted (and is set aside when due).
            if let Ok(run) =
                decode::<stepwise_core::model::RunRecord>(v.value(), || k.value().to_owned())
            {
                *counts
                    .entry((run.tenant, run.queue, run.status.as_str()))
                    .or_default() += 1;
            }
        }
        let dead = txn.open_table(schema::DEAD_LETTERS)?;
        for entry in dead.iter()? {
            let (k, _) = entry?;
            let (t, q, _) = k.value();
            *counts
                .entry((t.to_owned(), q.to_owned(), writer::DEAD_LETTERS_COUNTER))
                .or_default() += 1;
        }
    }
    let mut table = txn.open_table(schema::COUNTERS)?;
    for ((t, q, c), n) in counts {
        table.insert((t.as_str(), q.as_str(), c), n)?;
    }
    Ok(())
}

#[cfg(test)]
mod conformance;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;
