//! Settling an attempt: turning how it ended into the run's next state — completed, sleeping,
//! retrying at a computed time, or failed and dead-lettered.
//!
//! Retry accounting is per failing unit: a step that failed (or was interrupted) spends its own
//! attempt budget, and a failure outside any step spends the run's body budget. `max_attempts`
//! counts every attempt of the unit, the first included; a manual retry restarts the count.

use serde_json::Value;

use super::journal::Journal;
use crate::clock::{Jitter, Millis};
use crate::model::{ErrorInfo, EventKind, FailureKind, RunRecord, RunStatus};
use crate::policy::next_attempt_at;
use crate::runtime::AttemptOutcome;
use crate::time_fmt;

/// What settling decided beyond the run record itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The run failed for good and must be listed in its queue's dead letters.
    pub dead_letter: bool,
}

/// Applies `outcome` to `run` (already counting this attempt) and records timeline entries in
/// `journal`.
pub fn settle(
    run: &mut RunRecord,
    journal: &mut Journal,
    outcome: &AttemptOutcome,
    now: Millis,
    jitter: &dyn Jitter,
) -> Settled {
    run.updated_at = now;
    match outcome {
        AttemptOutcome::Completed(text) => match serde_json::from_str::<Value>(text) {
            Ok(output) => {
                run.status = RunStatus::Completed;
                run.output = Some(output);
                run.error = None;
                run.ready_at = None;
                run.finished_at = Some(now);
                journal.event(EventKind::Completed, None, "");
                Settled { dead_letter: false }
            }
            Err(e) => {
                let error = ErrorInfo {
                    kind: FailureKind::Trap,
                    message: format!("job output is not valid JSON: {e}"),
                    step: None,
                    retry_after_ms: None,
                };
                fail_attempt(run, journal, error, now, jitter)
            }
        },
        AttemptOutcome::Suspended { wake_at } => {
            run.status = RunStatus::Sleeping;
            run.ready_at = Some(*wake_at);
            Settled { dead_letter: false }
        }
        AttemptOutcome::Failed(e) => {
            let error = ErrorInfo {
                kind: e.kind,
                message: e.message.clone(),
                step: journal.failed_step().map(str::to_owned),
                retry_after_ms: e.retry_after_ms,
            };
            fail_attempt(run, journal, error, now, jitter)
        }
        AttemptOutcome::Trapped { kind, message } => {
            let error = ErrorInfo {
                kind: *kind,
                message: message.clone(),
                step: journal.current().map(str::to_owned),
                retry_after_ms: None,
            };
            journal.fail_current(error.clone());
            fail_attempt(run, journal, error, now, jitter)
        }
    }
}

fn fail_attempt(
    run: &mut RunRecord,
    journal: &mut Journal,
    error: ErrorInfo,
    now: Millis,
    jitter: &dyn Jitter,
) -> Settled {
    let used = match error.step.as_deref().and_then(|s| journal.step(s)) {
        Some(step) => step.budget_used(),
        None => {
            run.body_failures += 1;
            run.body_failures - run.body_budget_base
        }
    };
    let unit = match &error.step {
        Some(s) => format!("step '{s}'"),
        None => "the job body".to_owned(),
    };
    let step = error.step.clone();
    journal.event(
        EventKind::AttemptFailed,
        step.as_deref(),
        format!("{}: {}", error.kind.as_str(), error.message),
    );
    let max = run.policy.max_attempts;
    let give_up = if !error.kind.is_retryable() {
        Some(format!("{unit} failed with a non-retryable error"))
    } else if used >= max {
        Some(format!("{unit} used all {max} attempts"))
    } else {
        None
    };
    run.error = Some(error.clone());
    match give_up {
        Some(reason) => {
            run.status = RunStatus::Failed;
            run.ready_at = None;
            run.finished_at = Some(now);
            journal.event(EventKind::Failed, step.as_deref(), reason);
            Settled { dead_letter: true }
        }
        None => {
            let at = next_attempt_at(now, &run.policy, used, error.retry_after_ms, jitter);
            run.status = RunStatus::Retrying;
            run.ready_at = Some(at);
            journal.event(
                EventKind::RetryScheduled,
                step.as_deref(),
                format!(
                    "attempt {} of {max} for {unit} in {}, at {}",
                    used + 1,
                    time_fmt::duration(at - now),
                    time_fmt::rfc3339(at)
                ),
            );
            Settled { dead_letter: false }
        }
    }
}
