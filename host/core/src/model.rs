//! The records the engine keeps about runs: what is stored, what is shown, and what the CLI
//! prints with `--json`. Field names here are the public JSON shape of a run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;
use crate::policy::{Policy, PolicyOverrides};

/// Where a stored run is in its life. The API shows one more state, `running`, from the
/// scheduler's in-flight set (see `stepwise_api::RunState`); it is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt failed; the next one waits for its backoff (or retry-after) time.
    Retrying,
    /// Suspended on a durable sleep; no instance is held.
    Sleeping,
    /// Suspended until an event arrives (or its wait times out) or its child runs end; no
    /// instance is held. The run record's `wait` says what for.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished without an output after its last attempt; listed as dead-lettered.
    Failed,
    /// Stopped on request before it ended; final, not dead-lettered, never retried.
    Cancelled,
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!("unknown status '{s}': use queued, retrying, sleeping, waiting, completed, failed or cancelled")
        })
    }
}

impl RunStatus {
    /// Whether the run has ended (nothing further will happen without a manual retry).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Sleeping => "sleeping",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why an attempt failed. Each sandbox limit is its own kind so operators can tell a guest
/// that loops from one that allocates too much.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest reported a transient error.
    Retryable,
    /// The guest reported a permanent error.
    NonRetryable,
    /// The guest asked to be retried no earlier than a given delay.
    RetryAfter,
    /// The attempt used up its fuel budget.
    FuelExhausted,
    /// The attempt ran past its wall-clock deadline.
    Timeout,
    /// The guest tried to grow its memory past the limit.
    MemoryLimit,
    /// The guest trapped (panic, unreachable, stack overflow, `exit`, ...).
    Trap,
    /// The guest broke the step protocol (succeed without begin, begin inside a step, sleep
    /// inside a step, a non-JSON output, an unusable step name). Deterministic, so final.
    ProtocolViolation,
    /// The guest exceeded a host limit other than fuel, time or memory: an output, error or
    /// journal too large, too many steps, a sleep beyond the longest delay. Final.
    LimitExceeded,
    /// The host failed while running the attempt (a bug caught at the attempt boundary). The
    /// run is dead-lettered so it can be retried once the host is fixed.
    HostError,
}

impl FailureKind {
    /// Whether another attempt may help. A non-retryable error, a protocol violation, an
    /// exceeded limit and a host error end the run at once.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            Self::NonRetryable | Self::ProtocolViolation | Self::LimitExceeded | Self::HostError
        )
    }

    /// The name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::NonRetryable => "non_retryable",
            Self::RetryAfter => "retry_after",
            Self::FuelExhausted => "fuel_exhausted",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::Trap => "trap",
            Self::ProtocolViolation => "protocol_violation",
            Self::LimitExceeded => "limit_exceeded",
            Self::HostError => "host_error",
        }
    }
}

/// A recorded failure.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// What kind of failure it was.
    pub kind: FailureKind,
    /// The guest's or the host's explanation.
    pub message: String,
    /// The step that failed; absent for failures outside any step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For `retry_after`: the delay the guest asked for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// What a step is: work, a durable timer, a wait for an event, or child runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `ctx.step(...)`.
    Step,
    /// `ctx.sleep(...)`.
    Sleep,
    /// `ctx.wait_for_event(...)`.
    Event,
    /// `ctx.invoke(...)`, `ctx.invoke_all(...)`, `ctx.spawn(...)`.
    Child,
}

impl StepKind {
    /// The kind as the guest calls it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Sleep => "sleep",
            Self::Event => "event",
            Self::Child => "child",
        }
    }
}

/// Where a step is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Begun in an attempt that has not reported back (or was cut short).
    Running,
    /// Its last attempt failed.
    Failed,
    /// A timer that has not yet fired.
    Sleeping,
    /// Waiting for an event or for child runs.
    Waiting,
    /// Done; its output is replayed from now on.
    Completed,
}

