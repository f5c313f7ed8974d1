//! Native handlers: job logic written as plain Rust, run by the same engine, store, scheduler
//! and step journal as components. It exists for one purpose — the benchmarks' `--native`
//! baseline, which makes the sandbox's cost a ratio measured in one run — and is not exposed
//! through the service: tenants only ever deploy components.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::journal::{Journal, StepInterrupt, Suspend};
use super::{Engine, EngineError};
use crate::journal::StepState;
use stepwise_core::model::FailureKind;
use stepwise_runtime::{AttemptOutcome, AttemptReport, GuestError, JobSpec, LoadedModule};

/// Module ids of native handlers start with this prefix (never a sha256).
pub const NATIVE_PREFIX: &str = "native:";

/// How a native job's attempt ended early.
#[derive(Debug)]
pub enum NativeError {
    /// The job (or a step) failed, as a guest would report it.
    Failed(GuestError),
    /// The run suspended on a durable timer.
    Suspended(Suspend),
    /// The step protocol or storage failed.
    Fault(String),
}

/// The future a native handler returns: its result and the journal handed back.
pub type NativeFuture =
    Pin<Box<dyn Future<Output = (Result<String, NativeError>, Journal)> + Send>>;

/// A set of native jobs.
pub trait NativeHandler: Send + Sync + 'static {
    /// The jobs offered, as a component's `describe` would list them.
    fn jobs(&self) -> Vec<JobSpec>;
    /// One attempt of `job` with its JSON payload.
    fn run(&self, journal: Journal, job: String, payload: String) -> NativeFuture;
}

/// The step calls of a native job, through the same journal a component's calls go through.
pub struct NativeCtx {
    journal: Journal,
}

impl NativeCtx {
    /// Wraps an attempt's journal.
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// Hands the journal back.
    pub fn into_journal(self) -> Journal {
        self.journal
    }

    /// A memoized step: replayed from the journal once completed, otherwise run with its
    /// attempt number and recorded (durably) before returning.
    pub async fn step<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        f: impl FnOnce(u32) -> Result<T, GuestError>,
    ) -> Result<T, NativeError> {
        let fault = |e: &dyn std::fmt::Display| NativeError::Fault(e.to_string());
        match self.journal.begin(name).map_err(|e| fault(&e))? {
            StepState::Completed(json) => serde_json::from_str(&json).map_err(|e| fault(&e)),
            StepState::Run(attempt) => match f(attempt) {
                Ok(value) => {
                    let json = serde_json::to_string(&value).map_err(|e| fault(&e))?;
                    self.journal
                        .succeed(name, json)
                        .await
                        .map_err(|e| fault(&e))?;
                    Ok(value)
                }
                Err(e) => {
                    self.journal.fail(name, &e).map_err(|e| fault(&e))?;
                    Err(NativeError::Failed(e))
                }
            },
        }
    }

    /// A durable sleep.
    pub fn sleep(&mut self, name: &str, ms: u64) -> Result<(), NativeError> {
        self.journal.sleep(name, ms).map_err(|e| match e {
            StepInterrupt::Suspend(s) => NativeError::Suspended(s),
            StepInterrupt::Fault(f) => NativeError::Fault(f.to_string()),
            StepInterrupt::Cancelled => NativeError::Fault("the run was cancelled".into()),
        })
    }

    /// A log line, as `ctx.log_info` writes it.
    pub fn log(&mut self, message: &str) {
        self.journal.log(
            stepwise_core::model::LogLevel::Info,
            stepwise_core::model::LogSource::Guest,
            message.to_owned(),
        );
    }
}

/// What runs a run's attempts: a component or a native handler.
#[derive(Clone)]
pub(crate) enum Handler {
    Wasm(Arc<LoadedModule>),
    Native(Arc<dyn NativeHandler>),
}

impl Handler {
    pub(crate) fn job(&self, name: &str) -> Option<JobSpec> {
        match self {
            Self::Wasm(m) => m.job(name).cloned(),
            Self::Native(n) => n.jobs().into_iter().find(|j| j.name == name),
        }
    }

    pub(crate) fn job_names(&self) -> Vec<String> {
        match self {
            Self::Wasm(m) => m.job_names(),
            Self::Native(n) => n.jobs().into_iter().map(|j| j.name).collect(),
        }
    }
}

/// Runs one native attempt and reports it like a component's.
pub(crate) async fn execute(
    handler: &dyn NativeHandler,
    journal: Journal,
    job: String,
    payload: String,
) -> (AttemptReport, Journal) {
    let started = Instant::now();
    let (result, journal) = handler.run(journal, job, payload).await;
    let outcome = match result {
        Ok(output) => AttemptOutcome::Completed(output),
        Err(NativeError::Failed(e)) => AttemptOutcome::Failed(e),
        Err(NativeError::Suspended(s)) => AttemptOutcome::Suspended { wake: s.wake },
        Err(NativeError::Fault(message)) => AttemptOutcome::Trapped {
            kind: FailureKind::Trap,
            message,
        },
    };
    let report = AttemptReport {
        outcome,
        fuel_used: 0,
        elapsed: started.elapsed(),
    };
    (report, journal)
}

impl Engine {
    /// Registers a native handler under `native:<name>`; returns that module id.
    pub fn register_native(&self, name: &str, handler: Arc<dyn NativeHandler>) -> String {
        let id = format!("{NATIVE_PREFIX}{name}");
        self.inner
            .natives
            .lock()
            .expect("native handlers")
            .insert(id.clone(), handler);
        id
    }

    /// The handler behind a module id: a registered native handler, or a deployed component.
    pub(crate) async fn handler(&self, module: &str) -> Result<Handler, EngineError> {
        if module.starts_with(NATIVE_PREFIX) {
            return self
                .inner
                .natives
                .lock()
                .expect("native handlers")
                .get(module)
                .cloned()
                .map(Handler::Native)
                .ok_or_else(|| EngineError::UnknownModule(module.to_owned()));
        }
        Ok(Handler::Wasm(self.module(module).await?))
    }
}
