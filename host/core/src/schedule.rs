//! Cron schedules as stored and shown: what a schedule enqueues, when, and what it did with
//! its recent fires. Evaluating the expression is `stepwise-schedule`'s; firing is the
//! engine's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;
use crate::policy::PolicyOverrides;

/// Most schedules one tenant may have.
pub const MAX_SCHEDULES_PER_TENANT: usize = 100;
/// Most missed fires a schedule with `catch_up: all` enqueues after downtime.
pub const MAX_CATCH_UP: u32 = 100;
/// Recent fires a schedule keeps for `schedules show`.
pub const RECENT_FIRES: usize = 20;

/// What a fire does while the schedule's previous run has not ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Enqueue anyway.
    #[default]
    Allow,
    /// Skip this fire.
    Skip,
    /// Cancel the previous run, then enqueue.
    CancelPrevious,
}

/// What happens to fires missed while the host was down.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None of them fire.
    #[default]
    None,
    /// The latest of them fires.
    Latest,
    /// Each fires, up to `catch_up_limit` (the latest ones).
    All,
}

/// What a schedule enqueues and when.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first).
    pub cron: String,
    /// An IANA time zone (`Europe/Paris`); fire times are local times there.
    pub timezone: String,
    /// The job each fire enqueues.
    pub job: String,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: Value,
    /// Policy overrides of each run, as an enqueue's.
    #[serde(default)]
    pub overrides: PolicyOverrides,
    /// Priority of each run.
    #[serde(default)]
    pub priority: i32,
    /// While the previous run has not ended.
    #[serde(default)]
    pub overlap: Overlap,
    /// After downtime.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Most missed fires `catch_up: all` enqueues (1–100).
    pub catch_up_limit: u32,
    /// A paused schedule does not fire; on resume it fires from then on.
    #[serde(default)]
    pub paused: bool,
}

/// What one fire did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// A run was enqueued (or found, for a fire repeated after a crash).
    Fired,
    /// Skipped: the previous run had not ended (`overlap: skip`).
    SkippedOverlap,
    /// Skipped: missed while the host was down, and not caught up.
    SkippedMissed,
    /// The enqueue was refused (a quota, a job no longer deployed); see `error`.
    Failed,
}

/// One fire of a schedule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleFire {
    /// The fire time.
    pub at: Millis,
    /// What it did.
    pub outcome: FireOutcome,
    /// The run it enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Why the enqueue was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Unique per tenant.
    pub name: String,
    /// Written over the version read; a stale write is refused.
    #[serde(default)]
    pub version: u64,
    /// What it enqueues and when.
    pub spec: ScheduleSpec,
    /// The next fire time not yet handled (`None` while paused, or when it fires no more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at: Option<Millis>,
    /// Recent fires, newest first (at most [`RECENT_FIRES`]).
    #[serde(default)]
    pub recent: Vec<ScheduleFire>,
    /// Runs enqueued over its life.
    #[serde(default)]
    pub fired: u64,
    /// Fires skipped over its life (overlap or missed).
    #[serde(default)]
    pub skipped: u64,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
}

impl ScheduleRecord {
    /// Notes `fire` first among the recent ones, dropping the oldest past the bound.
    pub fn note(&mut self, fire: ScheduleFire) {
        match fire.outcome {
            FireOutcome::Fired => self.fired = self.fired.saturating_add(1),
            FireOutcome::SkippedOverlap | FireOutcome::SkippedMissed => {
                self.skipped = self.skipped.saturating_add(1);
            }
            FireOutcome::Failed => {}
        }
        self.recent.insert(0, fire);
        self.recent.truncate(RECENT_FIRES);
    }

    /// The run the latest fire enqueued.
    pub fn last_run(&self) -> Option<&str> {
        self.recent.iter().find_map(|f| f.run.as_deref())
    }
}
