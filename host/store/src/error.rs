//! Storage failures, typed so callers can tell a conflict from a broken disk.

use std::path::PathBuf;

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
    /// A write made under a claim found the claim gone (released, or its lease expired and
    /// the run handed to another holder); nothing was written.
    #[error("the claim of {holder} on run {run} no longer holds")]
    LeaseLost {
        /// The run.
        run: String,
        /// The holder named by the write.
        holder: String,
    },
    /// A write named a version of a run that is no longer the stored one (another writer
    /// got there first), or a run that is not stored; nothing was written.
    #[error("run {run} changed since it was read (expected version {expected}, found {found:?})")]
    Conflict {
        /// The run.
        run: String,
        /// The version the write was based on.
        expected: u64,
        /// The stored version; `None`: the run is not stored.
        found: Option<u64>,
    },
}

/// The embedded backend's failures are I/O failures; converted here (not in that crate, which
/// may not implement a foreign trait for a foreign type) so its code can use `?`.
#[cfg(feature = "redb")]
macro_rules! io_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Io(e.to_string())
            }
        }
    )*};
}

#[cfg(feature = "redb")]
io_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
