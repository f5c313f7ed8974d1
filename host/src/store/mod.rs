//! Durable storage of runs, step journals, timelines, logs, the ready index, dead letters and
//! modules — the one narrow module that knows about redb.
//!
//! The engine talks to storage only through [`Store`]: reads are plain methods on a read
//! transaction, and every write is a [`Batch`] handed to [`Store::commit`], which the
//! group-commit writer ([`writer`]) folds together with other runs' batches into one
//! transaction. A second backend (PostgreSQL, for several hosts) implements the same surface.

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::clock::Millis;
use crate::model::{LogLine, RunRecord, StepRecord, TimelineEntry};
pub use writer::WriterStats;

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

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the store at {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file was written by an incompatible version.
    #[error("the store uses schema version {found}, this host supports {expected}")]
    Schema {
        /// Version found in the file.
        found: u64,
        /// Version this build writes.
        expected: u64,
    },
    /// Reading or writing failed.
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// A stored record could not be decoded.
    #[error("stored {what} is corrupt: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The writer thread has stopped (the store is shutting down).
    #[error("the store's writer has stopped")]
    WriterStopped,
}

macro_rules! io_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Io(e.to_string())
            }
        }
    )*};
}
io_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One mutation, serialized by the caller so the writer thread only copies bytes.
#[derive(Debug, Clone)]
enum Op {
    PutRun {
        id: String,
        json: Vec<u8>,
    },
    PutStep {
        run: String,
        name: String,
        json: Vec<u8>,
    },
    PutTimeline {
        run: String,
        seq: u32,
        json: Vec<u8>,
    },
    PutLog {
        run: String,
        seq: u32,
        json: Vec<u8>,
    },
    SetReady {
        run: String,
        old: Option<Millis>,
        new: Option<Millis>,
    },
    PutDeadLetter {
        queue: String,
        run: String,
        at: Millis,
    },
    RemoveDeadLetter {
        queue: String,
        run: String,
    },
    PutModule {
        hash: String,
        bytes: Vec<u8>,
    },
}

/// Mutations that must be applied together: all of them or none.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Writes a run record.
    pub fn put_run(&mut self, run: &RunRecord) -> &mut Self {
        self.ops.push(Op::PutRun {
            id: run.id.clone(),
            json: to_json(run),
        });
        self
    }

    /// Writes a step's journal entry.
    pub fn put_step(&mut self, run: &str, step: &StepRecord) -> &mut Self {
        self.ops.push(Op::PutStep {
            run: run.to_owned(),
            name: step.name.clone(),
            json: to_json(step),
        });
        self
    }

    /// Appends a timeline entry at `seq`.
    pub fn put_timeline(&mut self, run: &str, seq: u32, entry: &TimelineEntry) -> &mut Self {
        self.ops.push(Op::PutTimeline {
            run: run.to_owned(),
            seq,
            json: to_json(entry),
        });
        self
    }

    /// Appends a log line at `seq`.
    pub fn put_log(&mut self, run: &str, seq: u32, line: &LogLine) -> &mut Self {
        self.ops.push(Op::PutLog {
            run: run.to_owned(),
            seq,
            json: to_json(line),
        });
        self
    }

    /// Moves a run in the ready index from `old` to `new` (either may be absent).
    pub fn set_ready(&mut self, run: &str, old: Option<Millis>, new: Option<Millis>) -> &mut Self {
        if old != new {
            self.ops.push(Op::SetReady {
                run: run.to_owned(),
                old,
                new,
            });
        }
        self
    }

    /// Lists a run in its queue's dead letters.
    pub fn put_dead_letter(&mut self, queue: &str, run: &str, at: Millis) -> &mut Self {
        self.ops.push(Op::PutDeadLetter {
            queue: queue.to_owned(),
            run: run.to_owned(),
            at,
        });
        self
    }

    /// Removes a run from its queue's dead letters.
    pub fn remove_dead_letter(&mut self, queue: &str, run: &str) -> &mut Self {
        self.ops.push(Op::RemoveDeadLetter {
            queue: queue.to_owned(),
            run: run.to_owned(),
        });
        self
    }

    /// Stores a component's bytes under their sha256.
    pub fn put_module(&mut self, hash: &str, bytes: &[u8]) -> &mut Self {
        self.ops.push(Op::PutModule {
            hash: hash.to_owned(),
            bytes: bytes.to_vec(),
        });
        self
    }
}

/// The next free timeline and log sequence numbers of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequences {
    /// Next timeline sequence.
    pub timeline: u32,
    /// Next log sequence.
    pub logs: u32,
}

