//! Every redb table the host uses, defined in one place so the on-disk layout can be read at a
//! glance and a second backend (PostgreSQL) can mirror it table by table.
//!
//! Values are JSON documents (serde) so records can gain fields without a migration; keys are
//! typed tuples so ranges (a run's steps, the due runs) are single scans.

use redb::TableDefinition;

/// Bumped when a change to these tables needs a migration; checked when a store opens.
pub const SCHEMA_VERSION: u64 = 1;

/// `"schema_version"` → version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// run id → [`crate::model::RunRecord`] (JSON).
pub const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// (run id, step ordinal) → [`crate::model::StepRecord`] (JSON). Ordinals keep steps in the order
/// they first began; [`STEP_NAMES`] maps a name back to its ordinal.
pub const STEPS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("steps");

/// (run id, step name) → step ordinal.
pub const STEP_NAMES: TableDefinition<(&str, &str), u32> = TableDefinition::new("step_names");

/// (run id, sequence) → [`crate::model::TimelineEntry`] (JSON).
pub const TIMELINE: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("timeline");

/// (run id, sequence) → [`crate::model::LogLine`] (JSON).
pub const LOGS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("logs");

/// (ready at ms, run id) → (): every run that is waiting for an attempt, ordered by due time.
pub const READY: TableDefinition<(u64, &str), ()> = TableDefinition::new("ready");

/// (queue, run id) → dead-lettered at ms.
pub const DEAD_LETTERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("dead_letters");

/// sha256 hex → component bytes, content-addressed.
pub const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
