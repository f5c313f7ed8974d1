//! The scheduler: claims due runs from the store's ready index — fairly across tenants, within
//! the global, per-tenant and per-queue slot limits and the host's memory budget (see
//! [`stepwise_core::picker::ClaimPolicy`]) — executes their attempts concurrently, and otherwise waits:
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

use super::{Engine, EngineError};
use stepwise_core::clock::Millis;

use super::attempt::HOST_FAULT_HOLD_MS;

/// How an attempt task ended, for releasing its claim.
struct Ended {
    run: String,
    result: Result<Option<Millis>, EngineError>,
    served_ms: u64,
}

impl Engine {
    /// Executes due attempts until `done()` holds (checked whenever an attempt ends), or until
    /// no run is waiting at all.
    pub async fn work_until(
        &self,
        done: impl Fn() -> bool + Send + Sync,
    ) -> Result<(), EngineError> {
        self.work_until_async(move || std::future::ready(done()))
            .await
    }

    /// [`Engine::work_until`] with a condition that reads storage.
    pub async fn work_until_async<F, Fut>(&self, done: F) -> Result<(), EngineError>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let inner = &self.inner;
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        let mut by_task: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut idle_backoff_ms: u64 = 0;
        loop {
            if done().await {
                // Let attempts already running settle, so nothing is cut short.
                while let Some(joined) = tasks.join_next_with_id().await {
                    self.finish_task(joined, &mut by_task).await;
                }
                return Ok(());
            }
            let room = inner.config.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                let now = inner.clock.now();
                let claimed = inner
                    .store
                    .claim_due(now, room, &self.claim_policy())
                    .await?;
                if !claimed.is_empty() {
                    idle_backoff_ms = 0;
                }
                for claimed in claimed {
                    let engine = self.clone();
                    let (run, lease) = (claimed.run, claimed.lease);
                    let handle = tasks.spawn({
                        let run = run.clone();
                        async move {
                            let started = Instant::now();
                            let result = engine.attempt(&run, lease).await;
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
            let next_due = inner.store.next_due().await?;
            if tasks.is_empty() {
                if !inner.store.has_unclaimed().await? {
                    return Ok(());
                }
                match next_due {
                    // Due but not claimable with nothing running: on one host it cannot happen
                    // (every limit admits one attempt); on a store shared by hosts, another
                    // host holds the queue's last slot. Back off, longer each time, up to
                    // half a second, rather than spin.
                    None => {
                        idle_backoff_ms = (idle_backoff_ms * 2).clamp(10, 500);
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(idle_backoff_ms)) => {}
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
                    // Every attempt that ended meanwhile too, so the next claim fills all
                    // their slots at once (a claim round costs a shared store round trips).
                    while let Some(joined) = tasks.try_join_next_with_id() {
                        self.finish_task(joined, &mut by_task).await;
                    }
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
                        self.inner.metrics.record_host_fault();
                        Some(self.inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS))
                    }
                };
                if let Err(e) = store.release(&ended.run, ended.served_ms, hold).await {
                    tracing::error!(run = %ended.run, error = %e, "claim could not be released");
                }
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
                let hold = Some(self.inner.clock.now().saturating_add(HOST_FAULT_HOLD_MS));
                if let Err(e) = store.release(&run, 0, hold).await {
                    tracing::error!(run = %run, error = %e, "claim could not be released");
                }
            }
        }
    }

    /// Executes runs until `id` reaches a final state (or nothing is left to run).
    pub async fn run_to_end(&self, id: &str) -> Result<stepwise_core::model::RunView, EngineError> {
        let store = self.inner.store.clone();
        let target = id.to_owned();
        self.work_until_async(move || {
            let (store, target) = (store.clone(), target.clone());
            async move { matches!(store.run(&target).await, Ok(Some(r)) if r.status.is_final()) }
        })
        .await?;
        self.view(id).await
    }

    /// Executes runs until none is waiting.
    pub async fn drain(&self) -> Result<(), EngineError> {
        self.work_until(|| false).await
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
