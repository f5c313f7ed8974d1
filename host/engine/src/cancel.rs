//! Cancelling a run: a run not yet ended becomes `cancelled` (final, not dead-lettered,
//! never retried) in one write over the version it was read at, so a cancel racing with an
//! attempt's settlement never overwrites it: whichever writes second finds the version
//! changed and is refused. A running attempt is then stopped through its cancel flag at the
//! guest's next host call or epoch tick; its own settlement, if it gets that far, is refused
//! by the version and nothing it did after the cancel is recorded as completed.

use super::{Engine, EngineError};
use stepwise_core::model::{EventKind, RunRecord, RunStatus, TimelineEntry};
use stepwise_store::{DeadLetter, JournalWrites, RunWrite, StoreError};

/// Longest reason a cancel may give, in bytes.
pub const MAX_CANCEL_REASON: usize = 1024;

/// How many times a cancel re-reads a run that changed under it before giving up (each
/// change is a settlement that happened between its read and its write).
const CANCEL_TRIES: usize = 16;

/// Most runs one bulk cancel cancels; the answer says whether more match.
pub const MAX_BULK_CANCEL: usize = 1_000;

/// What a bulk cancel did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkCancelled {
    /// The runs cancelled, oldest first.
    pub cancelled: Vec<String>,
    /// Whether more runs matching the filter are left to cancel (call again).
    pub more: bool,
}

impl Engine {
    /// Cancels up to [`MAX_BULK_CANCEL`] of `tenant`'s runs that match `filter` and have not
    /// ended (with `running_only`, only those with an attempt executing). A run that ends
    /// meanwhile is skipped, not an error.
    pub async fn cancel_matching(
        &self,
        tenant: &str,
        filter: &stepwise_store::RunFilter,
        running_only: bool,
        who: &str,
        reason: Option<&str>,
    ) -> Result<BulkCancelled, EngineError> {
        let mut done = BulkCancelled::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .inner
                .store
                .list_runs(tenant, filter, after.as_deref(), 500)
                .await?;
            for run in page.runs.iter().filter(|r| !r.status.is_final()) {
                if running_only && !self.is_running(&run.id).await? {
                    continue;
                }
                if done.cancelled.len() == MAX_BULK_CANCEL {
                    done.more = true;
                    return Ok(done);
                }
                match self.cancel_for(tenant, &run.id, who, reason).await {
                    Ok(_) => done.cancelled.push(run.id.clone()),
                    Err(EngineError::NotCancellable { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(done),
            }
        }
    }

    /// Cancels `tenant`'s run `id` and every child run it started that has not ended (and
    /// theirs), noting `who` asked and why on each timeline; returns the cancelled run. A run
    /// that already ended is [`EngineError::NotCancellable`].
    pub async fn cancel_for(
        &self,
        tenant: &str,
        id: &str,
        who: &str,
        reason: Option<&str>,
    ) -> Result<RunRecord, EngineError> {
        self.cancel_with(tenant, id, who, reason, true).await
    }

    /// [`Engine::cancel_for`], leaving the run's children alone unless `children`.
    pub async fn cancel_with(
        &self,
        tenant: &str,
        id: &str,
        who: &str,
        reason: Option<&str>,
        children: bool,
    ) -> Result<RunRecord, EngineError> {
        let run = self.cancel_one(tenant, id, who, reason).await?;
        if children {
            self.cancel_descendants(tenant, &run.id, who).await?;
        }
        Ok(run)
    }

    /// Cancels every descendant of `root` that has not ended, depth first.
    async fn cancel_descendants(
        &self,
        tenant: &str,
        root: &str,
        who: &str,
    ) -> Result<(), EngineError> {
        let mut parents = vec![root.to_owned()];
        while let Some(parent) = parents.pop() {
            let filter = stepwise_store::RunFilter {
                parent: Some(parent.clone()),
                ..Default::default()
            };
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .inner
                    .store
                    .list_runs(tenant, &filter, after.as_deref(), 500)
                    .await?;
                for child in page.runs {
                    parents.push(child.id.clone());
                    if child.status.is_final() {
                        continue;
                    }
                    let why = format!("its parent run {parent} was cancelled");
                    match self.cancel_one(tenant, &child.id, who, Some(&why)).await {
                        Ok(_) | Err(EngineError::NotCancellable { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    async fn cancel_one(
        &self,
        tenant: &str,
        id: &str,
        who: &str,
        reason: Option<&str>,
    ) -> Result<RunRecord, EngineError> {
        if let Some(r) = reason
            && r.len() > MAX_CANCEL_REASON
        {
            return Err(EngineError::Policy(stepwise_core::policy::PolicyError {
                field: "reason",
                problem: format!(
                    "is {} bytes, over the {MAX_CANCEL_REASON}-byte limit",
                    r.len()
                ),
            }));
        }
        for _ in 0..CANCEL_TRIES {
            let run = self.tenant_run(tenant, id).await?;
            match self.try_cancel(run, who, reason).await {
                Ok(run) => {
                    self.drop_hold(&run.id);
                    return Ok(run);
                }
                Err(EngineError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Store(StoreError::Io(format!(
            "run '{id}' kept changing; the cancel was not written"
        ))))
    }

    async fn try_cancel(
        &self,
        mut run: RunRecord,
        who: &str,
        reason: Option<&str>,
    ) -> Result<RunRecord, EngineError> {
        if run.status.is_final() {
            return Err(EngineError::NotCancellable {
                run: run.id,
                status: run.status,
            });
        }
        let now = self.inner.clock.now();
        let was = run.status;
        run.status = RunStatus::Cancelled;
        run.ready_at = None;
        run.wait = None;
        run.finished_at = Some(now);
        run.updated_at = now;
        let detail = match reason {
            Some(r) if !r.is_empty() => format!("by {who}: {r}"),
            _ => format!("by {who}"),
        };
        let entry = TimelineEntry {
            at: now,
            kind: EventKind::Cancelled,
            attempt: None,
            step: None,
            detail,
            http: None,
        };
        let write = RunWrite {
            dead_letter: DeadLetter::Keep,
            key: self.key_expiry(&run),
            lease: None,
            journal: JournalWrites {
                tenant: Some(run.tenant.clone()),
                timeline: vec![entry],
                ..JournalWrites::default()
            },
            run,
        };
        let mut run = write.run.clone();
        run.version = self.inner.store.write_runs(vec![write]).await?[0];
        self.finished(&run.tenant, &run.queue, run.status);
        let interrupted = self.cancel_claimed(&run.id).await?;
        tracing::info!(run = %run.id, was = %was.as_str(), interrupted, who, "run cancelled");
        Ok(run)
    }
}
