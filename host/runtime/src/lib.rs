//! The WebAssembly runtime: one wasmtime `Engine` shared by every run, a cache of compiled and
//! pre-instantiated components, and the execution of one attempt in a fresh, limited `Store`.
//!
//! Limits of an attempt: fuel (deterministic instruction budget), a wall-clock deadline
//! (epoch interruption, which also makes long-running guests yield to the async runtime), and a
//! linear-memory cap (a `ResourceLimiter`). Instances come from the pooling allocator, so a
//! fresh instance per attempt costs microseconds.

mod attempt;
mod bindings;
mod component;
mod cpu;
pub mod egress;
mod host;
mod module_cache;
mod sandbox;
mod step_host;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use attempt::{
    AttemptOutcome, AttemptReport, CancelFlag, GuestError, HostFault, JobContext, Suspend,
};
pub use component::{JobSpec, LoadError, LoadedModule, WORLD};
use sandbox::HostState;
pub use step_host::{Awaiting, Recording, SendGate, StepHost};

use stepwise_core::policy::Caps;

/// How often the epoch ticker fires: the granularity of deadlines and of cooperative yields.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Hard caps; `memory_bytes` also sizes the pooling allocator's memory slots.
    pub caps: Caps,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Directory for wasmtime's compiled-code cache; `None` disables it.
    pub compile_cache: Option<PathBuf>,
    /// Bytes of stdout and of stderr kept per attempt; the rest is counted and dropped.
    pub capture_bytes: usize,
    /// Most bytes of compiled modules kept loaded in memory; the least recently used are
    /// dropped past it and reloaded on demand.
    pub module_cache_bytes: u64,
    /// Most bytes the on-disk compile cache keeps (a soft limit wasmtime's cache worker
    /// enforces by deleting the least recently used files).
    pub compile_cache_bytes: u64,
}

impl Default for RuntimeConfig {
    /// Default caps, 256 instances, no compile cache, 64 KiB of captured output per stream,
    /// 512 MiB of loaded modules, 1 GiB of compile cache on disk.
    fn default() -> Self {
        Self {
            caps: Caps::default(),
            max_instances: 256,
            compile_cache: None,
            capture_bytes: 64 << 10,
            module_cache_bytes: 512 << 20,
            compile_cache_bytes: 1 << 30,
        }
    }
}

/// A failure to set up the runtime itself.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly runtime: {0}")]
pub struct RuntimeError(String);

/// One load of a module, shared by everyone who asked for it while it ran.
type LoadCell = tokio::sync::OnceCell<Result<Arc<LoadedModule>, LoadError>>;

/// The shared runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    modules: Mutex<module_cache::ModuleCache>,
    /// Loads in progress, by hash: concurrent loads of one module (after a restart, every
    /// run of it at once) wait for the first instead of compiling it again.
    loading: Mutex<HashMap<String, Arc<LoadCell>>>,
    /// Components compiled (and described) since start.
    compilations: std::sync::atomic::AtomicU64,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per pooling-allocator slot for attempts: an attempt waits for a slot instead
    /// of failing to instantiate, so a full pool is never charged to the guest as a failure.
    slots: tokio::sync::Semaphore,
    /// Slots of their own for `describe` at deploy, so a deploy never waits behind attempts.
    describe_slots: tokio::sync::Semaphore,
    cpu: cpu::CpuGate,
}

/// Pool slots kept for `describe` calls, beside the attempts' slots.
const DESCRIBE_SLOTS: u32 = 4;

/// Memory a `describe` call may use: it only lists jobs.
const DESCRIBE_MEMORY_BYTES: u64 = 64 << 20;

/// Fuel a `describe` call may use.
const DESCRIBE_FUEL: u64 = 10_000_000_000;

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish()
    }
}

fn engine_config(config: &RuntimeConfig, pooling: bool) -> Result<Config, RuntimeError> {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20);
    if pooling {
        let n = config.max_instances.max(1).saturating_add(DESCRIBE_SLOTS);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 4)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(usize::try_from(config.caps.memory_bytes).unwrap_or(usize::MAX))
            // Resetting a slot by madvise and faulting its pages back in dominated the cost of
            // a fresh instance (profiled: page faults, unmaps, TLB shootdowns). Keep the first
            // pages resident and reset them in place; batch the rest of the decommits.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10)
            // Decommit what lies beyond the resident part as soon as an instance ends: batching
            // kept up to 16 slots' worth of a memory bomb's pages resident (measured: 2.6 GB
            // left after 20 sequential 512 MiB bombs with a batch of 16, ~100 MB with 1, for
            // ~0.5 µs more per instance).
            .decommit_batch_size(1)
            .pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    if let Some(dir) = &config.compile_cache {
        let mut cache = wasmtime::CacheConfig::new();
        cache
            .with_directory(dir)
            .with_files_total_size_soft_limit(config.compile_cache_bytes)
            .with_cleanup_interval(Duration::from_secs(60));
        let cache = wasmtime::Cache::new(cache).map_err(|e| RuntimeError(format!("{e:#}")))?;
        c.cache(Some(cache));
    }
    Ok(c)
}

