//! The seam between [`Ctx`](crate::Ctx) and the host's imports.
//!
//! `Ctx` talks to a [`Host`] rather than to the generated bindings directly, so the replay logic
//! can be unit-tested natively against a fake journal: off wasm, the generated imports are stubs
//! that cannot be called.

use crate::__bindings::stepwise::jobs::{flows, log, secrets, steps, types};
use crate::error::{ErrorKind, JobError, duration_to_ms};
use crate::flows::Child;

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
    /// An event's payload, or `None` after the timeout.
    fn wait_for_event(
        &self,
        name: &str,
        event: &str,
        key: Option<&str>,
        timeout_ms: u64,
    ) -> Option<String> {
        let _ = (name, event, key, timeout_ms);
        None
    }
    /// Children started and joined: their outputs.
    fn invoke(&self, name: &str, children: Vec<Child>) -> Result<Vec<String>, JobError> {
        let _ = children;
        Err(JobError::non_retryable(format!(
            "step '{name}': this host starts no child runs"
        )))
    }
    /// Children started: their run ids.
    fn spawn(&self, name: &str, children: Vec<Child>) -> Result<Vec<String>, JobError> {
        self.invoke(name, children)
    }
}

fn wit_children(children: Vec<Child>) -> Vec<flows::Child> {
    children
        .into_iter()
        .map(|c| flows::Child {
            job: c.job,
            payload: c.payload,
            options: flows::ChildOptions {
                queue: c.options.queue,
                priority: c.options.priority,
                delay_ms: c.options.delay_ms,
                policy: types::JobPolicy {
                    max_attempts: c.options.max_attempts,
                    backoff: c
                        .options
                        .backoff
                        .map(|(initial_ms, max_ms, multiplier, jitter)| types::Backoff {
                            initial_ms,
                            max_ms,
                            multiplier,
                            jitter,
                        }),
                    fuel: c.options.fuel,
                    timeout_ms: c.options.timeout_ms,
                    memory_bytes: c.options.memory_bytes,
                },
            },
        })
        .collect()
}

/// A failure the host answered, as the guest's own error type.
fn from_wit(e: types::JobError) -> JobError {
    match e.kind {
        types::ErrorKind::Retryable => JobError::retryable(e.message),
        types::ErrorKind::NonRetryable => JobError::non_retryable(e.message),
        types::ErrorKind::RetryAfter(ms) => {
            JobError::retry_after(std::time::Duration::from_millis(ms), e.message)
        }
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

    fn wait_for_event(
        &self,
        name: &str,
        event: &str,
        key: Option<&str>,
        timeout_ms: u64,
    ) -> Option<String> {
        flows::wait_for_event(name, event, key, timeout_ms)
    }

    fn invoke(&self, name: &str, children: Vec<Child>) -> Result<Vec<String>, JobError> {
        flows::invoke(name, &wit_children(children)).map_err(from_wit)
    }

    fn spawn(&self, name: &str, children: Vec<Child>) -> Result<Vec<String>, JobError> {
        flows::spawn(name, &wit_children(children)).map_err(from_wit)
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
