//! Settling an attempt: turning how it ended into the run's next state — completed, sleeping,
//! retrying at a computed time, or failed and dead-lettered.
//!
//! Retry accounting is per failing unit: a step that failed (or was interrupted) spends its own
//! attempt budget, and a failure outside any step spends the run's body budget. `max_attempts`
//! counts every attempt of the unit, the first included; a manual retry restarts the count.

use serde_json::Value;

use super::journal::Journal;
use stepwise_core::clock::{Jitter, Millis};
use stepwise_core::model::{ErrorInfo, EventKind, FailureKind, RunRecord, RunStatus};
use stepwise_core::policy::next_attempt_at;
use stepwise_core::time_fmt;
use stepwise_runtime::AttemptOutcome;

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
    // Whatever the run waited for is over, unless it suspends again below.
    run.wait = None;
    match outcome {
        AttemptOutcome::Completed(text) if text.len() > journal.max_output_bytes() => {
            let error = ErrorInfo {
                kind: FailureKind::LimitExceeded,
                message: format!(
                    "job output is {} bytes, over the {}-byte limit",
                    text.len(),
                    journal.max_output_bytes()
                ),
                step: None,
                retry_after_ms: None,
            };
            fail_attempt(run, journal, error, now, jitter)
        }
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
                    kind: FailureKind::ProtocolViolation,
                    message: format!("job output is not valid JSON: {e}"),
                    step: None,
                    retry_after_ms: None,
                };
                fail_attempt(run, journal, error, now, jitter)
            }
        },
        AttemptOutcome::Suspended { wake } => {
            run.status = if wake.is_timer() {
                RunStatus::Sleeping
            } else {
                RunStatus::Waiting
            };
            run.ready_at = wake.deadline();
            run.wait = journal.take_wait();
            Settled { dead_letter: false }
        }
        AttemptOutcome::Failed(e) => {
            // A child run's failure keeps its own kind, which the guest only sees as
            // retryable or not.
            let e = journal
                .children_failure(e)
                .unwrap_or_else(|| journal.bounded_error(e));
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
        // Not the guest's doing: the scheduler commits nothing for it and tries again later.
        AttemptOutcome::HostFault(_) => Settled { dead_letter: false },
        // The canceller writes the run's next state; the attempt's leftovers are not settled.
        AttemptOutcome::Cancelled => Settled { dead_letter: false },
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
            run.body_failures = run.body_failures.saturating_add(1);
            run.body_failures.saturating_sub(run.body_budget_base)
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
        Some(format!(
            "{unit} failed with a final error ({})",
            error.kind.as_str()
        ))
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
                    time_fmt::duration(at.saturating_sub(now)),
                    time_fmt::rfc3339(at)
                ),
            );
            Settled { dead_letter: false }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Settling against a real store and journal: each test plays attempts the way the
    //! scheduler does (count the attempt, load the journal, settle, commit it all).

    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::journal::StepState;
    use crate::journal::{HostFault, JournalLimits, WakeCondition};
    use stepwise_core::clock::{Clock, NoJitter};
    use stepwise_core::model::{StepStatus, TimelineEntry};
    use stepwise_core::policy::{Backoff, Policy};
    use stepwise_runtime::GuestError;
    use stepwise_store_redb::Batch;

    const RUN: &str = "run_1";
    use crate::testing::Fixture;
    use stepwise_store_redb::testing::{T0, sample_run};

    /// The first backoff delay; each further failure of the same unit doubles it.
    const INITIAL_MS: u64 = 1_000;

    /// Three attempts per unit, 1 s doubling backoff. Jitter is configured but `NoJitter`
    /// is used, so every delay is exact.
    fn policy() -> Policy {
        Policy {
            max_attempts: 3,
            backoff: Backoff {
                initial_ms: INITIAL_MS,
                max_ms: 60_000,
                multiplier: 2.0,
                jitter: 0.5,
            },
            ..Policy::default()
        }
    }

    fn new_run() -> RunRecord {
        RunRecord {
            policy: policy(),
            ..sample_run(RUN)
        }
    }

    impl Fixture {
        async fn start(&self, run: &mut RunRecord) -> Journal {
            run.attempts += 1;
            let clock: Arc<dyn Clock> = self.clock.clone();
            Journal::load(
                self.store.clone(),
                clock,
                RUN,
                run.attempts,
                JournalLimits::default(),
            )
            .await
            .unwrap()
        }

        /// Settles at the clock's time and commits the journal and run together.
        async fn settle(
            &self,
            run: &mut RunRecord,
            mut journal: Journal,
            outcome: &AttemptOutcome,
        ) -> Settled {
            let settled = settle(run, &mut journal, outcome, self.clock.now(), &NoJitter);
            let mut batch = Batch::new();
            batch.journal(RUN, &journal.take_writes());
            batch.put_run(run, None);
            self.store.commit(batch).await.unwrap();
            settled
        }

        /// Moves the clock to the run's next attempt time.
        fn advance_to_ready(&self, run: &RunRecord) {
            let at = run.ready_at.expect("run is waiting");
            self.clock
                .advance(Duration::from_millis(at - self.clock.now()));
        }

        fn timeline(&self) -> Vec<TimelineEntry> {
            self.store.timeline(RUN).unwrap()
        }
    }

    fn error(kind: FailureKind, message: &str) -> GuestError {
        GuestError {
            kind,
            message: message.to_owned(),
            retry_after_ms: None,
        }
    }

    fn retry_after(ms: u64) -> GuestError {
        GuestError {
            kind: FailureKind::RetryAfter,
            message: "rate limited".into(),
            retry_after_ms: Some(ms),
        }
    }

    /// One attempt in which step `name` runs live and reports `error`, the guest returning it.
    async fn step_fails(
        f: &Fixture,
        run: &mut RunRecord,
        name: &str,
        error: GuestError,
    ) -> Settled {
        let mut j = f.start(run).await;
        assert!(matches!(j.begin(name).unwrap(), StepState::Run(_)));
        j.fail(name, &error).unwrap();
        f.settle(run, j, &AttemptOutcome::Failed(error)).await
    }

    /// One attempt that fails outside any step.
    async fn body_fails(f: &Fixture, run: &mut RunRecord) -> Settled {
        let j = f.start(run).await;
        let outcome = AttemptOutcome::Failed(error(FailureKind::Retryable, "flaky"));
        f.settle(run, j, &outcome).await
    }

    fn assert_retrying_at(run: &RunRecord, settled: Settled, at: Millis) {
        assert!(!settled.dead_letter);
        assert_eq!(run.status, RunStatus::Retrying);
        assert_eq!(run.ready_at, Some(at));
        assert_eq!(run.finished_at, None);
    }

    fn assert_dead_lettered(run: &RunRecord, settled: Settled, now: Millis) {
        assert!(settled.dead_letter);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.ready_at, None);
        assert_eq!(run.finished_at, Some(now));
    }

    #[tokio::test]
    async fn a_completed_attempt_finishes_the_run() {
        let f = Fixture::new();
        let mut run = new_run();
        // A previous attempt's failure is cleared by the completion.
        run.status = RunStatus::Retrying;
        run.error = Some(ErrorInfo {
            kind: FailureKind::Retryable,
            message: "earlier".into(),
            step: None,
            retry_after_ms: None,
        });
        f.clock.advance(Duration::from_millis(250));
        let j = f.start(&mut run).await;
        let outcome = AttemptOutcome::Completed(r#"{"account":"acct_1"}"#.into());
        let settled = f.settle(&mut run, j, &outcome).await;
        assert!(!settled.dead_letter);
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.output, Some(json!({"account": "acct_1"})));
        assert_eq!(run.error, None);
        assert_eq!(run.ready_at, None);
        assert_eq!(run.finished_at, Some(T0 + 250));
        assert_eq!(run.updated_at, T0 + 250);
        assert_eq!(f.store.run(RUN).unwrap().unwrap(), run);
        assert_eq!(f.timeline().last().unwrap().kind, EventKind::Completed);
    }

    #[tokio::test]
    async fn an_output_that_is_not_json_fails_the_run_as_a_protocol_violation() {
        let f = Fixture::new();
        let mut run = new_run();
        let j = f.start(&mut run).await;
        let outcome = AttemptOutcome::Completed("not json".into());
        let settled = f.settle(&mut run, j, &outcome).await;
        assert_dead_lettered(&run, settled, T0);
        assert_eq!(run.output, None);
        let error = run.error.as_ref().unwrap();
        assert_eq!(error.kind, FailureKind::ProtocolViolation);
        assert_eq!(error.step, None);
        assert!(
            error.message.starts_with("job output is not valid JSON"),
            "{}",
            error.message
        );
        assert_eq!(run.body_failures, 1);
    }

    #[tokio::test]
    async fn a_suspended_attempt_sleeps_until_the_wake_time() {
        let f = Fixture::new();
        let mut run = new_run();
        let j = f.start(&mut run).await;
        let outcome = AttemptOutcome::Suspended {
            wake: WakeCondition::Timer { at: T0 + 60_000 },
        };
        let settled = f.settle(&mut run, j, &outcome).await;
        assert!(!settled.dead_letter);
        assert_eq!(run.status, RunStatus::Sleeping);
        assert_eq!(run.ready_at, Some(T0 + 60_000));
        assert_eq!(run.finished_at, None);
        assert_eq!(run.body_failures, 0, "a suspension is not a failure");
    }

    #[tokio::test]
    async fn a_failing_step_backs_off_exponentially_then_is_dead_lettered() {
        let f = Fixture::new();
        let mut run = new_run();
        let settled = step_fails(&f, &mut run, "charge", error(FailureKind::Retryable, "e")).await;
        assert_retrying_at(&run, settled, T0 + INITIAL_MS);
        assert_eq!(run.error.as_ref().unwrap().step.as_deref(), Some("charge"));

        f.advance_to_ready(&run);
        let now = f.clock.now();
        let settled = step_fails(&f, &mut run, "charge", error(FailureKind::Retryable, "e")).await;
        assert_retrying_at(&run, settled, now + 2 * INITIAL_MS);

        f.advance_to_ready(&run);
        let now = f.clock.now();
        let settled = step_fails(&f, &mut run, "charge", error(FailureKind::Retryable, "e")).await;
        assert_dead_lettered(&run, settled, now);
        let error = run.error.as_ref().unwrap();
        assert_eq!(
            (error.kind, error.step.as_deref()),
            (FailureKind::Retryable, Some("charge"))
        );
        assert_eq!(run.attempts, 3);
        assert_eq!(
            run.body_failures, 0,
            "step failures do not spend the body budget"
        );
        let step = f.stored_step(RUN, "charge").unwrap();
        assert_eq!((step.status, step.attempts), (StepStatus::Failed, 3));
        let last = f.timeline().pop().unwrap();
        assert_eq!(last.kind, EventKind::Failed);
        assert_eq!(last.detail, "step 'charge' used all 3 attempts");
    }

    #[tokio::test]
    async fn each_step_has_its_own_budget() {
        let f = Fixture::new();
        let mut run = new_run();
        for _ in 0..2 {
            step_fails(&f, &mut run, "a", error(FailureKind::Retryable, "e")).await;
            f.advance_to_ready(&run);
        }
        // "a" now succeeds; "b" fails for the first time: its backoff starts from the beginning.
        let mut j = f.start(&mut run).await;
        assert!(matches!(j.begin("a").unwrap(), StepState::Run(3)));
        j.succeed("a", "1".into()).await.unwrap();
        assert!(matches!(j.begin("b").unwrap(), StepState::Run(1)));
        let e = error(FailureKind::Retryable, "e");
        j.fail("b", &e).unwrap();
        let now = f.clock.now();
        let settled = f.settle(&mut run, j, &AttemptOutcome::Failed(e)).await;
        assert_retrying_at(&run, settled, now + INITIAL_MS);
    }

    #[tokio::test]
    async fn a_non_retryable_failure_ends_the_run_on_the_first_attempt() {
        let f = Fixture::new();
        let mut run = new_run();
        let e = error(FailureKind::NonRetryable, "no such customer");
        let settled = step_fails(&f, &mut run, "charge", e).await;
        assert_dead_lettered(&run, settled, T0);
        assert_eq!(run.attempts, 1);
        assert_eq!(run.error.as_ref().unwrap().kind, FailureKind::NonRetryable);
        assert_eq!(
            f.timeline().last().unwrap().detail,
            "step 'charge' failed with a final error (non_retryable)"
        );
    }

    #[tokio::test]
    async fn retry_after_waits_exactly_the_requested_delay() {
        let f = Fixture::new();
        let mut run = new_run();
        let settled = step_fails(&f, &mut run, "call", retry_after(7_500)).await;
        assert_retrying_at(&run, settled, T0 + 7_500);
        assert_eq!(run.error.as_ref().unwrap().retry_after_ms, Some(7_500));

        // A second failure is not backed off either.
        f.advance_to_ready(&run);
        let settled = step_fails(&f, &mut run, "call", retry_after(7_500)).await;
        assert_retrying_at(&run, settled, T0 + 15_000);

        // It still spends the budget.
        f.advance_to_ready(&run);
        let settled = step_fails(&f, &mut run, "call", retry_after(7_500)).await;
        assert_dead_lettered(&run, settled, T0 + 15_000);
    }

    #[tokio::test]
    async fn a_trap_inside_an_open_step_is_charged_to_that_step() {
        let f = Fixture::new();
        let mut run = new_run();
        let timeout = AttemptOutcome::Trapped {
            kind: FailureKind::Timeout,
            message: "attempt exceeded its wall-clock deadline".into(),
        };
        let mut j = f.start(&mut run).await;
        assert!(matches!(j.begin("provision").unwrap(), StepState::Run(1)));
        let settled = f.settle(&mut run, j, &timeout).await;
        assert_retrying_at(&run, settled, T0 + INITIAL_MS);
        let expected = ErrorInfo {
            kind: FailureKind::Timeout,
            message: "attempt exceeded its wall-clock deadline".into(),
            step: Some("provision".into()),
            retry_after_ms: None,
        };
        assert_eq!(run.error.as_ref(), Some(&expected));
        assert_eq!(run.body_failures, 0);
        let step = f.stored_step(RUN, "provision").unwrap();
        assert_eq!(step.status, StepStatus::Failed);
        assert_eq!(step.error, Some(expected));

        // The step's budget, not the body's, is what runs out.
        for attempt in 2..=3 {
            f.advance_to_ready(&run);
            let mut j = f.start(&mut run).await;
            assert!(matches!(j.begin("provision").unwrap(), StepState::Run(n) if n == attempt));
            f.settle(&mut run, j, &timeout).await;
        }
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.body_failures, 0);
    }

    #[tokio::test]
    async fn an_output_the_host_refuses_is_charged_to_its_step() {
        let f = Fixture::new();
        let mut run = new_run();
        let mut j = f.start(&mut run).await;
        assert!(matches!(j.begin("parse").unwrap(), StepState::Run(1)));
        let fault = j.succeed("parse", "{oops".into()).await.unwrap_err();
        assert!(matches!(fault, HostFault::InvalidOutput { .. }));
        // The runtime turns the host fault into a trap of the fault's kind: final.
        assert_eq!(fault.kind(), FailureKind::ProtocolViolation);
        let outcome = AttemptOutcome::Trapped {
            kind: fault.kind(),
            message: fault.to_string(),
        };
        let settled = f.settle(&mut run, j, &outcome).await;
        assert_dead_lettered(&run, settled, T0);
        assert_eq!(run.error.as_ref().unwrap().step.as_deref(), Some("parse"));
        assert_eq!(run.body_failures, 0);
        let step = f.stored_step(RUN, "parse").unwrap();
        assert_eq!((step.status, step.attempts), (StepStatus::Failed, 1));
    }

    #[tokio::test]
    async fn a_trap_outside_any_step_is_charged_to_the_body() {
        let f = Fixture::new();
        let mut run = new_run();
        let mut j = f.start(&mut run).await;
        assert!(matches!(j.begin("a").unwrap(), StepState::Run(1)));
        j.succeed("a", "1".into()).await.unwrap();
        let outcome = AttemptOutcome::Trapped {
            kind: FailureKind::FuelExhausted,
            message: "attempt used up its fuel budget".into(),
        };
        let settled = f.settle(&mut run, j, &outcome).await;
        assert_retrying_at(&run, settled, T0 + INITIAL_MS);
        assert_eq!(run.error.as_ref().unwrap().step, None);
        assert_eq!(run.body_failures, 1);
        assert_eq!(
            f.stored_step(RUN, "a").unwrap().status,
            StepStatus::Completed
        );
    }

    #[tokio::test]
    async fn body_failures_spend_the_body_budget_which_a_manual_retry_restarts() {
        let f = Fixture::new();
        let mut run = new_run();
        let settled = body_fails(&f, &mut run).await;
        assert_retrying_at(&run, settled, T0 + INITIAL_MS);
        assert_eq!(run.body_failures, 1);
        assert_eq!(run.error.as_ref().unwrap().step, None);

        f.advance_to_ready(&run);
        let now = f.clock.now();
        let settled = body_fails(&f, &mut run).await;
        assert_retrying_at(&run, settled, now + 2 * INITIAL_MS);

        f.advance_to_ready(&run);
        let now = f.clock.now();
        let settled = body_fails(&f, &mut run).await;
        assert_dead_lettered(&run, settled, now);
        assert_eq!(run.body_failures, 3);
        assert_eq!(
            f.timeline().last().unwrap().detail,
            "the job body used all 3 attempts"
        );

        // A manual retry (as `Engine::retry` does it): the budget and the backoff start over.
        run.body_budget_base = run.body_failures;
        run.status = RunStatus::Queued;
        run.finished_at = None;
        let now = f.clock.now();
        let settled = body_fails(&f, &mut run).await;
        assert_retrying_at(&run, settled, now + INITIAL_MS);
        assert_eq!(run.body_failures, 4);
    }

    #[tokio::test]
    async fn a_manual_retry_gives_the_failed_step_a_fresh_budget() {
        let f = Fixture::new();
        let mut run = new_run();
        for _ in 0..3 {
            step_fails(&f, &mut run, "charge", error(FailureKind::Retryable, "e")).await;
            if run.status == RunStatus::Retrying {
                f.advance_to_ready(&run);
            }
        }
        assert_eq!(run.status, RunStatus::Failed);

        // As `Engine::retry` does it: the step's budget counts from its current attempts.
        let mut step = f.stored_step(RUN, "charge").unwrap();
        step.budget_base = step.attempts;
        let mut batch = Batch::new();
        batch.put_step(RUN, &step);
        f.store.commit(batch).await.unwrap();
        run.status = RunStatus::Queued;
        run.finished_at = None;

        let now = f.clock.now();
        let settled = step_fails(&f, &mut run, "charge", error(FailureKind::Retryable, "e")).await;
        assert_retrying_at(&run, settled, now + INITIAL_MS);
        assert_eq!(f.stored_step(RUN, "charge").unwrap().attempts, 4);
    }
}
