//! # stepwise
//!
//! The Stepwise host: runs job handlers — WebAssembly components built with `stepwise-sdk` —
//! with durable, memoized steps, per-step retries with exponential backoff and jitter, durable
//! sleeps, dead-lettering and manual retry, on an embedded redb store.
//!
//! Layers, each its own module:
//! - [`runtime`]: wasmtime — loading and checking components, one limited `Store` per attempt;
//! - [`engine`]: runs, attempts, outcome settlement, scheduling, manual retry;
//! - [`store`]: redb tables behind one narrow API with group commit;
//! - [`policy`], [`clock`], [`model`]: policies, injected time and randomness, the run records.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use stepwise::{Engine, EngineConfig, NewRun, SeededJitter, SystemClock};
//!
//! let engine = stepwise::open_engine(
//!     std::path::Path::new("./data"),
//!     stepwise::store::RedbOptions::default(),
//!     EngineConfig::default(),
//!     Arc::new(SystemClock),
//!     Arc::new(SeededJitter::from_entropy()),
//! )
//! .await?;
//! let module = engine.deploy(&std::fs::read("payments.wasm")?).await?;
//! let run = engine
//!     .enqueue(NewRun::local(
//!         &module.hash,
//!         "provision-after-payment",
//!         r#"{"payment_id":"pay_123"}"#,
//!     ))
//!     .await?
//!     .run;
//! let view = engine.run_to_end(&run.id).await?;
//! println!("{}", view.run.status.as_str());
//! # Ok(()) }
//! ```

pub mod bench;
pub mod cli;
pub mod dev;
pub mod examples;

pub use clock::{Clock, Jitter, ManualClock, Millis, NoJitter, SeededJitter, SystemClock};
pub use engine::{Engine, EngineConfig, EngineError, Enqueued, NewRun, RunFilter, RunPage};
pub use model::{FailureKind, RunRecord, RunStatus, RunView, StepRecord, StepStatus};
pub use policy::{Backoff, Caps, Policy, PolicyOverrides};
pub use runtime::{JobSpec, LoadError, LoadedModule, RuntimeConfig};
pub use stepwise_api as api;
pub use stepwise_core::{
    clock, flow, histogram, keyed, model, policy, rate, schedule, secret, text, time_fmt,
};
pub use stepwise_engine as engine;
pub use stepwise_engine::secrets;
pub use stepwise_runtime as runtime;
pub use stepwise_runtime::egress;
pub use stepwise_server as server;
pub use stepwise_store::{Durability, Store, StoreError};
pub use stepwise_store_redb as store;

/// An engine on the embedded store (one redb file in `data_dir`), the default backend.
pub async fn open_engine(
    data_dir: &std::path::Path,
    options: store::RedbOptions,
    config: EngineConfig,
    clock: std::sync::Arc<dyn Clock>,
    jitter: std::sync::Arc<dyn Jitter>,
) -> Result<Engine, EngineError> {
    let store =
        store::RedbStore::open_with_cache(data_dir, options.durability, options.cache_bytes)?;
    Engine::new(std::sync::Arc::new(store), config, clock, jitter).await
}
