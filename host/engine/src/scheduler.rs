//! The scheduler: claims due runs from the store's ready index — fairly across tenants, within
//! the global, per-tenant and per-queue slot limits and the host's memory budget (see
//! [`stepwise_store_redb::ClaimPolicy`]) — executes their attempts concurrently, and otherwise waits:
//! on the clock until the next due time, or for new work, never polling.
//!
//! Whatever ends an attempt — settlement, a storage failure, a panic caught at the task
//! boundary — ends its claim, so its slot, its tenant's and queue's counts and its memory
//! are released. A run the host could not record is held back briefly and tried again,
//! uncharged; a run whose attempt panicked the host fails on its own with `host_error`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::task::JoinSet;

use super::outcome::settle;
use super::{Engine, EngineError};
use crate::journal::Journal;
use crate::native::{self, Handler};
use stepwise_core::clock::Millis;
use stepwise_core::model::{ErrorInfo, EventKind, FailureKind, RunRecord, RunStatus};
use stepwise_runtime::AttemptOutcome;
use stepwise_runtime::JobContext;
use stepwise_store_redb::{Batch, StoreError};

/// How long a run whose attempt the host could not record waits before it is tried again.
const HOST_FAULT_HOLD_MS: Millis = 1_000;

/// How an attempt task ended, for releasing its claim.
struct Ended {
    run: String,
    result: Result<Option<Millis>, EngineError>,
    served_ms: u64,
}

