//! Host bindings generated from the WIT package in `wit/` — the only place they are generated.
//!
//! Policy for what the guest sees: a step or job failure travels as a WIT `result`/record
//! (`job-error`), because the guest chose it. Host-side problems (storage failure, a step
//! protocol violation, an oversize output) and suspension (durable sleep) are traps that the
//! host owns: the guest never observes them, the attempt just ends.

// The host's own bindings come from `handler-core`; the `wasi:http` half of the `handler` world
// is linked from wasmtime-wasi-http, generated from the same vendored WIT (`wit/deps/http`).
wasmtime::component::bindgen!({
    world: "handler-core",
    path: "../../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use HandlerCore as Handler;
pub use HandlerCorePre as HandlerPre;
pub use stepwise::jobs::flows::Child;
pub use stepwise::jobs::log::Level;
pub use stepwise::jobs::steps::StepState;
pub use stepwise::jobs::types::{ErrorKind, JobPolicy};

/// The WIT `job-spec` record, named apart from the host's own [`crate::JobSpec`].
pub type WitJobSpec = JobSpec;

/// The generated host traits, implemented in [`super::host`].
pub(crate) mod host_traits {
    pub use super::stepwise::jobs::flows::Host as FlowsHost;
    pub use super::stepwise::jobs::log::Host as LogHost;
    pub use super::stepwise::jobs::secrets::Host as SecretsHost;
    pub use super::stepwise::jobs::steps::Host as StepsHost;
    pub use super::stepwise::jobs::types::Host as TypesHost;
}
