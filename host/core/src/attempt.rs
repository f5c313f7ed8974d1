//! What one attempt is given and how it ends, as the runtime reports it and the engine
//! settles it: the guest's context, its step answers, its errors, the faults that end it and
//! the suspension that parks the run.

use crate::clock::Millis;
use crate::model::FailureKind;

/// What the guest learns about the attempt it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    /// The run's id.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// This attempt's number within the run, from 1.
    pub attempt: u32,
}

/// The answer to a step's `begin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Run the step live; this is its attempt number.
    Run(u32),
    /// The step completed before: here is its recorded output (JSON text).
    Completed(String),
}

/// A child run a step asks for (`ctx.invoke`, `ctx.spawn`): checked by the engine like an
/// enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRequest {
    /// The job.
    pub job: String,
    /// Its payload (JSON text).
    pub payload: String,
    /// Its queue; `None`: the parent's.
    pub queue: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// How long after the step it may start.
    pub delay_ms: Option<u64>,
    /// Overrides of the job's policy.
    pub overrides: crate::policy::PolicyOverrides,
}

/// A failure the guest returned from `run` (it chose the kind).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestError {
    /// How the host must treat it.
    pub kind: FailureKind,
    /// The guest's message.
    pub message: String,
    /// For retry-after: the requested delay.
    pub retry_after_ms: Option<u64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// `run` returned an output (JSON text).
    Completed(String),
    /// `run` returned an error.
    Failed(GuestError),
    /// The guest awaits something durable that has not happened yet: the run waits for it.
    Suspended {
        /// What wakes the run.
        wake: WakeCondition,
    },
    /// The attempt was stopped by a limit, a protocol violation or a trap.
    Trapped {
        /// Fuel, timeout, memory, limit, protocol violation or trap.
        kind: FailureKind,
        /// What happened, with the guest's last stderr output when there is any.
        message: String,
    },
    /// The host failed to record what the attempt did (storage). Nothing of the attempt is
    /// settled and it is not charged to the guest: the run is attempted again later.
    HostFault(String),
    /// The run was cancelled while the attempt ran: the guest was stopped at its next host
    /// call or epoch tick, and nothing it did after the cancel is recorded. Whoever cancelled
    /// owns the run's next state.
    Cancelled,
}

/// What a suspended run waits for: a timer, an event (with a timeout), or child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeCondition {
    /// A durable timer.
    Timer {
        /// When it fires.
        at: Millis,
    },
    /// An event; the storage backend wakes the run when a matching one arrives.
    Event {
        /// When the wait times out.
        until: Millis,
    },
    /// Child runs; the storage backend wakes the run when the last of them ends.
    Children,
}

impl WakeCondition {
    /// The latest time the run must be looked at again: when a timer fires or a wait times
    /// out; `None` when only another run's end wakes it.
    pub fn deadline(&self) -> Option<Millis> {
        match self {
            Self::Timer { at } => Some(*at),
            Self::Event { until } => Some(*until),
            Self::Children => None,
        }
    }

    /// Whether the run sleeps (a timer) rather than waits (an event or children).
    pub fn is_timer(&self) -> bool {
        matches!(self, Self::Timer { .. })
    }
}

/// A cancel request for a running attempt. The sandbox checks it at every epoch tick and every
/// host call; once set, the attempt ends as [`AttemptOutcome::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelFlag {
    /// Asks the attempt to stop.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a cancel was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The attempt ends here because the run waits on `wake`. Raised as a trap the host owns; the
/// guest never observes it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("run suspended: {wake:?}")]
pub struct Suspend {
    /// What wakes the run.
    pub wake: WakeCondition,
}

/// The attempt ends here because its run was cancelled. Raised as a trap the host owns.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the run was cancelled")]
pub struct Cancelled;

/// A problem on the host's side of a step call, or a guest breaking the step protocol. Ends the
/// attempt as a trap.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostFault {
    /// The guest called the step functions out of order.
    #[error("step protocol violation: {0}")]
    Protocol(String),
    /// A step output was too large to record.
    #[error("output of step '{step}' is {bytes} bytes, over the {limit}-byte limit")]
    OutputTooLarge {
        /// The step.
        step: String,
        /// Its output's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A step output was not JSON.
    #[error("output of step '{step}' is not valid JSON: {message}")]
    InvalidOutput {
        /// The step.
        step: String,
        /// The parser's complaint.
        message: String,
    },
    /// The guest went past one of the journal's limits (steps per run, journal bytes, the
    /// longest sleep).
    #[error("{0}")]
    Limit(String),
    /// Recording the step failed; the attempt cannot continue safely. A host fault: the run
    /// is attempted again later without the attempt being charged to the guest.
    #[error("could not record step '{step}': {message}")]
    Storage {
        /// The step.
        step: String,
        /// The storage failure.
        message: String,
    },
}

impl HostFault {
    /// How the run records this fault.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Protocol(_) | Self::InvalidOutput { .. } => FailureKind::ProtocolViolation,
            Self::OutputTooLarge { .. } | Self::Limit(_) => FailureKind::LimitExceeded,
            Self::Storage { .. } => FailureKind::HostError,
        }
    }
}

/// Why a step call ends the attempt instead of answering the guest.
#[derive(Debug, Clone)]
pub enum StepInterrupt {
    /// The run waits; the attempt ends without a failure.
    Suspend(Suspend),
    /// A fault on the host's side or a broken step protocol.
    Fault(HostFault),
    /// The run was cancelled while the call ran; the attempt ends as cancelled.
    Cancelled,
}
