//! [`stepwise_store::Store`] for the embedded file: each domain operation becomes one
//! [`Batch`] for the group-commit writer (so many runs' writes still share one transaction and
//! one fsync), and the reads go to a read transaction or the in-memory ready index.

use async_trait::async_trait;

use stepwise_core::clock::Millis;
use stepwise_core::egress::TenantEgress;
use stepwise_core::flow::EventRecord;
use stepwise_core::model::{LogLine, RunRecord, StepRecord, TimelineEntry};
use stepwise_core::picker::ClaimPolicy;
use stepwise_core::secret::SecretRecord;
use stepwise_store::{
    Census, Claimed, CommitStats, Created, DeadLetter, EventFilter, EventPut, IdempotencyRecord,
    JournalWrites, KeyExpiry, Listing, MAX_LIST_SCAN, ModuleRecord, NewEvent, NewRunWrite,
    Occupancy, Page, QueueSettings, RunFilter, RunWrite, RunsPage, Store, StoreError, TenantRecord,
    TenantUsage,
};

use super::ready::LOCAL_HOLDER;
use super::{Batch, CommitOutcome, IdempotencyGuard, RedbStore};

/// How many run ids a listing reads at a time while it filters.
const LIST_CHUNK: usize = 256;

impl RedbStore {
    /// Commits `batch`: a stale run version is an error, a taken idempotency key an answer.
    async fn commit_guarded(&self, batch: Batch) -> Result<Created, StoreError> {
        match self.commit(batch).await? {
            CommitOutcome::Applied | CommitOutcome::EventStored { .. } => Ok(Created::Created),
            CommitOutcome::KeyTaken { run, same_payload } => {
                Ok(Created::KeyTaken { run, same_payload })
            }
            CommitOutcome::Conflict {
                run,
                expected,
                found,
            } => Err(StoreError::Conflict {
                run,
                expected,
                found,
            }),
            CommitOutcome::EventTaken { seq } => Err(StoreError::Io(format!(
                "a write without an event found event {seq}'s id taken"
            ))),
            CommitOutcome::PendingHeld { run } => Ok(Created::PendingHeld { run }),
            CommitOutcome::Replaced(run) => Ok(Created::Replaced { run }),
            CommitOutcome::HolderBusy { run } => Ok(Created::HolderBusy { run }),
        }
    }

    /// Commits `batch`, which carries no idempotency guard.
    async fn commit_plain(&self, batch: Batch) -> Result<(), StoreError> {
        match self.commit_guarded(batch).await? {
            Created::Created => Ok(()),
            Created::KeyTaken { run, .. } => Err(StoreError::Io(format!(
                "a write without an idempotency key found the key of run {run} taken"
            ))),
            other => Err(StoreError::Io(format!(
                "a write without a keyed run was answered {other:?}"
            ))),
        }
    }
}