impl Engine {
    /// Executes due attempts until `done()` holds (checked whenever an attempt ends), or until
    /// no run is waiting at all.
    pub async fn work_until(&self, done: impl Fn() -> bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        let mut by_task: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            if done() {
                // Let attempts already running settle, so nothing is cut short.
                while let Some(joined) = tasks.join_next_with_id().await {
                    self.finish_task(joined, &mut by_task).await;
                }
                return Ok(());
            }
            let room = inner.config.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                let now = inner.clock.now();
                for claimed in inner.store.claim(now, room, &self.claim_policy()) {
                    let engine = self.clone();
                    let run = claimed.run;
                    let handle = tasks.spawn({
                        let run = run.clone();
                        async move {
                            let started = Instant::now();
                            let result = engine.attempt(&run).await;
                            let served_ms =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                            Ended {
                                run,
                                result,
                                served_ms,
                            }
                        }
                    });
                    by_task.insert(handle.id(), run);
                }
            }
            let next_due = inner.store.next_pending();
            if tasks.is_empty() {
                if !inner.store.has_unclaimed() {
                    return Ok(());
                }
                match next_due {
                    // Due but not claimable with nothing running cannot happen (every limit
                    // admits one attempt); back off briefly rather than spin.
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                            _ = inner.wake.notified() => {}
                        }
                    }
                    Some(at) => {
                        tokio::select! {
                            _ = inner.clock.sleep_until(at) => {}
                            _ = inner.wake.notified() => {}
                        }
                    }
                }
                continue;
            }
            let can_wait_on_clock =
                tasks.len() < inner.config.concurrency && !inner.clock.is_manual();
            tokio::select! {
                Some(joined) = tasks.join_next_with_id() => {
                    self.finish_task(joined, &mut by_task).await;
                }
                _ = inner.wake.notified() => {}
                _ = async {
                    match next_due {
                        Some(at) if can_wait_on_clock => inner.clock.sleep_until(at).await,
                        _ => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Runs the scheduler until `shutdown` is set (then lets running attempts finish), waiting
    /// for new work whenever nothing is due.
    pub async fn run_scheduler(&self, shutdown: Arc<AtomicBool>) -> Result<(), EngineError> {
        loop {
            let stop = shutdown.clone();
            self.work_until(move || stop.load(Ordering::SeqCst)).await?;
            if shutdown.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Nothing is waiting at all: sleep until an enqueue (or shutdown) wakes us.
            self.inner.wake.notified().await;
        }
    }

    /// Wakes the scheduler (after new work, or to notice a shutdown).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn finish_task(
        &self,
        joined: Result<(tokio::task::Id, Ended), tokio::task::JoinError>,
        by_task: &mut HashMap<tokio::task::Id, String>,
    ) {
        let store = &self.inner.store;
        match joined {
            Ok((task, ended)) => {
                by_task.remove(&task);
                let hold = match ended.result {
                    Ok(hold) => hold,
                    Err(e) => {
                        // Not the guest's doing: tried again later, not charged.
                        tracing::error!(run = %ended.run, error = %e, "attempt could not be recorded");
                        Some(self.inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS))
                    }
                };
                store.release(&ended.run, ended.served_ms, hold);
            }
            Err(e) => {
                let Some(run) = by_task.remove(&e.id()) else {
                    tracing::error!(error = %e, "an attempt task ended without a run");
                    return;
                };
                let message = panic_message(e);
                tracing::error!(run = %run, error = %message, "attempt panicked the host");
                self.inner.metrics.record_host_panic();
                if let Err(e) = self.fail_on_host_error(&run, &message).await {
                    tracing::error!(run = %run, error = %e, "could not fail the run after a panic");
                }
                store.release(
                    &run,
                    0,
                    Some(self.inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS)),
                );
            }
        }
    }

    /// Fails `run` with `host_error` after its attempt panicked the host: dead-lettered with
    /// the panic's message, so it can be retried by hand once the host is fixed.
    async fn fail_on_host_error(&self, id: &str, message: &str) -> Result<(), EngineError> {
        let Some(run) = self.inner.store.run(id)? else {
            return Ok(());
        };
        if run.status.is_final() {
            return Ok(());
        }
        let error = ErrorInfo {
            kind: FailureKind::HostError,
            message: format!("the host failed while running this attempt: {message}"),
            step: None,
            retry_after_ms: None,
        };
        let mut journal = Journal::load(
            self.inner.store.clone(),
            self.inner.clock.clone(),
            &run.id,
            run.attempts,
            self.inner.config.journal,
        )?;
        journal.charge_to(&run.tenant);
        self.fail_now(run, error, "the host failed", journal).await
    }

    /// Ends `run` as failed with `error`, dead-lettered, in one commit with what `journal`
    /// holds.
    async fn fail_now(
        &self,
        mut run: RunRecord,
        error: ErrorInfo,
        detail: &str,
        mut journal: Journal,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let previous_ready = run.ready_at;
        let previous_status = run.status;
        run.status = RunStatus::Failed;
        run.ready_at = None;
        run.finished_at = Some(now);
        run.updated_at = now;
        run.error = Some(error);
        journal.event(EventKind::Failed, None, detail);
        let mut batch = Batch::new();
        journal.drain_into(&mut batch);
        batch
            .put_run(&run, Some(previous_status))
            .set_ready(&run, previous_ready, None)
            .put_dead_letter(&run, now);
        self.refresh_idempotency(&run, &mut batch)?;
        inner.store.commit(batch).await?;
        inner.metrics.record_finished();
        Ok(())
    }

    /// Executes runs until `id` reaches a final state (or nothing is left to run).
    pub async fn run_to_end(&self, id: &str) -> Result<stepwise_core::model::RunView, EngineError> {
        let store = self.inner.store.clone();
        let target = id.to_owned();
        self.work_until(move || matches!(store.run(&target), Ok(Some(r)) if r.status.is_final()))
            .await?;
        self.view(id)
    }

    /// Executes runs until none is waiting.
    pub async fn drain(&self) -> Result<(), EngineError> {
        self.work_until(|| false).await
    }

    /// One attempt of run `id`, settled and committed. Returns a time to hold the run back
    /// until when the host could not record the attempt (nothing was charged to the guest).
    async fn attempt(&self, id: &str) -> Result<Option<Millis>, EngineError> {
        let inner = &self.inner;
        let unreadable = match inner.store.run(id) {
            Ok(Some(run)) => Ok(run),
            Ok(None) => Err("listed as ready but not stored".to_owned()),
            Err(StoreError::Corrupt { what, message }) => {
                Err(format!("stored {what} is corrupt: {message}"))
            }
            Err(e) => return Err(e.into()),
        };
        let mut run = match unreadable {
            Ok(run) => run,
            Err(why) => {
                // This run alone cannot proceed; take it out of scheduling for good.
                let at = inner
                    .store
                    .waiting()?
                    .into_iter()
                    .find(|(_, r)| r == id)
                    .map(|(at, _)| at);
                inner.store.set_aside(id, at, why).await?;
                return Ok(None);
            }
        };
        let previous_ready = run.ready_at;
        let previous_status = run.status;
        if run.status.is_final() {
            // A stale index entry (e.g. from an interrupted manual operation): drop it.
            let mut batch = Batch::new();
            batch.set_ready(&run, previous_ready, None);
            inner.store.commit(batch).await?;
            return Ok(None);
        }
        if previous_ready.is_some_and(|at| at > inner.clock.now()) {
            return Ok(None);
        }
        run.attempts = run.attempts.saturating_add(1);
        let mut journal = Journal::load(
            inner.store.clone(),
            inner.clock.clone(),
            id,
            run.attempts,
            inner.config.journal,
        )?;
        journal.charge_to(&run.tenant);
        journal.event(EventKind::AttemptStarted, None, "");
        let handler = match self.handler(&run.module).await {
            Ok(m) => m,
            Err(e) => {
                // A module that cannot be loaded will not load on the next attempt either.
                let error = ErrorInfo {
                    kind: FailureKind::NonRetryable,
                    message: format!("module {} could not be loaded: {e}", run.module),
                    step: None,
                    retry_after_ms: None,
                };
                self.fail_now(run, error, "module could not be loaded", journal)
                    .await?;
                return Ok(None);
            }
        };
        let ctx = JobContext {
            run_id: run.id.clone(),
            job: run.job.clone(),
            attempt: run.attempts,
        };
        let payload = run.payload.to_string();
        // Bounded again here, so no stored value reaches the sandbox unchecked.
        let policy = self.caps().clamp(run.policy);
        let (report, mut journal) = match &handler {
            Handler::Wasm(module) => {
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
                    )
                    .await
            }
            Handler::Native(native) => {
                native::execute(&**native, journal, run.job.clone(), payload).await
            }
        };
        if let AttemptOutcome::HostFault(message) = &report.outcome {
            tracing::error!(run = %id, error = %message, "attempt hit a host fault; tried again later");
            return Ok(Some(inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS)));
        }
        let now = inner.clock.now();
        let settled = settle(&mut run, &mut journal, &report.outcome, now, &*inner.jitter);
        inner
            .metrics
            .record_attempt(&report.outcome, journal.steps_completed());
        inner
            .metrics
            .record_tenant(&run.tenant, report.fuel_used, report.elapsed);
        inner.metrics.record_step_gaps(journal.step_gaps_micros());
        let mut batch = Batch::new();
        journal.drain_into(&mut batch);
        batch
            .put_run(&run, Some(previous_status))
            .set_ready(&run, previous_ready, run.ready_at);
        if settled.dead_letter {
            batch.put_dead_letter(&run, now);
        }
        if run.status.is_final() {
            self.refresh_idempotency(&run, &mut batch)?;
        }
        inner.store.commit(batch).await?;
        if run.status.is_final() {
            inner.metrics.record_finished();
        }
        tracing::info!(
            run = %id,
            attempt = run.attempts,
            status = %run.status.as_str(),
            fuel = report.fuel_used,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "attempt settled"
        );
        Ok(None)
    }
}

/// The message of a panic that ended a task.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
