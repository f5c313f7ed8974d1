//! A store that fails chosen operations on purpose, wrapped around a real one: how the
//! engine's tests show that a storage failure under an attempt is the host's fault, never
//! charged to the guest. Every other call goes to the wrapped store unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use stepwise_core::clock::Millis;
use stepwise_core::egress::TenantEgress;
use stepwise_core::model::{LogLine, RunRecord, StepRecord, TimelineEntry};
use stepwise_core::picker::ClaimPolicy;
use stepwise_core::secret::SecretRecord;

use crate::{
    Census, Claimed, CommitStats, Created, IdempotencyRecord, JournalWrites, ModuleRecord,
    NewRunWrite, Occupancy, Page, QueueSettings, RunFilter, RunWrite, Store, StoreError,
    TenantRecord, TenantUsage,
};

/// A [`Store`] that fails the next N calls of `record_step` or `write_runs`.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    /// The next calls of [`Store::record_step`] to fail.
    pub fail_record_step: AtomicU32,
    /// The next calls of [`Store::submit_step`] to fail.
    pub fail_submit_step: AtomicU32,
    /// The next calls of [`Store::write_runs`] to fail.
    pub fail_write_runs: AtomicU32,
}

impl FaultyStore {
    /// `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            fail_record_step: AtomicU32::new(0),
            fail_submit_step: AtomicU32::new(0),
            fail_write_runs: AtomicU32::new(0),
        }
    }
}

