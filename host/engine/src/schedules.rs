//! Cron schedules: creating, changing and removing a tenant's schedules, and firing the due
//! ones. Each fire is an enqueue whose idempotency key is (schedule, fire time), and a
//! schedule's next fire time is stored only after its due fires were enqueued: a host that
//! crashes mid-pass fires the same times again on restart, and the keys make each of them one
//! run. So a fire is never enqueued twice and never skipped without being recorded as
//! skipped (missed fires follow the catch-up policy).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Engine, EngineError, NewRun};
use stepwise_core::clock::Millis;
use stepwise_core::names::Kind;
use stepwise_core::policy::PolicyOverrides;
use stepwise_core::schedule::{
    CatchUp, FireOutcome, MAX_CATCH_UP, MAX_SCHEDULES_PER_TENANT, Overlap, ScheduleFire,
    ScheduleRecord, ScheduleSpec,
};
use stepwise_schedule::{CronSchedule, due_fires};
use stepwise_store::StoreError;

/// How long the firing loop sleeps at most between passes (it wakes early for a change).
const MAX_PASS_GAP_MS: Millis = 60_000;

/// Changes to a schedule; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulePatch {
    /// A new expression.
    pub cron: Option<String>,
    /// A new zone.
    pub timezone: Option<String>,
    /// A new job.
    pub job: Option<String>,
    /// A new queue.
    pub queue: Option<String>,
    /// A new payload (JSON text).
    pub payload: Option<String>,
    /// New policy overrides (replacing the old ones).
    pub overrides: Option<PolicyOverrides>,
    /// A new priority.
    pub priority: Option<i32>,
    /// A new overlap policy.
    pub overlap: Option<Overlap>,
    /// A new catch-up policy.
    pub catch_up: Option<CatchUp>,
    /// A new catch-up bound.
    pub catch_up_limit: Option<u32>,
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidSchedule(message.into())
}

impl Engine {
    /// Checks `spec` whole; returns its parsed expression.
    async fn check_schedule(
        &self,
        tenant: &str,
        spec: &ScheduleSpec,
    ) -> Result<CronSchedule, EngineError> {
        let cron =
            CronSchedule::parse(&spec.cron, &spec.timezone).map_err(|e| invalid(e.to_string()))?;
        super::check_name(Kind::Queue, &spec.queue)?;
        super::check_name(Kind::Job, &spec.job)?;
        if self
            .inner
            .store
            .job_route(tenant, &spec.job)
            .await?
            .is_none()
        {
            return Err(self.unknown_job(tenant, &spec.job).await);
        }
        let text = spec.payload.to_string();
        let limit = self.inner.config.max_payload_bytes;
        if text.len() > limit {
            return Err(EngineError::PayloadTooLarge {
                size: text.len(),
                limit,
            });
        }
        spec.overrides.validate(self.caps())?;
        if !(1..=MAX_CATCH_UP).contains(&spec.catch_up_limit) {
            return Err(invalid(format!(
                "catch_up_limit {} must be from 1 to {MAX_CATCH_UP}",
                spec.catch_up_limit
            )));
        }
        Ok(cron)
    }

