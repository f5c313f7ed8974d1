//! [`stepwise_store::Store`] for PostgreSQL: each method delegates to the module that holds
//! its part (`runs.rs`, `reads.rs`, `events.rs`, `claims.rs`, `counters.rs`, `journal.rs`,
//! `settings.rs`).

use async_trait::async_trait;

use stepwise_core::clock::Millis;
use stepwise_core::egress::TenantEgress;
use stepwise_core::flow::EventRecord;
use stepwise_core::model::{LogLine, RunRecord, StepRecord, TimelineEntry};
use stepwise_core::picker::ClaimPolicy;
use stepwise_core::schedule::ScheduleRecord;
use stepwise_core::secret::SecretRecord;
use stepwise_store::{
    Census, Claimed, CommitStats, Created, EventFilter, EventPut, HostInfo, IdempotencyRecord,
    JournalWrites, LeaseStats, ModuleRecord, NewEvent, NewRunWrite, Occupancy, Page, QueueSettings,
    RunFilter, RunWrite, RunsPage, Store, StoreError, Submitted, TenantRecord, TenantUsage, Waker,
};

use crate::PgStore;
use crate::reads::List;

/// Rows a journal write adds.
pub(crate) fn journal_rows(journal: &JournalWrites) -> u64 {
    (journal.steps.len() + journal.timeline.len() + journal.logs.len() + journal.deliveries.len())
        as u64
}

#[async_trait]
impl Store for PgStore {
    async fn create_run(&self, new: NewRunWrite) -> Result<Created, StoreError> {
        let started = std::time::Instant::now();
        // The run, its journal's rows and its counter row.
        let rows = 2 + journal_rows(&new.journal);
        let created = PgStore::create_run(self, new).await?;
        self.count_commit(started, rows, 1);
        if matches!(created, Created::Created | Created::Replaced { .. }) {
            self.notify_work();
        }
        Ok(created)
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        PgStore::run(self, id).await
    }