impl RedbStore {
    /// Refuses a write made under `lease` unless that claim on `run` still holds. One process
    /// holds every claim of this file, so the ready index is the claim's truth.
    fn check_lease(
        &self,
        run: &str,
        lease: Option<&stepwise_store::Lease>,
    ) -> Result<(), StoreError> {
        match lease {
            Some(lease) if lease.holder != LOCAL_HOLDER || !self.is_claimed(run) => {
                Err(StoreError::LeaseLost {
                    run: run.to_owned(),
                    holder: lease.holder.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Runs deleted per write transaction by a purge.
const PURGE_BATCH: usize = 100;

#[async_trait]
impl Store for RedbStore {
    async fn create_run(&self, new: NewRunWrite) -> Result<Created, StoreError> {
        let mut run = new.run;
        run.version = 1;
        let mut batch = Batch::new();
        batch
            .charge_to(&run.tenant)
            .put_run(&run, None)
            .put_tenant_run(&run.tenant, &run.id)
            .set_ready(&run, None, run.ready_at)
            .journal(&run.id, &new.journal);
        if run.key.is_some() {
            batch.keyed(&run);
        }
        if let Some(claim) = new.idempotency {
            batch.guard(IdempotencyGuard {
                tenant: run.tenant.clone(),
                queue: run.queue.clone(),
                key: claim.key,
                record: IdempotencyRecord {
                    run: run.id.clone(),
                    payload_hash: claim.payload_hash,
                    created_at: claim.now,
                    expires_at: None,
                },
                now: claim.now,
            });
        }
        self.commit_guarded(batch).await
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        RedbStore::run(self, id)
    }

    async fn tenant_run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.run_of(tenant, id)
    }

    async fn load_journal(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.steps(run)
    }

    async fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError> {
        RedbStore::last_attempt(self, run)
    }

    async fn record_step(&self, run: &str, journal: JournalWrites) -> Result<(), StoreError> {
        self.check_lease(run, journal.lease.as_ref())?;
        let mut batch = Batch::new();
        batch.journal(run, &journal);
        self.commit_plain(batch).await
    }

    fn submit_step(&self, run: &str, journal: JournalWrites) -> stepwise_store::Submitted {
        if let Err(e) = self.check_lease(run, journal.lease.as_ref()) {
            return Box::pin(async move { Err(e) });
        }
        let mut batch = Batch::new();
        batch.journal(run, &journal);
        match self.submit(batch) {
            Ok(done) => Box::pin(async move {
                match done.await.map_err(|_| StoreError::WriterStopped)?? {
                    CommitOutcome::Applied => Ok(()),
                    other => Err(StoreError::Io(format!(
                        "a journal write was refused: {other:?}"
                    ))),
                }
            }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    async fn write_runs(&self, writes: Vec<RunWrite>) -> Result<Vec<u64>, StoreError> {
        let mut batch = Batch::new();
        let mut versions = Vec::with_capacity(writes.len());
        for w in &writes {
            self.check_lease(&w.run.id, w.lease.as_ref())?;
        }
        for w in writes {
            let expected = w.run.version;
            let mut run = w.run;
            run.version = expected.saturating_add(1);
            batch.write_run(&run, expected).journal(&run.id, &w.journal);
            match w.dead_letter {
                DeadLetter::Keep => {}
                DeadLetter::Add(at) => {
                    batch.put_dead_letter(&run, at);
                }
                DeadLetter::Remove => {
                    batch.remove_dead_letter(&run);
                }
            }
            let expires_at = match w.key {
                KeyExpiry::Keep => None,
                KeyExpiry::Held => Some(None),
                KeyExpiry::Until(at) => Some(Some(at)),
            };
            if let (Some(expires_at), Some(key)) = (expires_at, &run.idempotency_key)
                && let Some(mut record) =
                    RedbStore::idempotency(self, &run.tenant, &run.queue, key)?
                && record.run == run.id
            {
                record.expires_at = expires_at;
                batch.put_idempotency(&run.tenant, &run.queue, key, &record);
            }
            versions.push(run.version);
        }
        self.commit_plain(batch).await?;
        Ok(versions)
    }

    async fn set_aside(&self, run: &str, why: String) -> Result<(), StoreError> {
        let at = self
            .waiting()?
            .into_iter()
            .find(|(_, r)| r == run)
            .map(|(at, _)| at);
        RedbStore::set_aside(self, run, at, why).await
    }

    async fn unreadable_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(RedbStore::unreadable_runs(self))
    }

    async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunsPage, StoreError> {
        if limit == 0 {
            return Ok(RunsPage::default());
        }
        let mut runs = Vec::new();
        let mut cursor = after.map(str::to_owned);
        let mut scanned = 0;
        while scanned < MAX_LIST_SCAN {
            let chunk = LIST_CHUNK.min(MAX_LIST_SCAN - scanned);
            let ids = match &filter.parent {
                Some(parent) => {
                    self.children_of(parent, cursor.as_deref(), filter.newest_first, chunk)?
                }
                None => self.tenant_runs(tenant, cursor.as_deref(), filter.newest_first, chunk)?,
            };
            if ids.is_empty() {
                return Ok(RunsPage { runs, next: None });
            }
            for id in ids {
                scanned += 1;
                let run = RedbStore::run(self, &id)?;
                cursor = Some(id);
                if let Some(run) = run
                    && run.tenant == tenant
                    && filter.admits(&run)
                {
                    runs.push(run);
                    if runs.len() == limit {
                        return Ok(RunsPage { runs, next: cursor });
                    }
                }
            }
        }
        Ok(RunsPage { runs, next: cursor })
    }

    async fn steps_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<StepRecord>, StoreError> {
        self.page(Listing::Steps, run, from, limit)
    }

    async fn timeline_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<TimelineEntry>, StoreError> {
        self.page(Listing::Timeline, run, from, limit)
    }

    async fn logs_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<LogLine>, StoreError> {
        self.page(Listing::Logs, run, from, limit)
    }

    async fn put_schedule(
        &self,
        tenant: &str,
        schedule: &stepwise_core::schedule::ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut record = schedule.clone();
        record.version = expected.map_or(1, |v| v.saturating_add(1));
        let mut batch = Batch::new();
        batch.put_schedule(tenant, &record, expected);
        self.commit_plain(batch).await?;
        Ok(record.version)
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<stepwise_core::schedule::ScheduleRecord>, StoreError> {
        self.schedule_of(tenant, name)
    }

    async fn schedules_of(
        &self,
        tenant: &str,
    ) -> Result<Vec<stepwise_core::schedule::ScheduleRecord>, StoreError> {
        Ok(self
            .schedules_in(Some(tenant))?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    async fn all_schedules(
        &self,
    ) -> Result<Vec<(String, stepwise_core::schedule::ScheduleRecord)>, StoreError> {
        self.schedules_in(None)
    }

    async fn remove_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let existed = self.schedule_of(tenant, name)?.is_some();
        let mut batch = Batch::new();
        batch.remove_schedule(tenant, name);
        self.commit_plain(batch).await?;
        Ok(existed)
    }

    async fn child_ids(&self, parent: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.children_of(parent, None, false, limit)
    }

    async fn put_event(&self, tenant: &str, event: NewEvent) -> Result<EventPut, StoreError> {
        let record = EventRecord {
            id: event.id,
            seq: 0,
            name: event.name,
            correlation_key: event.correlation_key,
            payload: event.payload,
            received_at: event.received_at,
            expires_at: event.expires_at,
            body_hash: event.body_hash,
        };
        let mut batch = Batch::new();
        batch.put_event(tenant, record.clone());
        let (seq, woken) = match self.commit(batch).await? {
            CommitOutcome::EventStored { woken } => (None, woken),
            CommitOutcome::EventTaken { seq } => (Some(seq), 0),
            other => {
                return Err(StoreError::Io(format!(
                    "an event write was refused: {other:?}"
                )));
            }
        };
        match seq {
            Some(seq) => {
                let stored = self
                    .event_by_seq(tenant, seq)?
                    .ok_or_else(|| StoreError::Io(format!("event {seq} of {tenant} vanished")))?;
                Ok(EventPut::Exists(stored))
            }
            None => {
                let stored = self.event_by_id(tenant, &record.id)?.ok_or_else(|| {
                    StoreError::Io(format!("event '{}' of {tenant} vanished", record.id))
                })?;
                Ok(EventPut::Stored {
                    event: stored,
                    woken,
                })
            }
        }
    }

    async fn match_event(
        &self,
        tenant: &str,
        name: &str,
        key: Option<&str>,
        since: Millis,
        until: Millis,
        skip: &[u64],
    ) -> Result<(Option<EventRecord>, u64), StoreError> {
        RedbStore::match_event(self, tenant, name, key, since, until, skip)
    }

    async fn event(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.event_by_id(tenant, id)
    }

    async fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        RedbStore::list_events(self, tenant, filter, before, limit)
    }

    async fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        RedbStore::event_deliveries(self, tenant, seq, limit)
    }

    async fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        RedbStore::expired_events(self, now, limit)
    }

    async fn remove_events(&self, events: &[(String, u64)]) -> Result<(), StoreError> {
        for chunk in events.chunks(PURGE_BATCH) {
            let mut batch = Batch::new();
            for (tenant, seq) in chunk {
                batch.remove_event(tenant, *seq);
            }
            self.commit_plain(batch).await?;
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        now: Millis,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Result<Vec<Claimed>, StoreError> {
        Ok(self.claim(now, room, policy))
    }

    async fn lift_hold(&self, run: &str) -> Result<(), StoreError> {
        let stored = RedbStore::run(self, run)?.and_then(|r| r.ready_at);
        if let Some(at) = stored {
            self.ready.lift_hold(run, at);
        }
        Ok(())
    }

    async fn release(
        &self,
        run: &str,
        served_ms: u64,
        hold_until: Option<Millis>,
    ) -> Result<(), StoreError> {
        RedbStore::release(self, run, served_ms, hold_until);
        Ok(())
    }

    async fn is_claimed(&self, run: &str) -> Result<bool, StoreError> {
        Ok(RedbStore::is_claimed(self, run))
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.next_pending())
    }

    async fn has_unclaimed(&self) -> Result<bool, StoreError> {
        Ok(RedbStore::has_unclaimed(self))
    }

    async fn occupancy(&self) -> Result<Occupancy, StoreError> {
        Ok(RedbStore::occupancy(self))
    }

    async fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        RedbStore::waiting(self)
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        RedbStore::dead_letters(self, tenant, queue)
    }

    async fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError> {
        RedbStore::is_dead_lettered(self, run)
    }

    async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        runs: &[String],
    ) -> Result<(), StoreError> {
        // In batches of a bounded size, so a purge of many runs never holds the writer in
        // one long transaction while every other write waits.
        for chunk in runs.chunks(PURGE_BATCH) {
            let mut batch = Batch::new();
            for id in chunk {
                // The writer deletes only what is still a dead letter of this queue.
                if let Some(run) = RedbStore::run(self, id)?
                    && run.tenant == tenant
                    && run.queue == queue
                {
                    batch.delete_dead_letter(&run);
                }
            }
            if !batch.is_empty() {
                self.commit_plain(batch).await?;
            }
        }
        Ok(())
    }

    async fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        RedbStore::idempotency(self, tenant, queue, key)
    }

    async fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        RedbStore::expired_idempotency(self, now, limit)
    }

    async fn remove_idempotency(
        &self,
        keys: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for (tenant, queue, key) in keys {
            batch.remove_idempotency(tenant, queue, key);
        }
        self.commit_plain(batch).await
    }

    async fn census(&self) -> Result<Census, StoreError> {
        RedbStore::census(self)
    }

    async fn queue_census(&self, tenant: &str, queue: &str) -> Result<Census, StoreError> {
        RedbStore::queue_census(self, tenant, queue)
    }

    async fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError> {
        RedbStore::tenant_census(self, tenant)
    }

    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        RedbStore::tenant_usage(self, tenant)
    }

    fn stats(&self) -> &CommitStats {
        RedbStore::stats(self)
    }

    async fn hosts(&self) -> Result<Vec<stepwise_store::HostInfo>, StoreError> {
        // One process has the file open: this one, whose claims last as long as it does.
        Ok(vec![stepwise_store::HostInfo {
            id: LOCAL_HOLDER.to_owned(),
            started_at: self.opened_at,
            last_seen: stepwise_core::clock::wall_ms(),
            claims: RedbStore::occupancy(self).running as u64,
            next_expiry: None,
        }])
    }

    async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_tenant(tenant).put_token(token_hash, &tenant.name);
        self.commit_plain(batch).await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        RedbStore::tenant(self, name)
    }

    async fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        RedbStore::tenant_for_token(self, token_hash)
    }

