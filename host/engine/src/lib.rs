//! # stepwise-engine
//!
//! Creating runs, executing their attempts, settling outcomes, manual retry, tenants and the
//! views a user inspects. It ties the runtime (`stepwise-runtime`) to any storage backend
//! (`stepwise_store::Store`) through the injected clock and jitter.

mod attempt;
mod cancel;
mod egress;
mod enqueue;
mod events;
pub mod journal;
mod limits;
mod manual;
mod metrics;
pub mod native;
mod outcome;
mod rate_limits;
mod scheduler;
mod schedules;
mod secret_settings;
pub mod secrets;
mod tenants;
#[cfg(test)]
mod testing;
mod throughput;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::secrets::{Secrets, SecretsConfig, SecretsError};
pub use cancel::{BulkCancelled, MAX_BULK_CANCEL};
pub use enqueue::{EnqueueOutcome, Enqueued, Keyed, NewRun, RunFilter, RunPage};
pub use enqueue::{check_name, check_queue_name};
pub use events::{EventLimits, ListedEvent, MAX_LISTED_DELIVERIES, SendEvent, Sent};
use journal::JournalLimits;
pub use limits::{TenantLimits, TenantSettings, default_memory_budget};
pub use metrics::{EngineMetrics, TenantUse};
pub use rate_limits::RateHold;
pub use schedules::SchedulePatch;
use stepwise_core::clock::{Clock, Jitter};
use stepwise_core::model::{RunStatus, RunView, ViewMore};
use stepwise_core::policy::{Caps, Policy, PolicyError};
use stepwise_runtime::egress::{Egress, EgressConfig, EgressSetupError};
use stepwise_runtime::{CancelFlag, LoadError, LoadedModule, Runtime, RuntimeConfig, RuntimeError};
pub use stepwise_store::EventFilter;
use stepwise_store::{QueueSettings, Store, StoreError};
pub use tenants::{NewTenant, QueueCounts};
pub use throughput::{LastHour, MINUTES, Minute};

/// Engine settings. Every default is stated on [`EngineConfig::default`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The runtime's limits and caches.
    pub runtime: RuntimeConfig,
    /// The host's default policy, under each job's own defaults.
    pub default_policy: Policy,
    /// Attempts executing at once.
    pub concurrency: usize,
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Limits on step outputs and logs per attempt.
    pub journal: JournalLimits,
    /// How long an idempotency key is kept after its run ends, in milliseconds.
    pub idempotency_retention_ms: u64,
    /// Per-tenant slot limits, weights and quotas.
    pub tenants: TenantLimits,
    /// Most memory the running attempts may have, the sum of their memory caps, in bytes.
    pub memory_budget_bytes: u64,
    /// The operator's outbound HTTP policy: private addresses, extra CA, per-attempt caps.
    pub egress: EgressConfig,
    /// The keys that seal tenants' secrets (none: secrets unavailable).
    pub secrets: SecretsConfig,
    /// Event retention and limits.
    pub events: EventLimits,
}

impl Default for EngineConfig {
    /// [`RuntimeConfig::default`],
    /// [`Policy::default`], 64 concurrent attempts, 1 MiB payloads, [`JournalLimits::default`],
    /// idempotency keys kept 24 h after their run ends, [`TenantLimits::default`], a
    /// memory budget of half the machine's memory ([`default_memory_budget`]) and
    /// [`EgressConfig::default`] (no private addresses), no secrets key and
    /// [`EventLimits::default`].
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            default_policy: Policy::default(),
            concurrency: 64,
            max_payload_bytes: 1 << 20,
            journal: JournalLimits::default(),
            idempotency_retention_ms: 24 * 60 * 60 * 1_000,
            tenants: TenantLimits::default(),
            memory_budget_bytes: default_memory_budget(),
            egress: EgressConfig::default(),
            secrets: SecretsConfig::default(),
            events: EventLimits::default(),
        }
    }
}

