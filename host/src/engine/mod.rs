//! The engine: creating runs, executing their attempts, settling outcomes, manual retry, and
//! the views a user inspects. It ties the runtime (wasmtime) to the store (redb) through the
//! injected clock and jitter.

pub mod journal;
mod outcome;
mod scheduler;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::{Clock, Jitter, Millis};
use crate::model::{EventKind, RunRecord, RunStatus, RunView, TimelineEntry};
use crate::policy::{Caps, Policy, PolicyError, PolicyOverrides};
use crate::runtime::{LoadError, LoadedModule, Runtime, RuntimeConfig, RuntimeError};
use crate::store::{Batch, Durability, Store, StoreError};
use journal::JournalLimits;

/// Engine settings. Every default is stated on [`EngineConfig::default`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// What an acknowledged write promises.
    pub durability: Durability,
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
}

impl Default for EngineConfig {
    /// Immediate durability, [`RuntimeConfig::default`], [`Policy::default`], 64 concurrent
    /// attempts, 1 MiB payloads, [`JournalLimits::default`].
    fn default() -> Self {
        Self {
            durability: Durability::Immediate,
            runtime: RuntimeConfig::default(),
            default_policy: Policy::default(),
            concurrency: 64,
            max_payload_bytes: 1 << 20,
            journal: JournalLimits::default(),
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
    /// Only failed runs can be retried by hand.
    #[error("run '{run}' is {}, only failed runs can be retried", status.as_str())]
    NotFailed {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
}

/// A request to create a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// sha256 of a deployed module.
    pub module: String,
    /// The job to run.
    pub job: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// The queue it belongs to.
    pub queue: String,
    /// Policy overrides for this run.
    pub overrides: PolicyOverrides,
    /// Earliest start; now when absent.
    pub run_at: Option<Millis>,
}

struct Inner {
    store: Arc<Store>,
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    config: EngineConfig,
    wake: Notify,
    inflight: Mutex<HashSet<String>>,
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

/// A new time-ordered run id.
fn new_run_id() -> String {
    format!("run_{}", uuid::Uuid::now_v7().simple())
}

impl Engine {
    /// Opens the store in `data_dir` and starts the runtime.
    pub fn open(
        data_dir: &Path,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        jitter: Arc<dyn Jitter>,
    ) -> Result<Self, EngineError> {
        let store = Arc::new(Store::open(data_dir, config.durability)?);
        let runtime = Runtime::new(config.runtime.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                clock,
                jitter,
                config,
                wake: Notify::new(),
                inflight: Mutex::default(),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn caps(&self) -> &Caps {
        &self.inner.config.runtime.caps
    }

    /// Validates a component, stores it content-addressed and returns it with its jobs.
    pub async fn deploy(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, EngineError> {
        let module = self.inner.runtime.load(bytes).await?;
        if self.inner.store.module(&module.hash)?.is_none() {
            let mut batch = Batch::new();
            batch.put_module(&module.hash, bytes);
            self.inner.store.commit(batch).await?;
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
            .module(hash)?
            .ok_or_else(|| EngineError::UnknownModule(hash.to_owned()))?;
        Ok(self.inner.runtime.load(&bytes).await?)
    }

    /// Creates a run. Nothing is stored unless every check passes.
    pub async fn enqueue(&self, req: NewRun) -> Result<RunRecord, EngineError> {
        let limit = self.inner.config.max_payload_bytes;
        if req.payload.len() > limit {
            return Err(EngineError::PayloadTooLarge {
                size: req.payload.len(),
                limit,
            });
        }
        let payload: Value = serde_json::from_str(&req.payload)
            .map_err(|e| EngineError::InvalidPayload(e.to_string()))?;
        let module = self.module(&req.module).await?;
        let spec = module
            .job(&req.job)
            .ok_or_else(|| EngineError::UnknownJob {
                job: req.job.clone(),
                available: module.job_names(),
            })?;
        req.overrides.validate(self.caps())?;
        let job_policy = self
            .caps()
            .clamp(spec.policy.over(self.inner.config.default_policy));
        let policy = req.overrides.over(job_policy);
        let now = self.inner.clock.now();
        let ready_at = req.run_at.unwrap_or(now);
        let run = RunRecord {
            id: new_run_id(),
            job: req.job,
            queue: req.queue,
            module: module.hash.clone(),
            payload,
            policy,
            overrides: req.overrides,
            status: RunStatus::Queued,
            attempts: 0,
            body_failures: 0,
            body_budget_base: 0,
            ready_at: Some(ready_at),
            output: None,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        let created = TimelineEntry {
            at: now,
            kind: EventKind::Created,
            attempt: None,
            step: None,
            detail: format!("job '{}' on queue '{}'", run.job, run.queue),
        };
        let mut batch = Batch::new();
        batch
            .put_run(&run)
            .set_ready(&run.id, None, run.ready_at)
            .put_timeline(&run.id, 0, &created);
        self.inner.store.commit(batch).await?;
        tracing::info!(run = %run.id, job = %run.job, "run created");
        self.inner.wake.notify_one();
        Ok(run)
    }

    /// A run with its steps, timeline and logs.
    pub fn view(&self, id: &str) -> Result<RunView, EngineError> {
        let store = &self.inner.store;
        let run = store
            .run(id)?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        Ok(RunView {
            dead_lettered: store.is_dead_lettered(&run.queue, id)?,
            steps: store.steps(id)?,
            timeline: store.timeline(id)?,
            logs: store.logs(id)?,
            run,
        })
    }

    /// Retries a failed run by hand: the step (or body) that failed gets a fresh attempt budget,
    /// every completed step is reused. `module`, when given, replaces the run's module (the
    /// fixed version); it must offer the run's job.
    pub async fn retry(&self, id: &str, module: Option<&str>) -> Result<RunRecord, EngineError> {
        let store = &self.inner.store;
        let mut run = store
            .run(id)?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        if run.status != RunStatus::Failed {
            return Err(EngineError::NotFailed {
                run: id.to_owned(),
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
        let mut batch = Batch::new();
        let failed_step = run.error.as_ref().and_then(|e| e.step.clone());
        let detail = match &failed_step {
            Some(name) => {
                let mut steps = store.steps(id)?;
                if let Some(step) = steps.iter_mut().find(|s| &s.name == name) {
                    step.budget_base = step.attempts;
                    batch.put_step(id, step);
                }
                format!(
                    "step '{name}' gets a fresh budget of {}",
                    run.policy.max_attempts
                )
            }
            None => {
                run.body_budget_base = run.body_failures;
                format!(
                    "the job body gets a fresh budget of {}",
                    run.policy.max_attempts
                )
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
        };
        let seq = store.sequences(id)?.timeline;
        batch
            .put_run(&run)
            .set_ready(id, None, run.ready_at)
            .put_timeline(id, seq, &entry)
            .remove_dead_letter(&run.queue, id);
        store.commit(batch).await?;
        tracing::info!(run = %id, "manual retry");
        self.inner.wake.notify_one();
        Ok(run)
    }
}