/// The journal entry of one step of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name, unique within the run (`name#2` for a repeat).
    pub name: String,
    /// Its position among the run's steps, in the order they first began (from 0).
    #[serde(default)]
    pub ordinal: u32,
    /// Size of the recorded output's JSON text, counted against the run's journal limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_bytes: u64,
    /// Work or timer.
    pub kind: StepKind,
    /// Where it is.
    pub status: StepStatus,
    /// How many times it was attempted, over the whole life of the run.
    pub attempts: u32,
    /// `attempts` at the last manual retry: the budget counts attempts beyond this.
    #[serde(default)]
    pub budget_base: u32,
    /// The recorded output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The last failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// For timers: when it fires; for event waits: when they time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Millis>,
    /// For `event` and `child` steps: what the step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::flow::StepWait>,
    /// When the step first began.
    pub started_at: Millis,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Millis>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StepRecord {
    /// Attempts that count against the current budget.
    pub fn budget_used(&self) -> u32 {
        self.attempts.saturating_sub(self.budget_base)
    }
}

/// What happened, for the run's timeline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run was created.
    Created,
    /// An attempt began.
    AttemptStarted,
    /// A step completed and its output was recorded.
    StepCompleted,
    /// A step's attempt failed.
    StepFailed,
    /// An attempt ended in failure.
    AttemptFailed,
    /// The next attempt was scheduled.
    RetryScheduled,
    /// The run suspended on a durable sleep.
    Sleeping,
    /// The run completed.
    Completed,
    /// The run failed for good and was dead-lettered.
    Failed,
    /// An operator retried the failed run.
    ManualRetry,
    /// The guest sent an outbound HTTP request (see [`TimelineEntry::http`]).
    HttpRequest,
    /// The host refused an outbound HTTP request before sending anything.
    HttpDenied,
    /// The host could not record an attempt (storage failed); the attempt was dropped
    /// uncharged and the run runs again.
    HostFault,
    /// The run was cancelled (the detail says who asked and why).
    Cancelled,
    /// The run suspended until an event arrives or its children end (the detail says what
    /// for and until when).
    Waiting,
    /// A wait took an event (the detail names it).
    EventReceived,
    /// A wait for an event timed out.
    WaitTimedOut,
    /// A step started child runs (the detail names them).
    ChildrenStarted,
    /// Every child run a step waited for ended.
    ChildrenEnded,
    /// A later enqueue with the run's key replaced its payload and start (`replace`), or
    /// pushed its start back (`debounce`).
    Replaced,
    /// The run was due but waited for its queue's rate limit (the detail says how long).
    RateLimited,
}

/// One entry of a run's timeline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened.
    pub at: Millis,
    /// What happened.
    pub kind: EventKind,
    /// The run attempt it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The step concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A human-readable detail (error message, next attempt time, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// For [`EventKind::HttpRequest`] and [`EventKind::HttpDenied`]: the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCall>,
}

/// One outbound HTTP call of a guest, as kept on its run's timeline. Never headers, bodies or
/// the query string: those may hold credentials or personal data.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// The method (`GET`, `POST`, ...).
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The host as the guest named it.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The path, without the query string.
    pub path: String,
    /// The response status, when a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why the call was refused or failed, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From sending the request to the end of the response body (or the failure).
    pub duration_ms: u64,
    /// Request body bytes sent.
    pub request_bytes: u64,
    /// Response body bytes received.
    pub response_bytes: u64,
}

/// Where a log line came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The guest's `ctx.log_*` calls.
    Guest,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The host, about what it did for the guest (a refused outbound request, say).
    Host,
}

/// Severity of a log line.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Very fine detail.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected but recovered.
    Warn,
    /// A failure.
    Error,
}