/// The embedded store: one redb file plus its group-commit writer.
pub struct Store {
    db: Arc<Database>,
    /// Taken on drop so the writer thread sees the channel close, flushes and exits.
    writer: Option<mpsc::Sender<writer::Pending>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<WriterStats>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store file `stepwise.redb` in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let open_err = |path: &Path, e: &dyn std::fmt::Display| StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(dir, &e))?;
        let path = dir.join("stepwise.redb");
        let db = Database::create(&path).map_err(|e| open_err(&path, &e))?;
        let db = Arc::new(db);
        init_schema(&db)?;
        let stats = Arc::new(WriterStats::default());
        let (writer, thread) = writer::spawn(db.clone(), durability, stats.clone())?;
        Ok(Self {
            db,
            writer: Some(writer),
            writer_thread: Some(thread),
            stats,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `batch` atomically; returns once it is committed (and, in `immediate` mode, on
    /// disk). Concurrent callers share transactions.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or(StoreError::WriterStopped)?
            .send(writer::Pending { batch, ack })
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// (commits, rows) so far.
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.rows.load(Ordering::Relaxed),
        )
    }

    /// A run's record.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::RUNS)?;
        table
            .get(id)?
            .map(|v| decode(&format!("run {id}"), v.value()))
            .transpose()
    }

    /// Every run record, in id order (ids are time-ordered).
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::RUNS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push(decode(&format!("run {}", k.value()), v.value())?);
        }
        Ok(out)
    }

    /// A run's steps, in the order they first began.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.scan(schema::STEPS, run, "step")
    }

    /// A run's timeline, in order.
    pub fn timeline(&self, run: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        self.scan(schema::TIMELINE, run, "timeline entry")
    }

    /// A run's log, in order.
    pub fn logs(&self, run: &str) -> Result<Vec<LogLine>, StoreError> {
        self.scan(schema::LOGS, run, "log line")
    }

    fn scan<T: DeserializeOwned>(
        &self,
        def: redb::TableDefinition<(&str, u32), &[u8]>,
        run: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def)?;
        let mut out = Vec::new();
        for entry in table.range((run, 0)..=(run, u32::MAX))? {
            let (k, v) = entry?;
            let what = format!("{what} {}/{}", run, k.value().1);
            out.push(decode(&what, v.value())?);
        }
        Ok(out)
    }

    /// The next free timeline and log sequence numbers of `run`, read from the tables
    /// themselves so an attempt cut short by a crash never reuses a number.
    pub fn sequences(&self, run: &str) -> Result<Sequences, StoreError> {
        let txn = self.db.begin_read()?;
        let next = |def| -> Result<u32, StoreError> {
            let table = txn.open_table(def)?;
            let last = table.range((run, 0)..=(run, u32::MAX))?.next_back();
            Ok(match last {
                Some(entry) => {
                    let (key, _) = entry?;
                    let (_, seq): (&str, u32) = key.value();
                    seq + 1
                }
                None => 0,
            })
        };
        Ok(Sequences {
            timeline: next(schema::TIMELINE)?,
            logs: next(schema::LOGS)?,
        })
    }

    /// Up to `limit` runs due at or before `now`, earliest first, as (due time, run id).
    pub fn due(&self, now: Millis, limit: usize) -> Result<Vec<(Millis, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::READY)?;
        let mut out = Vec::new();
        for entry in table.range((0, "")..(now.saturating_add(1), ""))? {
            let (k, _) = entry?;
            let (at, id) = k.value();
            out.push((at, id.to_owned()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The earliest due time in the ready index, if any run is waiting.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::READY)?;
        Ok(table.first()?.map(|(k, _)| k.value().0))
    }

    /// Every run waiting for an attempt, as (due time, run id).
    pub fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        self.due(Millis::MAX - 1, usize::MAX)
    }

    /// A queue's dead letters, as (run id, dead-lettered at).
    pub fn dead_letters(&self, queue: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.range((queue, "")..)? {
            let (k, v) = entry?;
            let (q, run) = k.value();
            if q != queue {
                break;
            }
            out.push((run.to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Whether `run` is in `queue`'s dead letters.
    pub fn is_dead_lettered(&self, queue: &str, run: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::DEAD_LETTERS)?;
        Ok(table.get((queue, run))?.is_some())
    }

    /// A stored component's bytes.
    pub fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::MODULES)?;
        Ok(table.get(hash)?.map(|v| v.value().to_vec()))
    }
}

impl Drop for Store {
    /// Waits for the writer to finish what it holds, so the file lock is released and a new
    /// `Store` can open the same file as soon as this one is gone.
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
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
        txn.open_table(schema::STEP_NAMES)?;
        txn.open_table(schema::TIMELINE)?;
        txn.open_table(schema::LOGS)?;
        txn.open_table(schema::READY)?;
        txn.open_table(schema::DEAD_LETTERS)?;
        txn.open_table(schema::MODULES)?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests;
