//! What the sandbox calls back for every step, log line and outbound call: the one interface
//! between a running guest and whoever records its run (the engine's journal). The runtime
//! knows nothing else of runs or storage.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use stepwise_core::attempt::{ChildRequest, GuestError, HostFault, StepInterrupt, StepState};
use stepwise_core::clock::Clock;
use stepwise_core::model::{HttpCall, LogLevel, LogSource};

/// A durable wait or start: resolves to its result, or ends the attempt.
pub type Awaiting<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepInterrupt>> + Send + 'a>>;

/// A step completion being made durable.
pub type Recording<'a> = Pin<Box<dyn Future<Output = Result<(), HostFault>> + Send + 'a>>;

/// What an outbound request waits for before anything is sent: what the attempt recorded so
/// far (its start) being durable, so a request never leaves for an attempt the record would
/// not show. Resolves to why not, when it could not be made durable.
pub type SendGate =
    futures_util::future::Shared<Pin<Box<dyn Future<Output = Result<(), String>> + Send>>>;

/// The recorder of one attempt's steps. Calls arrive in the guest's order; an `Err` ends the
/// attempt as a trap the guest never observes.
pub trait StepHost: Any + Send {
    /// A step begins: run it live, or here is its recorded output.
    fn begin(&mut self, name: &str) -> Result<StepState, HostFault>;
    /// The open step completed with `output` (JSON text); resolves once it is durable.
    fn succeed<'a>(&'a mut self, name: &'a str, output: String) -> Recording<'a>;
    /// The open step failed with the guest's error.
    fn fail(&mut self, name: &str, error: &GuestError) -> Result<(), HostFault>;
    /// A durable sleep: returns once its timer has fired, otherwise suspends the run.
    fn sleep(&mut self, name: &str, duration_ms: u64) -> Result<(), StepInterrupt>;
    /// A wait for an event: its payload (JSON text), `None` once it timed out, or the run
    /// suspends until one of them.
    fn wait_event<'a>(
        &'a mut self,
        name: &'a str,
        event: &'a str,
        correlation_key: Option<&'a str>,
        timeout_ms: u64,
    ) -> Awaiting<'a, Option<String>> {
        let _ = (event, correlation_key, timeout_ms);
        Box::pin(async move { Err(no_flows(name)) })
    }
    /// Starts child runs as one step; with `join`, their outputs once all ended (the run
    /// suspends until then), else their run ids. `Err` is the step's failure, for the guest.
    fn children<'a>(
        &'a mut self,
        name: &'a str,
        children: Vec<ChildRequest>,
        join: bool,
    ) -> Awaiting<'a, Result<Vec<String>, GuestError>> {
        let _ = (children, join);
        Box::pin(async move { Err(no_flows(name)) })
    }
    /// A log line (already masked).
    fn log(&mut self, level: LogLevel, source: LogSource, message: String);
    /// An outbound call, sent or refused.
    fn record_http(&mut self, call: HttpCall, denied: bool);
    /// The run's clock, which the guest's wall clock reads.
    fn clock(&self) -> Arc<dyn Clock>;
    /// What outbound requests of this attempt wait for first; `None`: nothing.
    fn send_gate(&self) -> Option<SendGate> {
        None
    }
    /// Back to the concrete recorder once the attempt is over.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// What a recorder without flows answers to one.
fn no_flows(name: &str) -> StepInterrupt {
    StepInterrupt::Fault(HostFault::Protocol(format!(
        "step '{name}': events and child runs are not available here"
    )))
}
