//! The host side of the WIT imports: every step call is answered by the attempt's
//! [`StepHost`].

use super::bindings::host_traits::{FlowsHost, LogHost, SecretsHost, StepsHost, TypesHost};
use super::bindings::{Child, ErrorKind, JobError, Level, StepState};
use super::sandbox::HostState;
use super::step_host::StepHost;
use stepwise_core::attempt::{self, Cancelled, ChildRequest, GuestError, HostFault, StepInterrupt};
use stepwise_core::model::FailureKind;
use stepwise_core::model::{LogLevel, LogSource};

impl HostState {
    fn journal(&mut self) -> wasmtime::Result<&mut dyn StepHost> {
        self.host_calls = self.host_calls.wrapping_add(1);
        self.record_http_calls();
        if self.cancel.is_cancelled() {
            // Nothing after the cancel is recorded: the call ends the attempt instead.
            return Err(wasmtime::Error::new(Cancelled));
        }
        self.journal.as_deref_mut().ok_or_else(|| {
            wasmtime::Error::new(HostFault::Protocol(
                "steps and logs are only available while a job runs, not in describe()".into(),
            ))
        })
    }
}

impl TypesHost for HostState {}

impl StepsHost for HostState {
    async fn begin(&mut self, name: String) -> wasmtime::Result<StepState> {
        match self.journal()?.begin(&name).map_err(wasmtime::Error::new)? {
            attempt::StepState::Run(n) => Ok(StepState::Run(n)),
            attempt::StepState::Completed(output) => Ok(StepState::Completed(output)),
        }
    }

    async fn succeed(&mut self, name: String, output: String) -> wasmtime::Result<()> {
        let output = self.masked(output);
        self.journal()?
            .succeed(&name, output)
            .await
            .map_err(wasmtime::Error::new)
    }

    async fn fail(&mut self, name: String, mut error: JobError) -> wasmtime::Result<()> {
        error.message = self.masked(error.message);
        self.journal()?
            .fail(&name, &(&error).into())
            .map_err(wasmtime::Error::new)
    }

    async fn sleep(&mut self, name: String, duration: u64) -> wasmtime::Result<()> {
        self.journal()?.sleep(&name, duration).map_err(interrupt)
    }
}

/// A step call's interrupt, as the trap that ends the attempt.
fn interrupt(i: StepInterrupt) -> wasmtime::Error {
    match i {
        StepInterrupt::Suspend(s) => wasmtime::Error::new(s),
        StepInterrupt::Fault(f) => wasmtime::Error::new(f),
        StepInterrupt::Cancelled => wasmtime::Error::new(Cancelled),
    }
}

/// A step's failure as the guest sees it.
fn job_error(e: GuestError) -> JobError {
    let kind = match (e.kind, e.retry_after_ms) {
        (FailureKind::RetryAfter, Some(ms)) => ErrorKind::RetryAfter(ms),
        (kind, _) if kind.is_retryable() => ErrorKind::Retryable,
        _ => ErrorKind::NonRetryable,
    };
    JobError {
        kind,
        message: e.message,
    }
}

impl HostState {
    async fn start_children(
        &mut self,
        name: String,
        children: Vec<Child>,
        join: bool,
    ) -> wasmtime::Result<Result<Vec<String>, JobError>> {
        let children = children
            .into_iter()
            .map(|c| ChildRequest {
                job: c.job,
                payload: c.payload,
                queue: c.options.queue,
                priority: c.options.priority,
                delay_ms: c.options.delay_ms,
                overrides: c.options.policy.into(),
            })
            .collect();
        let answer = self
            .journal()?
            .children(&name, children, join)
            .await
            .map_err(interrupt)?;
        Ok(answer.map_err(job_error))
    }
}

impl FlowsHost for HostState {
    async fn wait_for_event(
        &mut self,
        name: String,
        event: String,
        correlation_key: Option<String>,
        timeout: u64,
    ) -> wasmtime::Result<Option<String>> {
        self.journal()?
            .wait_event(&name, &event, correlation_key.as_deref(), timeout)
            .await
            .map_err(interrupt)
    }

    async fn invoke(
        &mut self,
        name: String,
        children: Vec<Child>,
    ) -> wasmtime::Result<Result<Vec<String>, JobError>> {
        self.start_children(name, children, true).await
    }

    async fn spawn(
        &mut self,
        name: String,
        children: Vec<Child>,
    ) -> wasmtime::Result<Result<Vec<String>, JobError>> {
        self.start_children(name, children, false).await
    }
}

impl LogHost for HostState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let message = self.masked(message);
        self.journal()?.log(level, LogSource::Guest, message);
        Ok(())
    }
}

impl SecretsHost for HostState {
    async fn read(&mut self, name: String) -> wasmtime::Result<Result<String, String>> {
        self.host_calls = self.host_calls.wrapping_add(1);
        Ok(match self.egress.attempt() {
            Some(attempt) => attempt.secrets().readable(&name),
            None => Err("secrets are only available while a job runs, not in describe()".into()),
        })
    }
}