/// Why an engine operation was refused or failed. Each case names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The component could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The operator's egress settings are unusable (a bad CA file).
    #[error(transparent)]
    EgressSetup(#[from] EgressSetupError),
    /// A secrets operation failed (no key configured, a bad secret, a value that no longer
    /// opens).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// No secret with this name exists.
    #[error("unknown secret '{0}'")]
    UnknownSecret(String),
    /// A tenant's egress settings were refused; nothing was stored.
    #[error("invalid egress settings: {0}")]
    InvalidEgress(String),
    /// The module does not offer the job.
    #[error("unknown job '{job}': the module offers {}", available.join(", "))]
    UnknownJob {
        /// The job asked for.
        job: String,
        /// The jobs the module offers.
        available: Vec<String>,
    },
    /// No module with this hash is stored.
    #[error("unknown module '{0}'")]
    UnknownModule(String),
    /// No run with this id exists.
    #[error("unknown run '{0}'")]
    UnknownRun(String),
    /// The payload is not JSON.
    #[error("payload is not valid JSON: {0}")]
    InvalidPayload(String),
    /// The payload is larger than allowed.
    #[error("payload is {size} bytes, over the {limit}-byte limit")]
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A policy override is out of range.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The idempotency key is held by a run created from a different request.
    #[error(
        "idempotency key '{key}' is already used by run '{run}', created with a different {}",
        differs.join(", ")
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The run holding it.
        run: String,
        /// What differs from the request that created it: `job`, `payload`, `max_attempts`,
        /// `backoff`, `timeout_ms`, `fuel`, `memory_bytes`, `priority`.
        differs: Vec<&'static str>,
    },
    /// A pending run holds the key and the enqueue asked `on_duplicate: reject`.
    #[error("run '{run}' is pending under key '{key}' (on_duplicate: reject)")]
    PendingRunExists {
        /// The key.
        key: String,
        /// The pending run.
        run: String,
    },
    /// The tenant sent more enqueue requests than the operator allows; try again after
    /// `retry_after_ms`.
    #[error("tenant '{tenant}' is over its enqueue rate of {limit}; retry in {retry_after_ms} ms")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// The limit, as `N per interval`.
        limit: String,
        /// When a request may be admitted again, from now.
        retry_after_ms: u64,
    },
    /// Only a run that has not ended can be cancelled.
    #[error("run '{run}' is {} and cannot be cancelled", status.as_str())]
    NotCancellable {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
    /// An event's name, correlation key or id breaks its rule.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// An event with this id was sent before with another name, key or payload.
    #[error(
        "event id '{id}' was already used for an event with a different name, correlation key or payload"
    )]
    EventConflict {
        /// The id.
        id: String,
    },
    /// A schedule's expression, zone or options are unusable.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// A schedule of this name exists.
    #[error("schedule '{0}' already exists")]
    ScheduleExists(String),
    /// No schedule of this name exists.
    #[error("unknown schedule '{0}'")]
    UnknownSchedule(String),
    /// A tenant with this name exists.
    #[error("tenant '{0}' already exists")]
    TenantExists(String),
    /// A tenant, queue or job name breaks its rule.
    #[error("invalid name '{name}': {error}")]
    InvalidName {
        /// The name as given (its first 200 bytes).
        name: String,
        /// The rule it broke.
        error: stepwise_core::names::NameError,
    },
    /// An idempotency key is empty, too long, or has a control character.
    #[error("invalid idempotency key: must be 1-256 bytes with no control characters")]
    InvalidIdempotencyKey,
    /// A tenant quota would be exceeded; nothing was stored.
    #[error("tenant '{tenant}' is at its quota of {limit} {what} ({used} in use)")]
    QuotaExceeded {
        /// The tenant.
        tenant: String,
        /// What the quota counts: `waiting runs`, `modules`, `module bytes`.
        what: &'static str,
        /// The quota.
        limit: u64,
        /// What is in use.
        used: u64,
    },
    /// Only failed runs can be retried by hand.
    #[error("run '{run}' is {}, only failed runs can be retried", status.as_str())]
    NotFailed {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
}

struct Inner {
    store: Arc<dyn Store>,
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    config: EngineConfig,
    wake: Notify,
    /// Wakes the schedule loop after a schedule changed.
    schedules_changed: Notify,
    /// Per-queue settings by (tenant, queue), kept in memory for the scheduler.
    queues: Mutex<HashMap<(String, String), QueueSettings>>,
    metrics: EngineMetrics,
    /// Runs that ended per queue and minute, for the dashboard's charts.
    throughput: throughput::Throughput,
    egress: Arc<Egress>,
    secrets: Secrets,
    natives: Mutex<HashMap<String, Arc<dyn native::NativeHandler>>>,
    /// Every attempt executing now, by run: its cancel flag and what it is doing.
    cancels: Mutex<HashMap<String, LiveAttempt>>,
    /// Runs cancelled while claimed but before their attempt registered its flag: the
    /// attempt stops as soon as it registers (or never starts).
    pending_cancels: Mutex<std::collections::HashSet<String>>,
    /// Queue start and tenant enqueue rate limits.
    rate_limits: rate_limits::RateLimits,
}