/// Takes one failure from `counter`, if any is left.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_run(&self, new: NewRunWrite) -> Result<Created, StoreError> {
        self.inner.create_run(new).await
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.inner.run(id).await
    }

    async fn tenant_run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.inner.tenant_run(tenant, id).await
    }

    async fn load_journal(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.inner.load_journal(run).await
    }

    async fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError> {
        self.inner.last_attempt(run).await
    }

    fn submit_step(&self, run: &str, journal: JournalWrites) -> crate::Submitted {
        if take_one(&self.fail_submit_step) {
            return Box::pin(async { Err(StoreError::Io("injected fault".into())) });
        }
        self.inner.submit_step(run, journal)
    }

    async fn record_step(&self, run: &str, journal: JournalWrites) -> Result<(), StoreError> {
        if take_one(&self.fail_record_step) {
            return Err(StoreError::Io("injected fault: record_step".into()));
        }
        self.inner.record_step(run, journal).await
    }

    async fn write_runs(&self, writes: Vec<RunWrite>) -> Result<Vec<u64>, StoreError> {
        if take_one(&self.fail_write_runs) {
            return Err(StoreError::Io("injected fault: write_runs".into()));
        }
        self.inner.write_runs(writes).await
    }

    async fn set_aside(&self, run: &str, why: String) -> Result<(), StoreError> {
        self.inner.set_aside(run, why).await
    }

    async fn unreadable_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.unreadable_runs().await
    }

    async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::RunsPage, StoreError> {
        self.inner.list_runs(tenant, filter, after, limit).await
    }

    async fn put_schedule(
        &self,
        tenant: &str,
        schedule: &stepwise_core::schedule::ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.put_schedule(tenant, schedule, expected).await
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<stepwise_core::schedule::ScheduleRecord>, StoreError> {
        self.inner.schedule(tenant, name).await
    }

    async fn schedules_of(
        &self,
        tenant: &str,
    ) -> Result<Vec<stepwise_core::schedule::ScheduleRecord>, StoreError> {
        self.inner.schedules_of(tenant).await
    }

    async fn all_schedules(
        &self,
    ) -> Result<Vec<(String, stepwise_core::schedule::ScheduleRecord)>, StoreError> {
        self.inner.all_schedules().await
    }

    async fn remove_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.inner.remove_schedule(tenant, name).await
    }

    async fn child_ids(&self, parent: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.child_ids(parent, limit).await
    }

    async fn put_event(
        &self,
        tenant: &str,
        event: crate::NewEvent,
    ) -> Result<crate::EventPut, StoreError> {
        self.inner.put_event(tenant, event).await
    }

    async fn match_event(
        &self,
        tenant: &str,
        name: &str,
        key: Option<&str>,
        since: Millis,
        until: Millis,
        skip: &[u64],
    ) -> Result<(Option<stepwise_core::flow::EventRecord>, u64), StoreError> {
        self.inner
            .match_event(tenant, name, key, since, until, skip)
            .await
    }

    async fn event(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<stepwise_core::flow::EventRecord>, StoreError> {
        self.inner.event(tenant, id).await
    }

    async fn list_events(
        &self,
        tenant: &str,
        filter: &crate::EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<stepwise_core::flow::EventRecord>, StoreError> {
        self.inner.list_events(tenant, filter, before, limit).await
    }

    async fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.event_deliveries(tenant, seq, limit).await
    }

    async fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.expired_events(now, limit).await
    }

    async fn remove_events(&self, events: &[(String, u64)]) -> Result<(), StoreError> {
        self.inner.remove_events(events).await
    }

    async fn steps_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<StepRecord>, StoreError> {
        self.inner.steps_page(run, from, limit).await
    }

    async fn timeline_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<TimelineEntry>, StoreError> {
        self.inner.timeline_page(run, from, limit).await
    }

    async fn logs_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<LogLine>, StoreError> {
        self.inner.logs_page(run, from, limit).await
    }

    async fn claim_due(
        &self,
        now: Millis,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim_due(now, room, policy).await
    }

    async fn release(
        &self,
        run: &str,
        served_ms: u64,
        hold_until: Option<Millis>,
    ) -> Result<(), StoreError> {
        self.inner.release(run, served_ms, hold_until).await
    }

    async fn lift_hold(&self, run: &str) -> Result<(), StoreError> {
        self.inner.lift_hold(run).await
    }

    async fn is_claimed(&self, run: &str) -> Result<bool, StoreError> {
        self.inner.is_claimed(run).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.inner.next_due().await
    }

    async fn has_unclaimed(&self) -> Result<bool, StoreError> {
        self.inner.has_unclaimed().await
    }

    async fn occupancy(&self) -> Result<Occupancy, StoreError> {
        self.inner.occupancy().await
    }

    async fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        self.inner.waiting().await
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        self.inner.dead_letters(tenant, queue).await
    }

    async fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError> {
        self.inner.is_dead_lettered(run).await
    }

    async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        runs: &[String],
    ) -> Result<(), StoreError> {
        self.inner.purge_dead_letters(tenant, queue, runs).await
    }

    async fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency(tenant, queue, key).await
    }

    async fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.inner.expired_idempotency(now, limit).await
    }

    async fn remove_idempotency(
        &self,
        keys: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.inner.remove_idempotency(keys).await
    }

    async fn census(&self) -> Result<Census, StoreError> {
        self.inner.census().await
    }

    async fn queue_census(&self, tenant: &str, queue: &str) -> Result<Census, StoreError> {
        self.inner.queue_census(tenant, queue).await
    }

    async fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError> {
        self.inner.tenant_census(tenant).await
    }

    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        self.inner.tenant_usage(tenant).await
    }

    fn stats(&self) -> &CommitStats {
        self.inner.stats()
    }

    fn host_id(&self) -> &str {
        self.inner.host_id()
    }

    fn lease_stats(&self) -> crate::LeaseStats {
        self.inner.lease_stats()
    }

    fn set_waker(&self, waker: crate::Waker) {
        self.inner.set_waker(waker);
    }

    async fn hosts(&self) -> Result<Vec<crate::HostInfo>, StoreError> {
        self.inner.hosts().await
    }

    async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        self.inner.create_tenant(tenant, token_hash).await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        self.inner.tenant(name).await
    }

    async fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.tenant_for_token(token_hash).await
    }

    async fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_module(hash, bytes).await
    }

    async fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.module(hash).await
    }

    async fn deploy_module(&self, tenant: &str, module: &ModuleRecord) -> Result<(), StoreError> {
        self.inner.deploy_module(tenant, module).await
    }

    async fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        self.inner.tenant_modules(tenant).await
    }

    async fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError> {
        self.inner.job_route(tenant, job).await
    }

    async fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError> {
        self.inner.tenant_has_module(tenant, hash).await
    }

    async fn put_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        self.inner.put_queue(tenant, queue, settings).await
    }

    async fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError> {
        self.inner.queues().await
    }

    async fn put_egress(&self, tenant: &str, settings: &TenantEgress) -> Result<(), StoreError> {
        self.inner.put_egress(tenant, settings).await
    }

    async fn egress(&self, tenant: &str) -> Result<TenantEgress, StoreError> {
        self.inner.egress(tenant).await
    }

    async fn egress_all(&self) -> Result<Vec<(String, TenantEgress)>, StoreError> {
        self.inner.egress_all().await
    }

    async fn put_secrets(&self, secrets: &[(String, SecretRecord)]) -> Result<(), StoreError> {
        self.inner.put_secrets(secrets).await
    }

    async fn remove_secret(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        self.inner.remove_secret(tenant, name).await
    }

    async fn secrets_of(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        self.inner.secrets_of(tenant).await
    }

    async fn secrets_all(&self) -> Result<Vec<(String, Vec<SecretRecord>)>, StoreError> {
        self.inner.secrets_all().await
    }
}
