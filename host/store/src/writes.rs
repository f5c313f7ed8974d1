//! What the engine asks storage to make durable, as domain changes rather than rows: a new
//! run, a step's completion, a settled run with its journal. Each backend lays them out its
//! own way; the backend assigns timeline and log sequence numbers and keeps readiness.

use stepwise_core::clock::Millis;
use stepwise_core::model::{LogLine, RunRecord, StepRecord, TimelineEntry};

/// What an attempt (or a manual operation) recorded about a run besides its record: changed
/// steps, new timeline entries and log lines, in order. Stored bytes are charged to `tenant`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalWrites {
    /// The tenant whose stored-bytes counter the records are added to.
    pub tenant: Option<String>,
    /// Steps to store as they are now.
    pub steps: Vec<StepRecord>,
    /// Timeline entries to append.
    pub timeline: Vec<TimelineEntry>,
    /// Log lines to append.
    pub logs: Vec<LogLine>,
    /// Events that waits of this run took, recorded on the events (`GET /v1/events`).
    pub deliveries: Vec<crate::Delivery>,
    /// The claim the writes are made under (an attempt's): refused with
    /// [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) unless that claim still holds,
    /// so a host whose run was taken over records nothing more of it. `None` for writes made
    /// outside an attempt. Not itself a write: [`JournalWrites::is_empty`] ignores it.
    pub lease: Option<crate::Lease>,
}

impl JournalWrites {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
            && self.timeline.is_empty()
            && self.logs.is_empty()
            && self.deliveries.is_empty()
    }
}

/// An idempotency key a new run takes, unless another run holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The key (unique per tenant and queue).
    pub key: String,
    /// sha256 (hex) of the canonical JSON of the payload.
    pub payload_hash: String,
    /// Now: a record that expired before it no longer holds the key.
    pub now: Millis,
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunWrite {
    /// The run (its `version` is ignored: a new run starts at version 1).
    pub run: RunRecord,
    /// Its first timeline entry and anything else recorded with it.
    pub journal: JournalWrites,
    /// The idempotency key it takes, if any.
    pub idempotency: Option<IdempotencyClaim>,
}

/// What creating a run did.
///
/// A run with a [`key`](RunRecord::key) is created only when no pending run (see
/// [`stepwise_core::keyed::is_pending`]) holds that (tenant, queue, job, key); otherwise its
/// `on_duplicate` decides, in the same transaction: the holder is kept, refused, or
/// replaced ([`stepwise_core::keyed::replace`]) at a new version.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The run is stored, at version 1.
    Created,
    /// A pending run holds the key and `on_duplicate` is `keep` or `reject`; nothing was
    /// stored.
    PendingHeld {
        /// The pending run.
        run: String,
    },
    /// A pending run held the key and took the new request (`replace` or debounce).
    Replaced {
        /// The pending run as stored now.
        run: Box<RunRecord>,
    },
    /// The run holding the key is claimed by an attempt that has not recorded its start:
    /// nothing was stored. Ask again shortly: by then it has started (and a new run takes
    /// the key) or was handed back (and is pending again).
    HolderBusy {
        /// The run.
        run: String,
    },
    /// The key was held by another run; nothing was stored.
    KeyTaken {
        /// The run holding the key.
        run: String,
        /// Whether it was created with the same payload.
        same_payload: bool,
    },
}

/// What happens to a run's dead-letter entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeadLetter {
    /// Left as it is.
    #[default]
    Keep,
    /// Listed in its queue's dead letters, failed at this time.
    Add(Millis),
    /// Taken off its queue's dead letters.
    Remove,
}

/// A run's new state, written over the version it was read at: an attempt's settlement, a
/// manual retry, a failure decided by the host.
///
/// **Waking.** A `waiting` run is woken by the backend itself, in the write that makes its
/// wait satisfiable: an event arriving for it ([`crate::Store::put_event`]), its last child
/// ending, or this very write when what it waits for already happened (an event numbered
/// after its wait's `seen`, children already ended). Waking moves the run's `ready_at` (and
/// its place in the ready set) to that time without a new version: a writer holding the
/// version may still write over it, and its own wait is checked again in that write.
#[derive(Debug, Clone, PartialEq)]
pub struct RunWrite {
    /// The run as it is now; `version` is the version it was read at. The store refuses the
    /// write with [`StoreError::Conflict`](crate::StoreError::Conflict) when the stored
    /// version differs, and otherwise stores it at `version + 1`. Its `ready_at` (with its
    /// status) decides readiness: the backend moves its entry in the ready set.
    pub run: RunRecord,
    /// What else was recorded.
    pub journal: JournalWrites,
    /// Its dead-letter entry.
    pub dead_letter: DeadLetter,
    /// What happens to the expiry of the run's idempotency key, if it holds one.
    pub key: KeyExpiry,
    /// The claim the write is made under (an attempt's settlement): refused with
    /// [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) unless that claim still holds.
    /// `None` for writes made outside an attempt (a manual retry, a cancel).
    pub lease: Option<crate::Lease>,
}

/// The expiry of a run's idempotency key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyExpiry {
    /// Left as it is.
    #[default]
    Keep,
    /// Held for as long as the run can still change.
    Held,
    /// Forgotten from this time on (the run is final).
    Until(Millis),
}

impl RunWrite {
    /// A write of `run` with `journal` and nothing else.
    pub fn new(run: RunRecord, journal: JournalWrites) -> Self {
        Self {
            run,
            journal,
            dead_letter: DeadLetter::Keep,
            key: KeyExpiry::Keep,
            lease: None,
        }
    }
}
