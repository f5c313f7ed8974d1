//! The seam between [`Ctx`](crate::Ctx) and the host's imports.
//!
//! `Ctx` talks to a [`Host`] rather than to the generated bindings directly, so the replay logic
//! can be unit-tested natively against a fake journal: off wasm, the generated imports are stubs
//! that cannot be called.

use crate::__bindings::stepwise::jobs::{log, secrets, steps, types};
use crate::error::{ErrorKind, JobError, duration_to_ms};

/// The host's answer to the start of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StepState {
    /// Recorded in an earlier attempt: the step's JSON output.
    Completed(String),
    /// Not yet completed: run it; this is the step's attempt number, from 1.
    Run(u32),
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The imports of the `handler` world, as `Ctx` uses them.
pub(crate) trait Host {
    fn begin(&self, name: &str) -> StepState;
    fn succeed(&self, name: &str, output: &str);
    fn fail(&self, name: &str, error: &JobError);
    fn sleep(&self, name: &str, duration_ms: u64);
    fn log(&self, level: Level, message: &str);
    /// A readable secret's value, or the host's reason for refusing it.
    fn secret(&self, name: &str) -> Result<String, String> {
        let _ = name;
        Err("this host holds no secrets".into())
    }
}

/// The real host, through the generated imports.
pub(crate) struct WitHost;

impl Host for WitHost {
    fn begin(&self, name: &str) -> StepState {
        match steps::begin(name) {
            steps::StepState::Completed(output) => StepState::Completed(output),
            steps::StepState::Run(attempt) => StepState::Run(attempt),
        }
    }

    fn succeed(&self, name: &str, output: &str) {
        steps::succeed(name, output);
    }

    fn fail(&self, name: &str, error: &JobError) {
        steps::fail(name, &error.clone().into());
    }

    fn sleep(&self, name: &str, duration_ms: u64) {
        steps::sleep(name, duration_ms);
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::write(level, message);
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        secrets::read(name)
    }
}

impl From<JobError> for types::JobError {
    fn from(error: JobError) -> Self {
        let kind = match error.kind() {
            ErrorKind::Retryable => types::ErrorKind::Retryable,
            ErrorKind::NonRetryable => types::ErrorKind::NonRetryable,
            ErrorKind::RetryAfter(delay) => types::ErrorKind::RetryAfter(duration_to_ms(delay)),
        };
        types::JobError {
            kind,
            message: error.message().to_owned(),
        }
    }
}