    async fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_module(hash, bytes);
        self.commit_plain(batch).await
    }

    async fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        RedbStore::module(self, hash)
    }

    async fn deploy_module(&self, tenant: &str, module: &ModuleRecord) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_tenant_module(tenant, module);
        self.commit_plain(batch).await
    }

    async fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        RedbStore::tenant_modules(self, tenant)
    }

    async fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError> {
        RedbStore::job_route(self, tenant, job)
    }

    async fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError> {
        RedbStore::tenant_has_module(self, tenant, hash)
    }

    async fn put_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_queue(tenant, queue, settings);
        self.commit_plain(batch).await
    }

    async fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError> {
        RedbStore::queues(self)
    }

    async fn put_egress(&self, tenant: &str, settings: &TenantEgress) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_egress(tenant, settings);
        self.commit_plain(batch).await
    }

    async fn egress(&self, tenant: &str) -> Result<TenantEgress, StoreError> {
        RedbStore::egress(self, tenant)
    }

    async fn egress_all(&self) -> Result<Vec<(String, TenantEgress)>, StoreError> {
        RedbStore::egress_all(self)
    }

    async fn put_secrets(&self, secrets: &[(String, SecretRecord)]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for (tenant, record) in secrets {
            batch.put_secret(tenant, record);
        }
        self.commit_plain(batch).await
    }

    async fn remove_secret(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.remove_secret(tenant, name);
        self.commit_plain(batch).await
    }

    async fn secrets_of(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        RedbStore::secrets_of(self, tenant)
    }

    async fn secrets_all(&self) -> Result<Vec<(String, Vec<SecretRecord>)>, StoreError> {
        RedbStore::secrets_all(self)
    }
}
