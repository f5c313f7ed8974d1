//! Fixtures shared by the unit tests of several modules: a store in a temporary directory with a
//! manual clock, and a plain run record to vary.

use std::sync::Arc;

use serde_json::json;

use crate::{Durability, RedbStore};
use stepwise_core::clock::{ManualClock, Millis};
use stepwise_core::model::{RunRecord, StepRecord};

/// The time every fixture clock starts at.
pub const T0: Millis = stepwise_store::conformance::T0;

/// A store in a temporary directory and a clock reading [`T0`]. The directory is declared last
/// so it outlives the store. Test modules add their own helper methods in `impl` blocks.
pub struct TempStore {
    pub store: Arc<RedbStore>,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
        Self {
            store: Arc::new(store),
            clock: Arc::new(ManualClock::new(T0)),
            _dir: dir,
        }
    }

    /// The stored journal entry of `run`'s step `name`.
    pub fn stored_step(&self, run: &str, name: &str) -> Option<StepRecord> {
        let steps = self.store.steps(run).unwrap();
        steps.into_iter().find(|s| s.name == name)
    }
}

/// A queued run `id` of job `j` on tenant `t`'s `default` queue, due at [`T0`]: the
/// conformance suite's sample run with this crate's names.
pub fn sample_run(id: &str) -> RunRecord {
    RunRecord {
        job: "j".into(),
        module: "m".into(),
        payload: json!({}),
        ..stepwise_store::conformance::run(id, "t", "default")
    }
}
