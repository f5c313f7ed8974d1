//! The scheduler: picks due runs from the ready index (earliest first), executes their attempts
//! concurrently up to the configured limit, and otherwise waits — on the clock until the next
//! due time, or for new work — never polling.

use tokio::task::JoinSet;

use super::outcome::settle;
use super::{Engine, EngineError};
use crate::engine::journal::Journal;
use crate::model::{ErrorInfo, EventKind, FailureKind, RunStatus};
use crate::runtime::bindings::JobContext;
use crate::store::Batch;

impl Engine {
    /// Executes due attempts until `done()` holds (checked whenever an attempt ends), or until
    /// no run is waiting at all.
    pub async fn work_until(&self, done: impl Fn() -> bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let mut tasks: JoinSet<(String, Result<(), EngineError>)> = JoinSet::new();
        loop {
            if done() {
                // Let attempts already running settle, so nothing is cut short.
                while let Some(joined) = tasks.join_next().await {
                    self.finish_task(joined);
                }
                return Ok(());
            }
            let room = inner.config.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                let now = inner.clock.now();
                for (_, id) in inner.store.due(now, room + tasks.len())? {
                    if tasks.len() >= inner.config.concurrency {
                        break;
                    }
                    if inner.inflight.lock().expect("inflight").insert(id.clone()) {
                        let engine = self.clone();
                        tasks.spawn(async move {
                            let result = engine.attempt(&id).await;
                            (id, result)
                        });
                    }
                }
            }
            let next_due = inner.store.next_due()?;
            if tasks.is_empty() {
                match next_due {
                    None => return Ok(()),
                    Some(at) => {
                        tokio::select! {
                            _ = inner.clock.sleep_until(at) => {}
                            _ = inner.wake.notified() => {}
                        }
                        continue;
                    }
                }
            }
            let can_wait_on_clock =
                tasks.len() < inner.config.concurrency && !inner.clock.is_manual();
            tokio::select! {
                Some(joined) = tasks.join_next() => self.finish_task(joined),
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

    fn finish_task(
        &self,
        joined: Result<(String, Result<(), EngineError>), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((id, result)) => {
                self.inner.inflight.lock().expect("inflight").remove(&id);
                if let Err(e) = result {
                    // The run stays in the ready index and is attempted again.
                    tracing::error!(run = %id, error = %e, "attempt could not be recorded");
                }
            }
            Err(e) => tracing::error!(error = %e, "attempt task panicked"),
        }
    }

    /// Executes runs until `id` reaches a final state (or nothing is left to run).
    pub async fn run_to_end(&self, id: &str) -> Result<crate::model::RunView, EngineError> {
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

    /// One attempt of run `id`, settled and committed.
    async fn attempt(&self, id: &str) -> Result<(), EngineError> {
        let inner = &self.inner;
        let Some(mut run) = inner.store.run(id)? else {
            return Err(EngineError::UnknownRun(id.to_owned()));
        };
        let previous_ready = run.ready_at;
        if run.status.is_final() {
            // A stale index entry (e.g. from an interrupted manual operation): drop it.
            let mut batch = Batch::new();
            batch.set_ready(id, previous_ready, None);
            inner.store.commit(batch).await?;
            return Ok(());
        }
        if previous_ready.is_some_and(|at| at > inner.clock.now()) {
            return Ok(());
        }
        run.attempts += 1;
        let mut journal = Journal::load(
            inner.store.clone(),
            inner.clock.clone(),
            id,
            run.attempts,
            inner.config.journal,
        )?;
        journal.event(EventKind::AttemptStarted, None, "");
        let module = match self.module(&run.module).await {
            Ok(m) => m,
            Err(e) => {
                // A module that cannot be loaded will not load on the next attempt either.
                run.status = RunStatus::Failed;
                run.ready_at = None;
                run.finished_at = Some(inner.clock.now());
                run.error = Some(ErrorInfo {
                    kind: FailureKind::NonRetryable,
                    message: format!("module {} could not be loaded: {e}", run.module),
                    step: None,
                    retry_after_ms: None,
                });
                journal.event(EventKind::Failed, None, "module could not be loaded");
                let mut batch = Batch::new();
                journal.drain_into(&mut batch);
                batch
                    .put_run(&run)
                    .set_ready(id, previous_ready, None)
                    .put_dead_letter(&run.queue, id, inner.clock.now());
                inner.store.commit(batch).await?;
                return Ok(());
            }
        };
        let ctx = JobContext {
            run_id: run.id.clone(),
            job: run.job.clone(),
            attempt: run.attempts,
        };
        let payload = run.payload.to_string();
        let policy = run.policy;
        let (report, mut journal) = inner
            .runtime
            .execute(&module, journal, &policy, ctx, payload)
            .await;
        let now = inner.clock.now();
        let settled = settle(&mut run, &mut journal, &report.outcome, now, &*inner.jitter);
        let mut batch = Batch::new();
        journal.drain_into(&mut batch);
        batch
            .put_run(&run)
            .set_ready(id, previous_ready, run.ready_at);
        if settled.dead_letter {
            batch.put_dead_letter(&run.queue, id, now);
        }
        inner.store.commit(batch).await?;
        tracing::info!(
            run = %id,
            attempt = run.attempts,
            status = %run.status.as_str(),
            fuel = report.fuel_used,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "attempt settled"
        );
        Ok(())
    }
}