/// One line of a run's log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written.
    pub at: Millis,
    /// The run attempt that wrote it.
    pub attempt: u32,
    /// Who wrote it.
    pub source: LogSource,
    /// How severe it is.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// The stored record of a run (its steps, timeline and logs are stored beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id.
    pub id: String,
    /// How many times the stored record was written; a write must name the version it read,
    /// and a stale one is refused (so two writers never silently overwrite each other).
    #[serde(default)]
    pub version: u64,
    /// The tenant that owns it.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The job's name.
    pub job: String,
    /// The queue it belongs to.
    pub queue: String,
    /// sha256 (hex) of the component that runs it.
    pub module: String,
    /// The JSON payload.
    pub payload: Value,
    /// The resolved policy.
    pub policy: Policy,
    /// What the enqueue overrode, kept for inspection.
    #[serde(default)]
    pub overrides: PolicyOverrides,
    /// Among runs due at the same time, higher priorities start first.
    #[serde(default)]
    pub priority: i32,
    /// The idempotency key it was created under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Where the run is.
    pub status: RunStatus,
    /// Attempts so far (each invocation of the handler counts).
    pub attempts: u32,
    /// Failed attempts whose failure happened outside any step.
    #[serde(default)]
    pub body_failures: u32,
    /// `body_failures` at the last manual retry.
    #[serde(default)]
    pub body_budget_base: u32,
    /// When the next attempt may start; absent once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Millis>,
    /// The output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The failure that ended the run, or the last attempt's failure while retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// The run and step that started it, for a child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::flow::ParentLink>,
    /// While `waiting`: what for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::flow::RunWait>,
    /// The pending-run key it was enqueued under (`key` or `debounce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<crate::keyed::RunKey>,
    /// The lane of its queue's rate limit it counts against (absent: the queue's shared one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<String>,
}

/// The tenant of runs created without one (local `stepwise run`).
pub const LOCAL_TENANT: &str = "local";

fn default_tenant() -> String {
    LOCAL_TENANT.to_owned()
}

/// A run with everything recorded about it: what `stepwise run --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// The run record's fields.
    #[serde(flatten)]
    pub run: RunRecord,
    /// Whether the run is in its queue's dead-letter list.
    pub dead_lettered: bool,
    /// Every step, in the order they first began.
    pub steps: Vec<StepRecord>,
    /// Everything that happened, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Guest logs and captured output, in order.
    pub logs: Vec<LogLine>,
    /// The runs its steps started, oldest first: at most [`VIEW_CHILDREN`] (all of them:
    /// `GET /v1/runs?parent={id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Where the lists above were cut, for a view that holds only their first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<ViewMore>,
}

/// Most child run ids a [`RunView`] holds.
pub const VIEW_CHILDREN: usize = 100;

/// Where to continue the lists of a paged [`RunView`]: the position of the first entry not
/// shown, per list (absent when the list is whole).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMore {
    /// `GET /v1/runs/{id}/steps?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// `GET /v1/runs/{id}/timeline?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// `GET /v1/runs/{id}/logs?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<u32>,
}

impl ViewMore {
    /// Whether every list is whole.
    pub fn is_empty(&self) -> bool {
        self.steps.is_none() && self.timeline.is_none() && self.logs.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_kinds_serialize_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&RunStatus::Completed).unwrap(),
            "\"completed\""
        );
        assert_eq!(
            serde_json::to_string(&FailureKind::FuelExhausted).unwrap(),
            "\"fuel_exhausted\""
        );
        assert_eq!(FailureKind::MemoryLimit.as_str(), "memory_limit");
        assert!(!FailureKind::NonRetryable.is_retryable());
        assert!(FailureKind::Timeout.is_retryable());
    }

    #[test]
    fn budget_counts_from_the_last_manual_retry() {
        let s = StepRecord {
            name: "x".into(),
            ordinal: 0,
            output_bytes: 0,
            kind: StepKind::Step,
            status: StepStatus::Failed,
            attempts: 7,
            budget_base: 5,
            output: None,
            error: None,
            wake_at: None,
            wait: None,
            started_at: 0,
            completed_at: None,
        };
        assert_eq!(s.budget_used(), 2);
    }
}
