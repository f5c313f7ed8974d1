//! Cron schedules as the API takes and shows them: `/v1/schedules`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise_core::Millis;
use stepwise_core::policy::{Backoff, PolicyOverrides};
use stepwise_core::schedule::{CatchUp, Overlap, ScheduleFire, ScheduleRecord, ScheduleSpec};
use utoipa::ToSchema;

/// `POST /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Unique per tenant: 1–128 of `A-Za-z0-9._-`.
    pub name: crate::QueueName,
    /// 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), as cron
    /// reads them (`*/15 9-17 * * MON-FRI`).
    pub cron: String,
    /// An IANA time zone; default `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job each fire enqueues.
    pub job: crate::JobName,
    /// Its queue.
    pub queue: crate::QueueName,
    /// Its payload; default `{}`.
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// As an enqueue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// As an enqueue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// As an enqueue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// As an enqueue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// As an enqueue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// As an enqueue's.
    #[serde(default)]
    pub priority: i32,
    /// While the previous run has not ended: `allow` (default), `skip` the fire, or
    /// `cancel_previous`.
    #[serde(default)]
    pub overlap: Overlap,
    /// Fires missed while the host was down: `none` (default), the `latest`, or `all` (up
    /// to `catch_up_limit`). A fire at most 60 s late is on time and always fires.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// 1–100, default 10.
    #[serde(default = "ten")]
    pub catch_up_limit: u32,
    /// Created paused.
    #[serde(default)]
    pub paused: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn ten() -> u32 {
    10
}

impl CreateSchedule {
    /// The stored spec this request describes.
    pub fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            job: self.job.as_str().to_owned(),
            queue: self.queue.as_str().to_owned(),
            payload: self.payload.clone(),
            overrides: PolicyOverrides {
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                fuel: self.fuel,
                timeout_ms: self.timeout_ms,
                memory_bytes: self.memory_bytes,
            },
            priority: self.priority,
            overlap: self.overlap,
            catch_up: self.catch_up,
            catch_up_limit: self.catch_up_limit,
            paused: self.paused,
        }
    }
}

/// `PUT /v1/schedules/{name}`: the fields to change (at least one); the rest stay.
/// `{"paused": true}` pauses, `{"paused": false}` resumes (firing from the next matching
/// time on; missed fires are not caught up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    /// A new expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A new zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A new job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::JobName>,
    /// A new queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::QueueName>,
    /// A new payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// New policy overrides, replacing the old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<PolicyOverrides>,
    /// A new priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// A new overlap policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// A new catch-up policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// A new catch-up bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_limit: Option<u32>,
    /// Pause or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// What it enqueues and when.
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// The next fire times (at most 5; none while paused), ms since the Unix epoch.
    pub next_fires: Vec<Millis>,
    /// Recent fires, newest first (at most 20): each with the run it enqueued or why not.
    pub recent: Vec<ScheduleFire>,
    /// Runs enqueued over its life.
    pub fired: u64,
    /// Fires skipped over its life (overlap, or missed and not caught up).
    pub skipped: u64,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed (or fired).
    pub updated_at: Millis,
}

impl Schedule {
    /// The view of a stored schedule with its next fire times.
    pub fn from_record(r: ScheduleRecord, next_fires: Vec<Millis>) -> Self {
        Self {
            name: r.name,
            spec: r.spec,
            next_fires,
            recent: r.recent,
            fired: r.fired,
            skipped: r.skipped,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// The tenant's schedules, by name.
    pub schedules: Vec<Schedule>,
}

/// `DELETE /v1/schedules/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleDeleted {
    /// The schedule removed (its runs stay).
    pub deleted: String,
}