impl Runtime {
    /// Builds the engine, the linker with our imports and WASI, and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = match Engine::new(&engine_config(&config, true)?) {
            Ok(engine) => engine,
            Err(e) => {
                // Some hosts refuse the large virtual reservations pooling needs; run slower
                // rather than not at all, and say so.
                tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand instances");
                Engine::new(&engine_config(&config, false)?)
                    .map_err(|e| RuntimeError(format!("{e:#}")))?
            }
        };
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        bindings::Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut HostState| state,
        )
        .map_err(|e| RuntimeError(format!("{e:#}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("stepwise-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError(e.to_string()))?;

        Ok(Self {
            engine,
            linker,
            modules: Mutex::default(),
            loading: Mutex::default(),
            compilations: std::sync::atomic::AtomicU64::new(0),
            slots: tokio::sync::Semaphore::new(config.max_instances.max(1) as usize),
            describe_slots: tokio::sync::Semaphore::new(DESCRIBE_SLOTS as usize),
            cpu: cpu::CpuGate::for_this_machine(),
            config,
            ticker_stop,
        })
    }

    /// The sha256 (hex) that identifies `bytes`.
    pub fn hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A module already loaded under `hash`.
    pub fn cached(&self, hash: &str) -> Option<Arc<LoadedModule>> {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
    }

    /// Validates, compiles and pre-instantiates a component, and learns its jobs. Loading the
    /// same bytes again returns the cached module.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, LoadError> {
        self.load_hashed(bytes, Self::hash(bytes)).await
    }

    /// [`Runtime::load`] for bytes whose [`Runtime::hash`] the caller already computed.
    /// Concurrent loads of one hash share one compilation and its result.
    pub async fn load_hashed(
        &self,
        bytes: &[u8],
        hash: String,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        if let Some(m) = self.cached(&hash) {
            return Ok(m);
        }
        let cell = self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hash.clone())
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| self.compile(bytes, hash.clone()))
            .await
            .clone();
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.get(&hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            loading.remove(&hash);
        }
        result
    }

    /// Components compiled since start (a load of a cached module, or one merged into a
    /// load in progress, compiles nothing).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    async fn compile(&self, bytes: &[u8], hash: String) -> Result<Arc<LoadedModule>, LoadError> {
        self.compilations.fetch_add(1, Ordering::Relaxed);
        component::check_header(bytes)?;
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        // Compilation takes CPU-seconds; keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let component = compiled.map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        component::check_world(&self.engine, &component)?;
        let pre = component::pre_instantiate(&self.linker, &component)?;
        let jobs = self.describe(&pre).await?;
        component::check_jobs(&jobs)?;
        let image = component.image_range();
        let compiled = (image.end as usize).saturating_sub(image.start as usize) as u64;
        let module = Arc::new(LoadedModule {
            hash,
            jobs,
            pre,
            size_bytes: compiled.max(bytes.len() as u64),
        });
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(module.clone(), self.config.module_cache_bytes);
        tracing::info!(module = %module.hash, jobs = ?module.job_names(), "loaded handler component");
        Ok(module)
    }

    async fn describe(
        &self,
        pre: &bindings::HandlerPre<HostState>,
    ) -> Result<Vec<JobSpec>, LoadError> {
        let caps = self.config.caps;
        let _slot = self
            .describe_slots
            .acquire()
            .await
            .expect("the describe semaphore is never closed");
        let mut store = attempt::new_store(
            &self.engine,
            HostState::new(
                None,
                crate::egress::EgressHooks::deny_all(),
                caps.memory_bytes.min(DESCRIBE_MEMORY_BYTES),
                self.config.capture_bytes,
            ),
            caps.fuel.min(DESCRIBE_FUEL),
            Duration::from_secs(10),
            None,
        )
        .map_err(|e| LoadError::Describe(format!("{e:#}")))?;
        let fail = |e: wasmtime::Error| LoadError::Describe(format!("{e:#}"));
        let instance = pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(fail)?;
        let handler = bindings::Handler::new(&mut store, &instance).map_err(fail)?;
        let specs = handler.call_describe(&mut store).await.map_err(fail)?;
        component::check_spec_count(specs.len())?;
        let mut jobs: Vec<JobSpec> = specs.into_iter().map(JobSpec::from).collect();
        // Optional: components built against 0.1.0 do not export it.
        type Needs = (Vec<(String, Vec<String>)>,);
        if let Ok(needs) = instance.get_typed_func::<(), Needs>(&mut store, component::EGRESS_NEEDS)
        {
            let (needs,) = needs.call_async(&mut store, ()).await.map_err(fail)?;
            component::attach_needs(&mut jobs, needs)?;
        }
        Ok(jobs)
    }

    /// (modules, bytes) held in the loaded-module cache.
    pub fn cache_usage(&self) -> (usize, u64) {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .usage()
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Waits for a free instance slot; held for the life of one `Store`.
    pub(crate) async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed")
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