    async fn tenant_run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        PgStore::tenant_run(self, tenant, id).await
    }

    async fn load_journal(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        PgStore::load_journal(self, run).await
    }

    async fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError> {
        PgStore::last_attempt(self, run).await
    }

    async fn record_step(&self, run: &str, journal: JournalWrites) -> Result<(), StoreError> {
        self.submit_journal(run, journal).await
    }

    fn submit_step(&self, run: &str, journal: JournalWrites) -> Submitted {
        self.submit_journal(run, journal)
    }

    async fn write_runs(&self, writes: Vec<RunWrite>) -> Result<Vec<u64>, StoreError> {
        // An attempt's settlement follows everything the attempt queued (its start first).
        for w in writes.iter().filter(|w| w.lease.is_some()) {
            self.journal_barrier(&w.run.id).await?;
        }
        let started = std::time::Instant::now();
        // Each run, its journal's rows, and the counter rows.
        let n = 1 + writes
            .iter()
            .map(|w| 1 + journal_rows(&w.journal))
            .sum::<u64>();
        let (versions, woke) = PgStore::write_runs(self, writes).await?;
        self.count_commit(started, n, 1);
        if woke {
            self.notify_work();
        }
        Ok(versions)
    }

    async fn set_aside(&self, run: &str, why: String) -> Result<(), StoreError> {
        PgStore::set_aside(self, run, why).await
    }

    async fn unreadable_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        PgStore::unreadable_runs(self).await
    }

    async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunsPage, StoreError> {
        PgStore::list_runs(self, tenant, filter, after, limit).await
    }

    async fn child_ids(&self, parent: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        PgStore::child_ids(self, parent, limit).await
    }

    async fn steps_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<StepRecord>, StoreError> {
        self.page(List::Steps, run, from, limit).await
    }

    async fn timeline_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<TimelineEntry>, StoreError> {
        self.page(List::Timeline, run, from, limit).await
    }

    async fn logs_page(
        &self,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<LogLine>, StoreError> {
        self.page(List::Logs, run, from, limit).await
    }

    async fn put_event(&self, tenant: &str, event: NewEvent) -> Result<EventPut, StoreError> {
        let put = PgStore::put_event(self, tenant, event).await?;
        if matches!(put, EventPut::Stored { woken, .. } if woken > 0) {
            self.notify_work();
        }
        Ok(put)
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
        PgStore::match_event(self, tenant, name, key, since, until, skip).await
    }

    async fn event(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>, StoreError> {
        PgStore::event(self, tenant, id).await
    }

    async fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        PgStore::list_events(self, tenant, filter, before, limit).await
    }

    async fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        PgStore::event_deliveries(self, tenant, seq, limit).await
    }

    async fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        PgStore::expired_events(self, now, limit).await
    }

    async fn remove_events(&self, events: &[(String, u64)]) -> Result<(), StoreError> {
        PgStore::remove_events(self, events).await
    }

    async fn claim_due(
        &self,
        now: Millis,
        room: usize,
        policy: &(dyn ClaimPolicy + Sync),
    ) -> Result<Vec<Claimed>, StoreError> {
        PgStore::claim_due(self, now, room, policy).await
    }

    async fn release(
        &self,
        run: &str,
        served_ms: u64,
        hold_until: Option<Millis>,
    ) -> Result<(), StoreError> {
        PgStore::release(self, run, served_ms, hold_until).await
    }

    async fn lift_hold(&self, run: &str) -> Result<(), StoreError> {
        PgStore::lift_hold(self, run).await
    }

    async fn is_claimed(&self, run: &str) -> Result<bool, StoreError> {
        PgStore::is_claimed(self, run).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        PgStore::next_due(self).await
    }

    async fn has_unclaimed(&self) -> Result<bool, StoreError> {
        PgStore::has_unclaimed(self).await
    }

    async fn occupancy(&self) -> Result<Occupancy, StoreError> {
        PgStore::occupancy(self).await
    }

    async fn waiting(&self) -> Result<Vec<(Millis, String)>, StoreError> {
        PgStore::waiting(self).await
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        PgStore::dead_letters(self, tenant, queue).await
    }

    async fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError> {
        PgStore::is_dead_lettered(self, run).await
    }

    async fn purge_dead_letters(
        &self,
        tenant: &str,
        queue: &str,
        runs: &[String],
    ) -> Result<(), StoreError> {
        PgStore::purge_dead_letters(self, tenant, queue, runs).await
    }

    async fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        PgStore::idempotency(self, tenant, queue, key).await
    }

    async fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        PgStore::expired_idempotency(self, now, limit).await
    }

    async fn remove_idempotency(
        &self,
        keys: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        PgStore::remove_idempotency(self, keys).await
    }

    async fn census(&self) -> Result<Census, StoreError> {
        PgStore::census(self).await
    }

    async fn queue_census(&self, tenant: &str, queue: &str) -> Result<Census, StoreError> {
        PgStore::queue_census(self, tenant, queue).await
    }

    async fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError> {
        PgStore::tenant_census(self, tenant).await
    }

    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        PgStore::tenant_usage(self, tenant).await
    }

    fn stats(&self) -> &CommitStats {
        &self.shared.stats
    }

    fn host_id(&self) -> &str {
        &self.shared.holder
    }

    fn lease_stats(&self) -> LeaseStats {
        use std::sync::atomic::Ordering::Relaxed;
        LeaseStats {
            writes_refused: self.shared.leases_refused.load(Relaxed),
            leases_lost: self.shared.leases_lost.load(Relaxed),
            takeovers: self.shared.takeovers.load(Relaxed),
        }
    }

    fn set_waker(&self, waker: Waker) {
        let first = self
            .shared
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(waker.clone())
            .is_none();
        if first {
            self.start_listener();
        }
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, StoreError> {
        PgStore::hosts(self).await
    }

    async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        PgStore::create_tenant(self, tenant, token_hash).await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        PgStore::tenant(self, name).await
    }

    async fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        PgStore::tenant_for_token(self, token_hash).await
    }

    async fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        PgStore::put_module(self, hash, bytes).await
    }

    async fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        PgStore::module(self, hash).await
    }

    async fn deploy_module(&self, tenant: &str, module: &ModuleRecord) -> Result<(), StoreError> {
        PgStore::deploy_module(self, tenant, module).await
    }

    async fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        PgStore::tenant_modules(self, tenant).await
    }

    async fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError> {
        PgStore::job_route(self, tenant, job).await
    }

    async fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError> {
        PgStore::tenant_has_module(self, tenant, hash).await
    }

    async fn put_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        PgStore::put_queue(self, tenant, queue, settings).await?;
        self.notify_settings(tenant);
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError> {
        PgStore::queues(self).await
    }

    async fn put_schedule(
        &self,
        tenant: &str,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        PgStore::put_schedule(self, tenant, schedule, expected).await
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ScheduleRecord>, StoreError> {
        PgStore::schedule(self, tenant, name).await
    }

    async fn schedules_of(&self, tenant: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        PgStore::schedules_of(self, tenant).await
    }

    async fn all_schedules(&self) -> Result<Vec<(String, ScheduleRecord)>, StoreError> {
        PgStore::all_schedules(self).await
    }

    async fn remove_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        PgStore::remove_schedule(self, tenant, name).await
    }

    async fn put_egress(&self, tenant: &str, settings: &TenantEgress) -> Result<(), StoreError> {
        PgStore::put_egress(self, tenant, settings).await?;
        self.notify_settings(tenant);
        Ok(())
    }

    async fn egress(&self, tenant: &str) -> Result<TenantEgress, StoreError> {
        PgStore::egress(self, tenant).await
    }

    async fn egress_all(&self) -> Result<Vec<(String, TenantEgress)>, StoreError> {
        PgStore::egress_all(self).await
    }

    async fn put_secrets(&self, secrets: &[(String, SecretRecord)]) -> Result<(), StoreError> {
        PgStore::put_secrets(self, secrets).await?;
        for (tenant, _) in secrets {
            self.notify_settings(tenant);
        }
        Ok(())
    }

    async fn remove_secret(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        PgStore::remove_secret(self, tenant, name).await?;
        self.notify_settings(tenant);
        Ok(())
    }

    async fn secrets_of(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        PgStore::secrets_of(self, tenant).await
    }

    async fn secrets_all(&self) -> Result<Vec<(String, Vec<SecretRecord>)>, StoreError> {
        PgStore::secrets_all(self).await
    }
}
