//! A run as the API shows it. Built from the stored records by the server (and by the CLI
//! for local runs), never stored: the view has a `running` state the store never holds, and
//! leaves out the bookkeeping (record version, retry budgets) clients have no use for.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise_core::Millis;
use stepwise_core::flow::{ParentLink, RunWait, StepWait};
use stepwise_core::model::{
    ErrorInfo, LogLine, RunRecord, RunStatus, StepKind, StepRecord, StepStatus, TimelineEntry,
};
use stepwise_core::policy::{Policy, PolicyOverrides};
use utoipa::ToSchema;

/// Where a run is, as the API shows it: the stored status, or `running` while an attempt
/// executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt is executing now.
    Running,
    /// An attempt failed; the next waits for its backoff (or retry-after) time.
    Retrying,
    /// Suspended on a durable sleep.
    Sleeping,
    /// Suspended until an event arrives (or its wait times out) or its child runs end; `wait`
    /// says what for.
    Waiting,
    /// Finished with an output.
    Completed,
    /// Failed for good and dead-lettered.
    Failed,
    /// Cancelled on request; final.
    Cancelled,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Sleeping,
        Self::Waiting,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state of a stored run, given whether an attempt of it is executing.
    pub fn of(status: RunStatus, executing: bool) -> Self {
        match status {
            RunStatus::Completed => Self::Completed,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
            _ if executing => Self::Running,
            RunStatus::Queued => Self::Queued,
            RunStatus::Retrying => Self::Retrying,
            RunStatus::Sleeping => Self::Sleeping,
            RunStatus::Waiting => Self::Waiting,
        }
    }

    /// The stored status this state filters on (`None` for `running`, which is not stored).
    pub fn stored(self) -> Option<RunStatus> {
        match self {
            Self::Queued => Some(RunStatus::Queued),
            Self::Running => None,
            Self::Retrying => Some(RunStatus::Retrying),
            Self::Sleeping => Some(RunStatus::Sleeping),
            Self::Waiting => Some(RunStatus::Waiting),
            Self::Completed => Some(RunStatus::Completed),
            Self::Failed => Some(RunStatus::Failed),
            Self::Cancelled => Some(RunStatus::Cancelled),
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The name used in JSON, query strings and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Sleeping => "sleeping",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for RunState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status '{s}': use queued, running, retrying, sleeping, waiting, completed, failed or cancelled"
                )
            })
    }
}

/// A run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// Unique id.
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The job's name.
    pub job: String,
    /// The queue it belongs to.
    pub queue: String,
    /// sha256 (hex) of the component that runs it.
    pub module: String,
    /// The JSON payload, as enqueued.
    pub payload: Value,
    /// The policy it runs under (the job's defaults, the enqueue's overrides, the host's caps).
    pub policy: Policy,
    /// What the enqueue overrode.
    pub overrides: PolicyOverrides,
    /// Among runs of its tenant due at the same time, higher priorities start first.
    pub priority: i32,
    /// The idempotency key it was created under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Where it is.
    pub status: RunState,
    /// Handler invocations so far.
    pub attempts: u32,
    /// When the next attempt may start (ms since the Unix epoch); absent once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Millis>,
    /// The output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The failure that ended the run, or the last attempt's failure while retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// When it was created (ms since the Unix epoch).
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// For a child run: the run and step that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// While `waiting`: what for (an event until a deadline, or child runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<RunWait>,
    /// The pending-run key it was enqueued under (`key` or `debounce`), with how many later
    /// enqueues replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<stepwise_core::keyed::RunKey>,
    /// The lane of its queue's rate limit it counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<String>,
    /// Why a due run has not started: its queue's rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

/// Why a due run waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Held {
    /// `rate_limit`.
    pub reason: String,
    /// The limit holding it (`queue 'q' allows 5 per 1s for rate_key 'k'`).
    pub detail: String,
    /// When it was first held back.
    pub since: Millis,
    /// When it is tried again.
    pub until: Millis,
}

