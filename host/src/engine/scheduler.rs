//! The scheduler: picks due runs from the ready index, executes their attempts concurrently up
//! to the global limit and each queue's own limit, and otherwise waits — on the clock until the
//! next due time, or for new work — never polling.
//!
//! Among the runs that are due, higher priorities start first, then earlier due times. The
//! window considered is bounded (twice the free capacity plus 16 runs, in due order), so
//! priority is exact within a backlog of that size and approximate beyond it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinSet;

use super::outcome::settle;
use super::{Engine, EngineError, QueueKey};
use crate::engine::journal::Journal;
use crate::engine::native::{self, Handler};
use crate::model::{ErrorInfo, EventKind, FailureKind, RunStatus};
use crate::runtime::bindings::JobContext;
use crate::store::Batch;

impl Engine {
    /// Executes due attempts until `done()` holds (checked whenever an attempt ends), or until
    /// no run is waiting at all.
    pub async fn work_until(&self, done: impl Fn() -> bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let mut tasks: JoinSet<(String, QueueKey, Result<(), EngineError>)> = JoinSet::new();
        let mut per_queue: HashMap<QueueKey, usize> = HashMap::new();
        loop {
            if done() {
                // Let attempts already running settle, so nothing is cut short.
                while let Some(joined) = tasks.join_next().await {
                    self.finish_task(joined, &mut per_queue);
                }
                return Ok(());
            }
            let room = inner.config.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                for (id, queue) in self.pick(room, &per_queue)? {
                    inner.inflight.lock().expect("inflight").insert(id.clone());
                    *per_queue.entry(queue.clone()).or_default() += 1;
                    let engine = self.clone();
                    tasks.spawn(async move {
                        let result = engine.attempt(&id).await;
                        (id, queue, result)
                    });
                }
            }
            // The next time worth waking for: the earliest run not already executing. A run that
            // is due now but was not started is held back by its queue's limit; only a finishing
            // attempt can free it, so the clock is not worth waiting on for it.
            let next_due = {
                let inflight = inner.inflight.lock().expect("inflight");
                inner.store.next_due(&inflight)?
            };
            let now = inner.clock.now();
            if tasks.is_empty() {
                match next_due {
                    None => return Ok(()),
                    Some(at) => {
                        if at <= now {
                            // Due but not startable with nothing running: cannot happen with
                            // limits of at least 1; back off briefly rather than spin.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        tokio::select! {
                            _ = inner.clock.sleep_until(at) => {}
                            _ = inner.wake.notified() => {}
                        }
                        continue;
                    }
                }
            }
            let next_due = next_due.filter(|at| *at > now);
            let can_wait_on_clock =
                tasks.len() < inner.config.concurrency && !inner.clock.is_manual();
            tokio::select! {
                Some(joined) = tasks.join_next() => self.finish_task(joined, &mut per_queue),
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

    /// Chooses up to `room` due runs to start: highest priority first, then earliest, skipping
    /// runs already executing and queues at their limit.
    fn pick(
        &self,
        room: usize,
        per_queue: &HashMap<QueueKey, usize>,
    ) -> Result<Vec<(String, QueueKey)>, EngineError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        // Candidates considered: the free slots twice over plus a margin, enough for priorities
        // to act within a burst; running runs are skipped inside the index.
        let candidates = room.saturating_mul(2).saturating_add(16);
        let ready = {
            let inflight = inner.inflight.lock().expect("inflight");
            inner.store.due(now, candidates, &inflight)?
        };
        let mut due = Vec::new();
        for (at, id) in ready {
            let cached = inner.placement.lock().expect("placement").get(&id).cloned();
            let (priority, queue) = match cached {
                Some(p) => p,
                // Runs created before this process started: decode once, then remember.
                None => {
                    let p = match inner.store.run(&id)? {
                        Some(run) => (run.priority, (run.tenant, run.queue)),
                        None => (0, (String::new(), String::new())),
                    };
                    inner
                        .placement
                        .lock()
                        .expect("placement")
                        .insert(id.clone(), p.clone());
                    p
                }
            };
            due.push((priority, at, id, queue));
        }
        due.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut started: HashMap<QueueKey, usize> = HashMap::new();
        let mut picked = Vec::new();
        for (_, _, id, queue) in due {
            if picked.len() >= room {
                break;
            }
            let limit = self.queue_settings(&queue.0, &queue.1).concurrency;
            let running = per_queue.get(&queue).copied().unwrap_or(0)
                + started.get(&queue).copied().unwrap_or(0);
            if limit.is_some_and(|l| running >= l as usize) {
                continue;
            }
            *started.entry(queue.clone()).or_default() += 1;
            picked.push((id, queue));
        }
        Ok(picked)
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

    fn finish_task(
        &self,
        joined: Result<(String, QueueKey, Result<(), EngineError>), tokio::task::JoinError>,
        per_queue: &mut HashMap<QueueKey, usize>,
    ) {
        match joined {
            Ok((id, queue, result)) => {
                self.inner.inflight.lock().expect("inflight").remove(&id);
                if let Some(n) = per_queue.get_mut(&queue) {
                    *n = n.saturating_sub(1);
                }
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
        let handler = match self.handler(&run.module).await {
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
                    .put_dead_letter(&run, inner.clock.now());
                self.refresh_idempotency(&run, &mut batch)?;
                inner.store.commit(batch).await?;
                inner.metrics.record_finished();
                inner.placement.lock().expect("placement").remove(id);
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
        let (report, mut journal) = match &handler {
            Handler::Wasm(module) => {
                inner
                    .runtime
                    .execute(module, journal, &policy, ctx, payload)
                    .await
            }
            Handler::Native(native) => {
                native::execute(&**native, journal, run.job.clone(), payload).await
            }
        };
        let now = inner.clock.now();
        let settled = settle(&mut run, &mut journal, &report.outcome, now, &*inner.jitter);
        inner
            .metrics
            .record_attempt(&report.outcome, journal.steps_completed());
        inner.metrics.record_step_gaps(journal.step_gaps_micros());
        let mut batch = Batch::new();
        journal.drain_into(&mut batch);
        batch
            .put_run(&run)
            .set_ready(id, previous_ready, run.ready_at);
        if settled.dead_letter {
            batch.put_dead_letter(&run, now);
        }
        if run.status.is_final() {
            self.refresh_idempotency(&run, &mut batch)?;
        }
        inner.store.commit(batch).await?;
        if run.status.is_final() {
            inner.metrics.record_finished();
            inner.placement.lock().expect("placement").remove(id);
        }
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