/// An attempt executing now, as [`Engine::executing`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executing {
    /// The attempt's number.
    pub attempt: u32,
    /// The step it is in, if it is in one.
    pub step: Option<String>,
}

/// What the engine keeps about an attempt while it executes.
struct LiveAttempt {
    cancel: CancelFlag,
    attempt: u32,
    step: journal::LiveStep,
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .finish()
    }
}

impl Engine {
    /// An engine over `store`: starts the runtime and loads the tenants' egress settings,
    /// secrets and queue settings.
    pub async fn new(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        jitter: Arc<dyn Jitter>,
    ) -> Result<Self, EngineError> {
        let runtime = Runtime::new(config.runtime.clone())?;
        let egress = Arc::new(Egress::new(config.egress.clone())?);
        let secrets = Secrets::new(config.secrets.keys()?);
        for (tenant, records) in store.secrets_all().await? {
            // A store whose key is missing or wrong still opens: those tenants' secrets stay
            // unavailable (requests naming them are refused) and the log says why.
            if let Err(e) = secrets.install(&tenant, &records) {
                tracing::error!(tenant = %tenant, error = %e, "stored secrets unavailable");
            }
        }
        for (tenant, settings) in store.egress_all().await? {
            // Stored settings were checked when written; a cap lowered since then clamps them
            // at each attempt, and a rule that no longer parses is dropped with a warning.
            if let Err(e) = egress.install(&tenant, &settings) {
                tracing::warn!(tenant = %tenant, error = %e, "stored egress settings refused");
            }
        }
        let queues = store
            .queues()
            .await?
            .into_iter()
            .map(|(t, q, s)| ((t, q), s))
            .collect();
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                clock,
                jitter,
                config,
                wake: Notify::new(),
                schedules_changed: Notify::new(),
                queues: Mutex::new(queues),
                metrics: EngineMetrics::default(),
                throughput: throughput::Throughput::default(),
                egress,
                secrets,
                natives: Mutex::default(),
                cancels: Mutex::default(),
                pending_cancels: Mutex::default(),
                rate_limits: rate_limits::RateLimits::default(),
            }),
        };
        // Work another host made due wakes the scheduler as a local enqueue does; settings
        // another host changed are read again.
        let weak = Arc::downgrade(&engine.inner);
        engine
            .inner
            .store
            .set_waker(Arc::new(move |wake: stepwise_store::Wake| {
                let Some(inner) = weak.upgrade() else { return };
                match wake {
                    stepwise_store::Wake::Work => inner.wake.notify_one(),
                    stepwise_store::Wake::Settings(tenant) => {
                        let engine = Engine { inner };
                        tokio::spawn(async move {
                            if let Err(e) = engine.reload_settings(&tenant).await {
                                tracing::error!(tenant = %tenant, error = %e, "settings changed by another host could not be read");
                            }
                        });
                    }
                    stepwise_store::Wake::AllSettings => {
                        let engine = Engine { inner };
                        tokio::spawn(async move {
                            if let Err(e) = engine.reload_all_settings().await {
                                tracing::error!(error = %e, "settings could not be read again");
                            }
                        });
                    }
                }
            }));
        Ok(engine)
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Counters of the work done since the engine opened.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Runs of `tenant`'s `queue` that ended in each minute of the last hour, as this engine
    /// saw them since it opened.
    pub fn throughput(&self, tenant: &str, queue: &str) -> LastHour {
        self.inner
            .throughput
            .last_hour(tenant, queue, self.inner.clock.now())
    }

    /// Final runs left off the throughput charts because every chart was live.
    pub fn throughput_untracked(&self) -> u64 {
        self.inner.throughput.untracked()
    }

    /// Counts a run of `tenant`'s `queue` that just became `status`, a final one.
    fn finished(&self, tenant: &str, queue: &str, status: RunStatus) {
        self.inner.metrics.record_finished();
        self.inner
            .throughput
            .record(tenant, queue, status, self.inner.clock.now());
    }

    /// The WebAssembly runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// A journal for attempt `attempt` of a run `id` that has nothing recorded.
    pub fn empty_journal(&self, id: &str, attempt: u32) -> journal::Journal {
        journal::Journal::empty(
            self.inner.store.clone(),
            self.inner.clock.clone(),
            id,
            attempt,
            self.inner.config.journal,
        )
    }

    /// Whether an attempt of run `id` is executing now.
    pub async fn is_running(&self, id: &str) -> Result<bool, EngineError> {
        Ok(self.inner.store.is_claimed(id).await?)
    }

    /// Now, on the engine's clock.
    pub fn now(&self) -> stepwise_core::clock::Millis {
        self.inner.clock.now()
    }

    /// The attempt of run `id` this process is executing now, if any: its number and the
    /// step it is in.
    pub fn executing(&self, id: &str) -> Option<Executing> {
        let live = self.inner.cancels.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id).map(|a| Executing {
            attempt: a.attempt,
            step: a.step.get(),
        })
    }

    /// Stops the attempt of run `id` executing now, if any, at the guest's next host call or
    /// epoch tick; nothing it does afterwards is recorded, and the attempt settles nothing.
    /// Returns whether an attempt was executing. (The run's next state is the canceller's to
    /// write.)
    pub fn cancel_attempt(&self, id: &str) -> bool {
        let cancels = self.inner.cancels.lock().unwrap_or_else(|e| e.into_inner());
        match cancels.get(id) {
            Some(live) => {
                live.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops run `id`'s attempt now, or, when it is claimed but its attempt has not yet
    /// registered, as soon as it does. (Checked under the flags' lock, so an attempt that
    /// registers meanwhile is not missed.)
    pub(crate) async fn cancel_claimed(&self, id: &str) -> Result<bool, EngineError> {
        let claimed = self.inner.store.is_claimed(id).await?;
        let cancels = self.inner.cancels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = cancels.get(id) {
            live.cancel.cancel();
            return Ok(true);
        }
        if claimed {
            self.inner
                .pending_cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_owned());
        }
        Ok(false)
    }

    fn caps(&self) -> &Caps {
        &self.inner.config.runtime.caps
    }

    /// Validates a component, stores it content-addressed and returns it with its jobs.
    pub async fn deploy(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, EngineError> {
        self.deploy_hashed(bytes, Runtime::hash(bytes)).await
    }

    /// [`Engine::deploy`] for bytes whose sha256 the caller already computed.
    pub(crate) async fn deploy_hashed(
        &self,
        bytes: &[u8],
        hash: String,
    ) -> Result<Arc<LoadedModule>, EngineError> {
        let module = self.inner.runtime.load_hashed(bytes, hash).await?;
        if self.inner.store.module(&module.hash).await?.is_none() {
            self.inner.store.put_module(&module.hash, bytes).await?;
        }
        Ok(module)
    }

    /// A deployed module, loaded from the store on first use.
    pub async fn module(&self, hash: &str) -> Result<Arc<LoadedModule>, EngineError> {
        if let Some(m) = self.inner.runtime.cached(hash) {
            return Ok(m);
        }
        let bytes = self
            .inner
            .store
            .module(hash)
            .await?
            .ok_or_else(|| EngineError::UnknownModule(hash.to_owned()))?;
        Ok(self.inner.runtime.load(&bytes).await?)
    }

    /// A run with all its steps, timeline and logs (local use: `stepwise run`, tests). The
    /// service shows [`Engine::view_page`].
    pub async fn view(&self, id: &str) -> Result<RunView, EngineError> {
        let store = &self.inner.store;
        let run = store
            .run(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        Ok(RunView {
            dead_lettered: store.is_dead_lettered(&run).await?,
            steps: store.steps_page(id, 0, usize::MAX).await?.0,
            timeline: store.timeline_page(id, 0, usize::MAX).await?.0,
            logs: store.logs_page(id, 0, usize::MAX).await?.0,
            children: self.first_children(&run).await?,
            more: None,
            run,
        })
    }

    /// A run with the first `limit` of its steps, timeline entries and log lines, and where
    /// each list continues: what one answer may hold is bounded whatever the run recorded.
    pub async fn view_page(&self, id: &str, limit: usize) -> Result<RunView, EngineError> {
        let store = &self.inner.store;
        let run = store
            .run(id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        let (steps, more_steps) = store.steps_page(id, 0, limit).await?;
        let (timeline, more_timeline) = store.timeline_page(id, 0, limit).await?;
        let (logs, more_logs) = store.logs_page(id, 0, limit).await?;
        let more = ViewMore {
            steps: more_steps,
            timeline: more_timeline,
            logs: more_logs,
        };
        Ok(RunView {
            dead_lettered: store.is_dead_lettered(&run).await?,
            steps,
            timeline,
            logs,
            children: self.first_children(&run).await?,
            more: (!more.is_empty()).then_some(more),
            run,
        })
    }

    /// The first children of `run`, as a view shows them.
    async fn first_children(
        &self,
        run: &stepwise_core::RunRecord,
    ) -> Result<Vec<String>, EngineError> {
        Ok(self
            .inner
            .store
            .child_ids(&run.id, stepwise_core::model::VIEW_CHILDREN)
            .await?)
    }
}
