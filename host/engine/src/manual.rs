//! Operator actions on finished runs: manual retry (the failed step gets a fresh attempt budget,
//! completed steps are reused), and retrying or purging a queue's dead letters.

use super::enqueue::summarize;
use super::{Engine, EngineError, RunPage};
use stepwise_core::model::{EventKind, RunRecord, RunStatus, TimelineEntry};
use stepwise_store::{DeadLetter, JournalWrites, RunWrite};

impl Engine {
    /// Retries a failed run by hand: the step (or body) that failed gets a fresh attempt budget,
    /// every completed step is reused. `module`, when given, replaces the run's module (the
    /// fixed version); it must offer the run's job.
    pub async fn retry(&self, id: &str, module: Option<&str>) -> Result<RunRecord, EngineError> {
        let run = self
            .inner
            .store
            .run(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        self.retry_run(run, module).await
    }

    /// [`Engine::retry`] for a run of `tenant` (another tenant's run is "not found"); the run
    /// is retried with the module now serving its job, so a fixed deployment takes effect.
    pub async fn retry_for(&self, tenant: &str, id: &str) -> Result<RunRecord, EngineError> {
        let run = self.tenant_run(tenant, id).await?;
        let route = self.inner.store.job_route(tenant, &run.job).await?;
        self.retry_run(run, route.as_deref()).await
    }

    async fn retry_run(
        &self,
        mut run: RunRecord,
        module: Option<&str>,
    ) -> Result<RunRecord, EngineError> {
        let store = &self.inner.store;
        let id = run.id.clone();
        if run.status != RunStatus::Failed {
            return Err(EngineError::NotFailed {
                run: id,
                status: run.status,
            });
        }
        if let Some(hash) = module {
            let m = self.module(hash).await?;
            if m.job(&run.job).is_none() {
                return Err(EngineError::UnknownJob {
                    job: run.job.clone(),
                    available: m.job_names(),
                });
            }
            run.module = m.hash.clone();
        }
        let now = self.inner.clock.now();
        let mut journal = JournalWrites {
            tenant: Some(run.tenant.clone()),
            ..JournalWrites::default()
        };
        let failed_step = run.error.as_ref().and_then(|e| e.step.clone());
        let budget = run.policy.max_attempts;
        let detail = match &failed_step {
            Some(name) => {
                let steps = store.load_journal(&id).await?;
                if let Some(mut step) = steps.into_iter().find(|s| &s.name == name) {
                    step.budget_base = step.attempts;
                    journal.steps.push(step);
                }
                format!("step '{name}' gets a fresh budget of {budget}")
            }
            None => {
                run.body_budget_base = run.body_failures;
                format!("the job body gets a fresh budget of {budget}")
            }
        };
        run.status = RunStatus::Queued;
        run.ready_at = Some(now);
        run.finished_at = None;
        run.updated_at = now;
        let entry = TimelineEntry {
            at: now,
            kind: EventKind::ManualRetry,
            attempt: None,
            step: failed_step,
            detail,
            http: None,
        };
        journal.timeline.push(entry);
        let write = RunWrite {
            dead_letter: DeadLetter::Remove,
            key: self.key_expiry(&run),
            lease: None,
            journal,
            run,
        };
        let mut run = write.run.clone();
        run.version = store.write_runs(vec![write]).await?[0];
        tracing::info!(run = %id, "manual retry");
        self.inner.wake.notify_one();
        Ok(run)
    }

    /// A page of a queue's dead-lettered runs in id order, after the run id `after`, at most
    /// `limit` (1-1000), with large payloads and outputs summarized as in [`Engine::list_runs`].
    pub async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunPage, EngineError> {
        let store = &self.inner.store;
        let limit = limit.clamp(1, 1_000);
        let mut runs = Vec::new();
        let mut ids = store
            .dead_letters(tenant, queue)
            .await?
            .into_iter()
            .map(|(id, _)| id);
        let mut ids = ids
            .by_ref()
            .skip_while(|id| after.is_some_and(|a| id.as_str() <= a))
            .peekable();
        while runs.len() < limit {
            let Some(id) = ids.next() else { break };
            if let Some(run) = store.run(&id).await? {
                runs.push(summarize(run));
            }
        }
        let next = ids
            .peek()
            .is_some()
            .then(|| runs.last().map(|r: &RunRecord| r.id.clone()))
            .flatten();
        Ok(RunPage { runs, next })
    }

    /// Retries every dead-lettered run of a queue; returns the ids of the runs retried.
    pub async fn retry_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut retried = Vec::new();
        for (id, _) in self.inner.store.dead_letters(tenant, queue).await? {
            retried.push(self.retry_for(tenant, &id).await?.id);
        }
        Ok(retried)
    }

    /// Deletes every dead-lettered run of a queue with its history, freeing the idempotency
    /// keys they held; returns how many were deleted.
    pub async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<usize, EngineError> {
        let ids: Vec<String> = self
            .inner
            .store
            .dead_letters(tenant, queue)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let store = &self.inner.store;
        store.purge_dead_letters(tenant, queue, &ids).await?;
        // A run retried meanwhile is kept: count what is gone.
        let mut deleted = 0;
        for id in &ids {
            if store.run(id).await?.is_none() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
