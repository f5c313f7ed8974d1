//! One attempt's lifecycle, in one place and in order: read the claimed run → load its
//! module → execute → settle → commit. Every way an attempt ends goes through the same
//! [`settle`](super::outcome::settle) and the same commit: a guest's result, a trap, a module
//! that cannot be loaded, a panic of the host caught at the task boundary. The one exception
//! is a host fault (storage failing under the guest): nothing is settled or charged, and the
//! run is held back and tried again with its budget intact.

use super::outcome::settle;
use super::{Engine, EngineError};
use crate::journal::Journal;
use crate::native::{self, Handler};
use stepwise_core::clock::Millis;
use stepwise_core::model::{EventKind, FailureKind, RunRecord, RunStatus, TimelineEntry};
use stepwise_runtime::{AttemptOutcome, AttemptReport, CancelFlag, JobContext};
use stepwise_store::{DeadLetter, JournalWrites, KeyExpiry, Lease, RunWrite, StoreError};

/// How long a run whose attempt the host could not record waits before it is tried again.
pub(crate) const HOST_FAULT_HOLD_MS: Millis = 1_000;

impl Engine {
    /// One attempt of run `id`, claimed under `lease`, settled and committed under it.
    /// Returns a time to hold the run back until when the host could not record the attempt
    /// (nothing was charged to the guest).
    pub(super) async fn attempt(
        &self,
        id: &str,
        lease: Lease,
    ) -> Result<Option<Millis>, EngineError> {
        let inner = &self.inner;
        let Some(mut run) = self.claimed_run(id).await? else {
            // A cancel that found it claimed may have left word for an attempt that never
            // came.
            self.inner
                .pending_cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            return Ok(None);
        };
        let waited = match self.admit_start(&run) {
            crate::rate_limits::StartAdmission::Go { waited } => waited,
            crate::rate_limits::StartAdmission::HoldUntil(at) => return Ok(Some(at)),
        };
        // An attempt cut short by a crash is on the timeline but not in the run's record.
        let seen = inner.store.last_attempt(id).await?.unwrap_or(0);
        run.attempts = run.attempts.max(seen).saturating_add(1);
        let mut journal = self.attempt_journal(&run).await?;
        journal.under_lease(lease.clone());
        if let Some(hold) = waited {
            let waited_ms = inner.clock.now().saturating_sub(hold.since);
            journal.event(
                EventKind::RateLimited,
                None,
                format!(
                    "waited {} for the rate limit: {}",
                    stepwise_core::time_fmt::duration(waited_ms),
                    hold.describe(&run.queue)
                ),
            );
        }
        journal.event(EventKind::AttemptStarted, None, "");
        // Queued before the guest runs, so every invocation keeps its own number, crash or
        // not: whatever the attempt writes later is applied after it, and an outbound request
        // waits until it is durable. The guest does not wait for it.
        let started = journal.submit();
        let (report, journal) = match self.handler(&run.module).await {
            Ok(handler) => {
                let cancel = CancelFlag::default();
                let live = crate::journal::LiveStep::default();
                journal.show_current_in(live.clone());
                let registered = self.register_cancel(id, &cancel, run.attempts, live);
                let mut journal = journal;
                journal.watch_cancel(cancel.clone());
                let executed = self.execute(&handler, &run, journal, cancel).await;
                drop(registered);
                executed
            }
            // A module that cannot be loaded will not load on the next attempt either.
            Err(e) => (
                instant(AttemptOutcome::Trapped {
                    kind: FailureKind::NonRetryable,
                    message: format!("module {} could not be loaded: {e}", run.module),
                }),
                journal,
            ),
        };
        match &report.outcome {
            AttemptOutcome::HostFault(message) => {
                tracing::error!(run = %id, error = %message, "attempt hit a host fault; tried again later");
                inner.metrics.record_host_fault();
                self.record_host_fault(&run, message, &lease).await;
                return Ok(Some(inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS)));
            }
            AttemptOutcome::Cancelled => {
                tracing::info!(run = %id, "attempt stopped by a cancel; nothing settled");
                return Ok(None);
            }
            _ => {}
        }
        self.settle_and_commit(run, journal, &report, Some(lease))
            .await?;
        // Resolved by now: the settle was applied after it.
        if let Err(e) = started.await {
            tracing::warn!(run = %id, error = %e, "the attempt's start was not recorded");
        }
        Ok(None)
    }

    /// Fails `run` with `host_error` after its attempt panicked the host: dead-lettered with
    /// the panic's message, so it can be retried by hand once the host is fixed.
    pub(super) async fn fail_on_host_error(
        &self,
        id: &str,
        message: &str,
    ) -> Result<(), EngineError> {
        let Some(mut run) = self.inner.store.run(id).await? else {
            return Ok(());
        };
        if run.status.is_final() {
            return Ok(());
        }
        // The attempt that panicked recorded its start (its number) but never settled: this
        // settles it under that number.
        let seen = self.inner.store.last_attempt(id).await?.unwrap_or(0);
        run.attempts = run.attempts.max(seen).max(1);
        let journal = self.attempt_journal(&run).await?;
        let report = instant(AttemptOutcome::Trapped {
            kind: FailureKind::HostError,
            message: format!("the host failed while running this attempt: {message}"),
        });
        self.settle_and_commit(run, journal, &report, None).await
    }

    /// The claimed run, if an attempt should start: a run whose record cannot be read is set
    /// aside for good, a stale index entry of a final run is dropped, and a run not yet due
    /// (moved while it was claimed) waits.
    async fn claimed_run(&self, id: &str) -> Result<Option<RunRecord>, EngineError> {
        let inner = &self.inner;
        let unreadable = match inner.store.run(id).await {
            Ok(Some(run)) => Ok(run),
            Ok(None) => Err("listed as ready but not stored".to_owned()),
            Err(StoreError::Corrupt { what, message }) => {
                Err(format!("stored {what} is corrupt: {message}"))
            }
            Err(e) => return Err(e.into()),
        };
        let run = match unreadable {
            Ok(run) => run,
            Err(why) => {
                // This run alone cannot proceed; take it out of scheduling for good.
                inner.store.set_aside(id, why).await?;
                return Ok(None);
            }
        };
        if run.status.is_final() {
            // A stale ready entry of a final run: writing the run with no due time drops it.
            let mut run = run;
            run.ready_at = None;
            inner
                .store
                .write_runs(vec![RunWrite::new(run, Default::default())])
                .await?;
            return Ok(None);
        }
        if run.ready_at.is_some_and(|at| at > inner.clock.now()) {
            return Ok(None);
        }
        Ok(Some(run))
    }

    /// Notes a host fault on the run's timeline, if storage takes it now (the fault itself
    /// may have been storage failing); the run record and the attempt's budget are untouched.
    async fn record_host_fault(&self, run: &RunRecord, message: &str, lease: &Lease) {
        let entry = TimelineEntry {
            at: self.inner.clock.now(),
            kind: EventKind::HostFault,
            attempt: Some(run.attempts),
            step: None,
            detail: format!("{message}; the attempt is not counted and runs again"),
            http: None,
        };
        // Under the attempt's claim: a host whose run was taken over records nothing more.
        let writes = JournalWrites {
            tenant: Some(run.tenant.clone()),
            timeline: vec![entry],
            lease: Some(lease.clone()),
            ..JournalWrites::default()
        };
        if let Err(e) = self.inner.store.record_step(&run.id, writes).await {
            tracing::warn!(run = %run.id, error = %e, "host fault not recorded on the timeline");
        }
    }

    /// Makes `cancel` reachable through [`Engine::cancel_attempt`], and the attempt visible
    /// through [`Engine::executing`], until the guard drops.
    fn register_cancel(
        &self,
        id: &str,
        cancel: &CancelFlag,
        attempt: u32,
        step: crate::journal::LiveStep,
    ) -> CancelRegistration<'_> {
        let mut cancels = self.inner.cancels.lock().unwrap_or_else(|e| e.into_inner());
        let cancelled_before = self
            .inner
            .pending_cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if cancelled_before {
            cancel.cancel();
        }
        let live = crate::LiveAttempt {
            cancel: cancel.clone(),
            attempt,
            step,
        };
        cancels.insert(id.to_owned(), live);
        CancelRegistration {
            engine: self,
            run: id.to_owned(),
        }
    }

    /// The journal of `run`'s current attempt, charging what it stores to the run's tenant.
    async fn attempt_journal(&self, run: &RunRecord) -> Result<Journal, EngineError> {
        let inner = &self.inner;
        let mut journal = Journal::load(
            inner.store.clone(),
            inner.clock.clone(),
            &run.id,
            run.attempts,
            inner.config.journal,
        )
        .await?;
        journal.charge_to(&run.tenant);
        journal.with_flows(self.clone(), run);
        Ok(journal)
    }

    /// Executes the attempt in the sandbox (or natively), handing the journal back.
    async fn execute(
        &self,
        handler: &Handler,
        run: &RunRecord,
        journal: Journal,
        cancel: CancelFlag,
    ) -> (AttemptReport, Journal) {
        let inner = &self.inner;
        let payload = run.payload.to_string();
        match handler {
            Handler::Wasm(module) => {
                let ctx = JobContext {
                    run_id: run.id.clone(),
                    job: run.job.clone(),
                    attempt: run.attempts,
                };
                // Bounded again here, so no stored value reaches the sandbox unchecked.
                let policy = self.caps().clamp(run.policy);
                inner
                    .runtime
                    .execute(
                        module,
                        journal,
                        &policy,
                        &run.tenant,
                        Some((&inner.egress, self.secrets_of(&run.tenant))),
                        ctx,
                        payload,
                        cancel,
                    )
                    .await
            }
            Handler::Native(native) => {
                native::execute(&**native, journal, run.job.clone(), payload).await
            }
        }
    }

    /// Settles `report` on `run` and writes the run (over the version it was read at), its
    /// journal, its dead letter and its idempotency key's expiry in one write.
    async fn settle_and_commit(
        &self,
        mut run: RunRecord,
        mut journal: Journal,
        report: &AttemptReport,
        lease: Option<Lease>,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let settled = settle(&mut run, &mut journal, &report.outcome, now, &*inner.jitter);
        inner
            .metrics
            .record_attempt(&report.outcome, journal.steps_completed());
        inner
            .metrics
            .record_tenant(&run.tenant, report.fuel_used, report.elapsed);
        inner.metrics.record_step_gaps(journal.step_gaps_micros());
        let write = RunWrite {
            dead_letter: if settled.dead_letter {
                DeadLetter::Add(now)
            } else {
                DeadLetter::Keep
            },
            // A key is held while the run can change; only a final run's key starts to expire.
            key: if run.status.is_final() {
                self.key_expiry(&run)
            } else {
                KeyExpiry::Keep
            },
            journal: journal.take_writes(),
            lease,
            run,
        };
        let run = &write.run;
        let (id, attempt, status) = (run.id.clone(), run.attempts, run.status);
        let ended = status
            .is_final()
            .then(|| (run.tenant.clone(), run.queue.clone()));
        match inner.store.write_runs(vec![write]).await {
            Ok(_) => {}
            // The run changed under the attempt: a cancel won the race, and the attempt's
            // outcome is refused, not written over it.
            Err(StoreError::Conflict { .. })
                if inner
                    .store
                    .run(&id)
                    .await?
                    .is_some_and(|r| r.status == RunStatus::Cancelled) =>
            {
                tracing::info!(run = %id, attempt, "attempt ended after its run was cancelled; not settled");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if let Some((tenant, queue)) = ended {
            self.finished(&tenant, &queue, status);
        }
        tracing::info!(
            run = %id,
            attempt,
            status = %status.as_str(),
            fuel = report.fuel_used,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "attempt settled"
        );
        Ok(())
    }
}

/// Removes an attempt's cancel flag when the attempt ends, however it ends.
struct CancelRegistration<'a> {
    engine: &'a Engine,
    run: String,
}

impl Drop for CancelRegistration<'_> {
    fn drop(&mut self) {
        let mut cancels = self
            .engine
            .inner
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cancels.remove(&self.run);
    }
}

/// A report for an attempt that ended before its guest ran.
fn instant(outcome: AttemptOutcome) -> AttemptReport {
    AttemptReport {
        outcome,
        fuel_used: 0,
        elapsed: std::time::Duration::ZERO,
    }
}