    /// Creates `tenant`'s schedule `name`; it fires from the next matching time on (none
    /// while paused).
    pub async fn create_schedule(
        &self,
        tenant: &str,
        name: &str,
        spec: ScheduleSpec,
    ) -> Result<ScheduleRecord, EngineError> {
        super::check_name(Kind::Queue, name)?;
        let cron = self.check_schedule(tenant, &spec).await?;
        let store = &self.inner.store;
        let count = store.schedules_of(tenant).await?.len();
        if count >= MAX_SCHEDULES_PER_TENANT {
            return Err(EngineError::QuotaExceeded {
                tenant: tenant.to_owned(),
                what: "schedules",
                limit: MAX_SCHEDULES_PER_TENANT as u64,
                used: count as u64,
            });
        }
        let now = self.inner.clock.now();
        let mut record = ScheduleRecord {
            name: name.to_owned(),
            version: 0,
            next_fire_at: if spec.paused {
                None
            } else {
                cron.next_after(now)
            },
            spec,
            recent: Vec::new(),
            fired: 0,
            skipped: 0,
            created_at: now,
            updated_at: now,
        };
        record.version = match store.put_schedule(tenant, &record, None).await {
            Ok(v) => v,
            Err(StoreError::Conflict { .. }) => {
                return Err(EngineError::ScheduleExists(name.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        self.inner.schedules_changed.notify_one();
        tracing::info!(tenant, schedule = name, "schedule created");
        Ok(record)
    }

    /// Changes `tenant`'s schedule `name`. A change of expression or zone, and a resume,
    /// fire from the next matching time after now.
    pub async fn update_schedule(
        &self,
        tenant: &str,
        name: &str,
        patch: SchedulePatch,
    ) -> Result<ScheduleRecord, EngineError> {
        for _ in 0..16 {
            let mut record = self.schedule(tenant, name).await?;
            let spec = &mut record.spec;
            let retimed = patch.cron.is_some()
                || patch.timezone.is_some()
                || (patch.paused == Some(false) && spec.paused);
            if let Some(v) = &patch.cron {
                spec.cron.clone_from(v);
            }
            if let Some(v) = &patch.timezone {
                spec.timezone.clone_from(v);
            }
            if let Some(v) = &patch.job {
                spec.job.clone_from(v);
            }
            if let Some(v) = &patch.queue {
                spec.queue.clone_from(v);
            }
            if let Some(v) = &patch.payload {
                let limit = self.inner.config.max_payload_bytes;
                spec.payload = crate::enqueue::parse_payload(v, limit)?;
            }
            if let Some(v) = patch.overrides {
                spec.overrides = v;
            }
            if let Some(v) = patch.priority {
                spec.priority = v;
            }
            if let Some(v) = patch.overlap {
                spec.overlap = v;
            }
            if let Some(v) = patch.catch_up {
                spec.catch_up = v;
            }
            if let Some(v) = patch.catch_up_limit {
                spec.catch_up_limit = v;
            }
            if let Some(v) = patch.paused {
                spec.paused = v;
            }
            let cron = self.check_schedule(tenant, &record.spec).await?;
            let now = self.inner.clock.now();
            if record.spec.paused {
                record.next_fire_at = None;
            } else if retimed || record.next_fire_at.is_none() {
                record.next_fire_at = cron.next_after(now);
            }
            record.updated_at = now;
            let expected = record.version;
            match self
                .inner
                .store
                .put_schedule(tenant, &record, Some(expected))
                .await
            {
                Ok(v) => {
                    record.version = v;
                    self.inner.schedules_changed.notify_one();
                    return Ok(record);
                }
                // Fired meanwhile: read it again and reapply.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Store(StoreError::Io(format!(
            "schedule '{name}' kept changing; the change was not written"
        ))))
    }

    /// `tenant`'s schedule `name`.
    pub async fn schedule(&self, tenant: &str, name: &str) -> Result<ScheduleRecord, EngineError> {
        self.inner
            .store
            .schedule(tenant, name)
            .await?
            .ok_or_else(|| EngineError::UnknownSchedule(name.to_owned()))
    }

    /// `tenant`'s schedules, by name.
    pub async fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>, EngineError> {
        Ok(self.inner.store.schedules_of(tenant).await?)
    }

    /// Removes `tenant`'s schedule `name` (its runs stay).
    pub async fn delete_schedule(&self, tenant: &str, name: &str) -> Result<(), EngineError> {
        if !self.inner.store.remove_schedule(tenant, name).await? {
            return Err(EngineError::UnknownSchedule(name.to_owned()));
        }
        Ok(())
    }

    /// The next `n` fire times of `record` (none while paused).
    pub fn upcoming_fires(&self, record: &ScheduleRecord, n: usize) -> Vec<Millis> {
        let Some(next) = record.next_fire_at else {
            return Vec::new();
        };
        match CronSchedule::parse(&record.spec.cron, &record.spec.timezone) {
            Ok(cron) => {
                let mut out = vec![next];
                out.extend(cron.upcoming(next, n.saturating_sub(1)));
                out
            }
            Err(_) => Vec::new(),
        }
    }

    /// Fires every due schedule; returns when the next one is due.
    pub async fn fire_due_schedules(&self) -> Result<Option<Millis>, EngineError> {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        let mut next: Option<Millis> = None;
        let mut earliest = |at: Option<Millis>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for (tenant, record) in store.all_schedules().await? {
            let Some(at) = record.next_fire_at.filter(|_| !record.spec.paused) else {
                continue;
            };
            if at > now {
                earliest(Some(at));
                continue;
            }
            let name = record.name.clone();
            match self.fire_schedule(&tenant, record, now).await {
                Ok(after) => earliest(after),
                Err(e) => {
                    tracing::warn!(tenant, schedule = %name, error = %e, "schedule pass failed; tried again");
                    earliest(Some(now.saturating_add(1_000)));
                }
            }
        }
        Ok(next)
    }

    /// Enqueues `record`'s fires due at `now` and stores its next fire time; returns it.
    async fn fire_schedule(
        &self,
        tenant: &str,
        mut record: ScheduleRecord,
        now: Millis,
    ) -> Result<Option<Millis>, EngineError> {
        let Some(next) = record.next_fire_at else {
            return Ok(None);
        };
        let cron = CronSchedule::parse(&record.spec.cron, &record.spec.timezone)
            .map_err(|e| invalid(e.to_string()))?;
        let policy = match record.spec.catch_up {
            CatchUp::None => stepwise_schedule::CatchUp::None,
            CatchUp::Latest => stepwise_schedule::CatchUp::Latest,
            CatchUp::All => stepwise_schedule::CatchUp::All(record.spec.catch_up_limit as usize),
        };
        let due = due_fires(&cron, next, now, policy);
        let metrics = &self.inner.metrics;
        for at in &due.skipped {
            metrics.record_schedule(FireOutcome::SkippedMissed);
            record.note(ScheduleFire {
                at: *at,
                outcome: FireOutcome::SkippedMissed,
                run: None,
                error: None,
            });
        }
        for at in due.fire {
            let fire = self.fire_once(tenant, &record, at).await?;
            metrics.record_schedule(fire.outcome);
            record.note(fire);
        }
        record.next_fire_at = due.next;
        record.updated_at = now;
        let expected = record.version;
        match self
            .inner
            .store
            .put_schedule(tenant, &record, Some(expected))
            .await
        {
            Ok(_) => Ok(record.next_fire_at),
            // Changed meanwhile (paused, retimed): the next pass reads it again, and fires
            // enqueued here are found again by their keys.
            Err(StoreError::Conflict { .. }) => Ok(Some(now)),
            Err(e) => Err(e.into()),
        }
    }

    /// One fire of `record` at `at`, under its overlap policy.
    async fn fire_once(
        &self,
        tenant: &str,
        record: &ScheduleRecord,
        at: Millis,
    ) -> Result<ScheduleFire, EngineError> {
        let spec = &record.spec;
        if spec.overlap != Overlap::Allow
            && let Some(previous) = record.last_run()
            && let Some(run) = self.inner.store.run(previous).await?
            && !run.status.is_final()
        {
            if spec.overlap == Overlap::Skip {
                return Ok(ScheduleFire {
                    at,
                    outcome: FireOutcome::SkippedOverlap,
                    run: None,
                    error: None,
                });
            }
            let who = format!("schedule '{}'", record.name);
            match self
                .cancel_for(tenant, previous, &who, Some("a newer fire replaced it"))
                .await
            {
                Ok(_) | Err(EngineError::NotCancellable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let request = NewRun {
            tenant: tenant.to_owned(),
            queue: spec.queue.clone(),
            job: spec.job.clone(),
            payload: spec.payload.to_string(),
            module: None,
            overrides: spec.overrides,
            run_at: None,
            delay_ms: None,
            priority: spec.priority,
            // The schedule's creation keeps a re-created schedule of the same name apart.
            idempotency_key: Some(format!(
                "~schedule:{}:{}:{at}",
                record.name, record.created_at
            )),
            keyed: None,
            rate_key: None,
            origin: Some(format!(
                "fired by schedule '{}' for {}",
                record.name,
                stepwise_core::time_fmt::rfc3339(at)
            )),
        };
        let (run, error) = match self.enqueue(request).await {
            Ok(enqueued) => (Some(enqueued.run.id), None),
            // The fire was enqueued before a crash, with the schedule as it was then.
            Err(EngineError::IdempotencyConflict { run, .. }) => (Some(run), None),
            Err(e @ EngineError::Store(_)) => return Err(e),
            Err(e) => (None, Some(e.to_string())),
        };
        let outcome = if run.is_some() {
            FireOutcome::Fired
        } else {
            FireOutcome::Failed
        };
        if let Some(error) = &error {
            tracing::warn!(tenant, schedule = %record.name, at, %error, "a schedule's fire was refused");
        }
        Ok(ScheduleFire {
            at,
            outcome,
            run,
            error,
        })
    }

    /// Fires schedules as they come due until `stop` is set; a schedule change wakes it.
    pub async fn run_schedules(&self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            let now = self.inner.clock.now();
            let next = match self.fire_due_schedules().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "schedule pass failed");
                    Some(now.saturating_add(1_000))
                }
            };
            let until = next
                .unwrap_or(Millis::MAX)
                .min(now.saturating_add(MAX_PASS_GAP_MS));
            tokio::select! {
                _ = self.inner.clock.sleep_until(until) => {}
                _ = self.inner.schedules_changed.notified() => {}
            }
        }
    }
}