impl Run {
    /// The view of a stored run, given whether an attempt of it is executing now.
    pub fn from_record(run: RunRecord, executing: bool) -> Self {
        Self {
            status: RunState::of(run.status, executing),
            id: run.id,
            tenant: run.tenant,
            job: run.job,
            queue: run.queue,
            module: run.module,
            payload: run.payload,
            policy: run.policy,
            overrides: run.overrides,
            priority: run.priority,
            idempotency_key: run.idempotency_key,
            attempts: run.attempts,
            ready_at: run.ready_at,
            output: run.output,
            error: run.error,
            created_at: run.created_at,
            updated_at: run.updated_at,
            finished_at: run.finished_at,
            parent: run.parent,
            wait: run.wait,
            key: run.key,
            rate_key: run.rate_key,
            held: None,
        }
    }

    /// The view with why it waits, when it is held back.
    pub fn held_by(mut self, held: Option<Held>) -> Self {
        self.held = held;
        self
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// Unique within the run (`name#2` for a repeat).
    pub name: String,
    /// Its position among the run's steps, in the order they first began (from 0).
    pub ordinal: u32,
    /// Work, a timer, an event wait or child runs.
    pub kind: StepKind,
    /// Where it is.
    pub status: StepStatus,
    /// How many times it was attempted over the run's life.
    pub attempts: u32,
    /// The recorded output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Size of the output's JSON text.
    pub output_bytes: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// For timers: when it fires; for event waits: when they time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Millis>,
    /// For event and child steps: what the step waits for (and the event it took, or its
    /// children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<StepWait>,
    /// When it first began.
    pub started_at: Millis,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Millis>,
}

impl From<StepRecord> for Step {
    fn from(s: StepRecord) -> Self {
        Self {
            name: s.name,
            ordinal: s.ordinal,
            kind: s.kind,
            status: s.status,
            attempts: s.attempts,
            output: s.output,
            output_bytes: s.output_bytes,
            error: s.error,
            wake_at: s.wake_at,
            wait: s.wait,
            started_at: s.started_at,
            completed_at: s.completed_at,
        }
    }
}

/// A run with everything recorded about it (`GET /v1/runs/{id}`, `stepwise run --json`).
/// Each list holds at most its first page; `more` says where to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Whether the run is in its queue's dead-letter list.
    pub dead_lettered: bool,
    /// Its steps, in the order they first began.
    pub steps: Vec<Step>,
    /// What happened, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Guest logs and captured output, in order.
    pub logs: Vec<LogLine>,
    /// The runs its steps started, oldest first: at most 100 (all of them:
    /// `GET /v1/runs?parent={id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Where the lists were cut, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<ViewMore>,
}

impl RunView {
    /// The view of a stored run's full record, given whether an attempt is executing.
    pub fn from_record(view: stepwise_core::RunView, executing: bool) -> Self {
        Self {
            run: Run::from_record(view.run, executing),
            dead_lettered: view.dead_lettered,
            steps: view.steps.into_iter().map(Step::from).collect(),
            timeline: view.timeline,
            logs: view.logs,
            children: view.children,
            more: view.more.map(|m| ViewMore {
                steps: m.steps,
                timeline: m.timeline,
                logs: m.logs,
            }),
        }
    }
}

/// The position of the first entry not shown, per list of a [`RunView`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViewMore {
    /// Continue with `GET /v1/runs/{id}/steps?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Continue with `GET /v1/runs/{id}/timeline?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Continue with `GET /v1/runs/{id}/logs?from=N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<u32>,
}

/// A page of runs, newest or oldest first as asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass as `after` for the next page; absent on the last. A filtered listing reads at
    /// most 10,000 runs per page, so a page may hold fewer runs than `limit` (even none) and
    /// still have a next one.
    pub next: Option<String>,
}

macro_rules! list_page {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            /// The entries.
            pub items: Vec<$item>,
            /// Pass as `from` for the next page; absent on the last.
            pub next: Option<u32>,
        }
    };
}

list_page!(
    /// A page of a run's steps (`GET /v1/runs/{id}/steps`).
    StepPage,
    Step
);
list_page!(
    /// A page of a run's timeline (`GET /v1/runs/{id}/timeline`).
    TimelinePage,
    TimelineEntry
);
list_page!(
    /// A page of a run's logs (`GET /v1/runs/{id}/logs`).
    LogPage,
    LogLine
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_is_shown_only_for_runs_not_yet_final() {
        assert_eq!(RunState::of(RunStatus::Queued, true), RunState::Running);
        assert_eq!(RunState::of(RunStatus::Queued, false), RunState::Queued);
        assert_eq!(
            RunState::of(RunStatus::Completed, true),
            RunState::Completed
        );
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!("done".parse::<RunState>().is_err());
    }
}
