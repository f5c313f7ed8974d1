//! One attempt: a fresh `Store` with its limits, a fresh instance from the pre-instantiated
//! component, one call of `run`, and a typed account of how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{self, ErrorKind, JobError};
use super::cpu::{CpuTicket, HOT_FUEL_PER_TICK};
use super::sandbox::HostState;
use super::step_host::StepHost;
use super::{LoadedModule, Runtime};
use crate::egress::{Egress, EgressHooks, SecretSource};
pub use stepwise_core::attempt::{
    AttemptOutcome, CancelFlag, Cancelled, GuestError, HostFault, JobContext, Suspend,
};
use stepwise_core::model::{FailureKind, LogLevel, LogSource};
use stepwise_core::policy::Policy;

impl From<&JobError> for GuestError {
    fn from(e: &JobError) -> Self {
        let (kind, retry_after_ms) = match e.kind {
            ErrorKind::Retryable => (FailureKind::Retryable, None),
            ErrorKind::NonRetryable => (FailureKind::NonRetryable, None),
            ErrorKind::RetryAfter(ms) => (FailureKind::RetryAfter, Some(ms)),
        };
        Self {
            kind,
            message: e.message.clone(),
            retry_after_ms,
        }
    }
}

/// An outcome with what the attempt cost.
#[derive(Debug)]
pub struct AttemptReport {
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Wall-clock time of the attempt.
    pub elapsed: Duration,
}

/// A store with fuel, a wall-clock deadline and the memory limiter installed; with a CPU
/// ticket, a hot guest runs only in its turn (see [`super::cpu`]).
pub(super) fn new_store(
    engine: &wasmtime::Engine,
    state: HostState,
    fuel: u64,
    timeout: Duration,
    cpu: Option<CpuTicket>,
) -> wasmtime::Result<Store<HostState>> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(fuel)?;
    let started = Instant::now();
    let deadline = started.checked_add(timeout).unwrap_or(started);
    store.set_epoch_deadline(1);
    let mut last_fuel = fuel;
    // Host calls seen at the previous tick; none yet at the first, which only sets the mark.
    let mut last_calls: Option<u64> = None;
    store.epoch_deadline_callback(move |mut ctx| {
        if Instant::now() >= deadline {
            ctx.data_mut().timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        if ctx.data().cancel.is_cancelled() {
            return Ok(UpdateDeadline::Interrupt);
        }
        let left = ctx.get_fuel().unwrap_or(0);
        let burned = last_fuel.saturating_sub(left);
        last_fuel = left;
        let calls = ctx.data().host_calls;
        // A whole tick without a host call is a guest computing all along, whatever its fuel
        // says (filling memory burns little fuel but a lot of CPU).
        let quiet = last_calls.replace(calls) == Some(calls);
        // Between deadline checks, let other runs use this worker thread; a hot guest also
        // waits for its turn on the CPU.
        Ok(match &cpu {
            Some(ticket) if quiet || burned >= HOT_FUEL_PER_TICK => {
                UpdateDeadline::YieldCustom(1, ticket.next_turn(deadline))
            }
            Some(ticket) => {
                ticket.cool();
                UpdateDeadline::Yield(1)
            }
            None => UpdateDeadline::Yield(1),
        })
    });
    Ok(store)
}

/// Linear memory above which an attempt's store is dropped on a blocking thread.
const LARGE_MEMORY: usize = 16 << 20;

/// Extra time allowed beyond the guest's deadline for a host call in progress (a commit) to
/// finish before the attempt is abandoned outright.
const HOST_CALL_GRACE: Duration = Duration::from_secs(5);

impl Runtime {
    /// Runs one attempt of `ctx.job` with `payload`, recording steps through `journal`;
    /// outbound HTTP goes through `egress` (`None`: every request is refused).
    /// Setting `cancel` stops the guest at its next host call or epoch tick.
    /// Returns how it ended and hands the journal back, holding what is left to commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute<J: StepHost>(
        &self,
        module: &LoadedModule,
        journal: J,
        policy: &Policy,
        tenant: &str,
        egress: Option<(&Arc<Egress>, Arc<dyn SecretSource>)>,
        ctx: JobContext,
        payload: String,
        cancel: CancelFlag,
    ) -> (AttemptReport, J) {
        let _slot = self.slot().await;
        let started = Instant::now();
        let timeout = Duration::from_millis(policy.timeout_ms.min(self.config.caps.timeout_ms));
        let hooks = match egress {
            Some((e, secrets)) => {
                let deadline = started.checked_add(timeout).unwrap_or(started);
                let attempt = e
                    .for_attempt(tenant, deadline, secrets)
                    .gated(journal.send_gate());
                EgressHooks::for_attempt(Arc::new(attempt))
            }
            None => EgressHooks::deny_all(),
        };
        let mut state = HostState::new(
            Some(Box::new(journal)),
            hooks,
            policy.memory_bytes,
            self.config.capture_bytes,
        );
        state.cancel = cancel;
        let ticket = self.cpu.ticket(tenant);
        let mut store = match new_store(self.engine(), state, policy.fuel, timeout, Some(ticket)) {
            Ok(s) => s,
            Err(e) => unreachable_store(e),
        };
        let call = async {
            let handler = module.pre.instantiate_async(&mut store).await?;
            let ctx = bindings::JobContext {
                run_id: ctx.run_id,
                job: ctx.job,
                attempt: ctx.attempt,
            };
            handler.call_run(&mut store, &ctx, &payload).await
        };
        let result = tokio::time::timeout(timeout + HOST_CALL_GRACE, call).await;
        let fuel_used = policy.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let outcome = classify(&result, store.data());
        let mut state = if store.data().limiter.peak > LARGE_MEMORY {
            // Returning a large memory to the kernel takes milliseconds of page work: do it
            // on a blocking thread, not on a worker other tenants' attempts need.
            match tokio::task::spawn_blocking(move || store.into_data()).await {
                Ok(state) => state,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        } else {
            store.into_data()
        };
        // Dropping the guest's resources ends its requests and records their calls.
        state.table = wasmtime::component::ResourceTable::new();
        state.record_http_calls();
        let mut journal = state.journal.take().expect("attempt journal");
        let stderr = capture_output(&state, journal.as_mut());
        let outcome = mask_outcome(
            &state,
            outcome.unwrap_or_else(|| trapped_with_stderr(&result, &stderr)),
        );
        (
            AttemptReport {
                outcome,
                fuel_used,
                elapsed: started.elapsed(),
            },
            *journal
                .into_any()
                .downcast::<J>()
                .expect("the attempt hands back the journal it was given"),
        )
    }
}

/// The outcome with the tenant's secret values masked in its output and messages.
fn mask_outcome(state: &HostState, outcome: AttemptOutcome) -> AttemptOutcome {
    match outcome {
        AttemptOutcome::Completed(output) => AttemptOutcome::Completed(state.masked(output)),
        AttemptOutcome::Failed(mut e) => {
            e.message = state.masked(e.message);
            AttemptOutcome::Failed(e)
        }
        AttemptOutcome::Trapped { kind, message } => AttemptOutcome::Trapped {
            kind,
            message: state.masked(message),
        },
        other => other,
    }
}

fn unreachable_store(e: wasmtime::Error) -> ! {
    // set_fuel only fails when fuel is disabled, which our engine config never does.
    panic!("engine misconfigured: {e:#}")
}

type CallResult = Result<wasmtime::Result<Result<String, JobError>>, tokio::time::error::Elapsed>;

/// Classifies everything except a plain trap, which needs the stderr text (taken later).
fn classify(result: &CallResult, state: &HostState) -> Option<AttemptOutcome> {
    let trapped = |kind, message: &str| {
        Some(AttemptOutcome::Trapped {
            kind,
            message: message.to_owned(),
        })
    };
    match result {
        Err(_) => trapped(
            FailureKind::Timeout,
            "attempt exceeded its wall-clock deadline while in a host call",
        ),
        Ok(Ok(Ok(output))) => Some(AttemptOutcome::Completed(output.clone())),
        Ok(Ok(Err(e))) => Some(AttemptOutcome::Failed(GuestError::from(e))),
        Ok(Err(e)) => {
            if let Some(s) = e.downcast_ref::<Suspend>() {
                return Some(AttemptOutcome::Suspended { wake: s.wake });
            }
            if e.downcast_ref::<Cancelled>().is_some() || state.cancel.is_cancelled() {
                return Some(AttemptOutcome::Cancelled);
            }
            if let Some(f) = e.downcast_ref::<HostFault>() {
                if let HostFault::Storage { .. } = f {
                    return Some(AttemptOutcome::HostFault(f.to_string()));
                }
                return trapped(f.kind(), &f.to_string());
            }
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return trapped(
                    FailureKind::Trap,
                    &format!(
                        "guest called exit({}) instead of returning from run",
                        exit.0
                    ),
                );
            }
            if state.limiter.hit {
                return trapped(
                    FailureKind::MemoryLimit,
                    "guest tried to grow its memory past the attempt's memory limit",
                );
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => trapped(
                    FailureKind::FuelExhausted,
                    "attempt used up its fuel budget",
                ),
                Some(Trap::Interrupt) if state.timed_out => trapped(
                    FailureKind::Timeout,
                    "attempt exceeded its wall-clock deadline",
                ),
                _ => None,
            }
        }
    }
}

fn trapped_with_stderr(result: &CallResult, stderr: &str) -> AttemptOutcome {
    let base = match result {
        Ok(Err(e)) => match e.downcast_ref::<Trap>() {
            Some(trap) => format!("guest trapped: {trap}"),
            None => format!("guest failed: {}", e.root_cause()),
        },
        _ => "guest trapped".to_owned(),
    };
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let message = if tail.is_empty() {
        base
    } else {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{base}; stderr: {}", tail.join(" | "))
    };
    AttemptOutcome::Trapped {
        kind: FailureKind::Trap,
        message,
    }
}

/// Moves captured stdout/stderr into the run's log, noting anything dropped past the bound.
/// Returns the stderr text, which explains a trap (a panic message lands there).
fn capture_output(state: &HostState, journal: &mut dyn StepHost) -> String {
    let mut stderr = String::new();
    for (source, stream, level) in [
        (LogSource::Stdout, &state.stdout, LogLevel::Info),
        (LogSource::Stderr, &state.stderr, LogLevel::Warn),
    ] {
        let (text, dropped) = stream.take();
        for line in text.lines() {
            journal.log(level, source, state.masked(line.to_owned()));
        }
        if dropped > 0 {
            journal.log(
                LogLevel::Warn,
                source,
                format!("[{dropped} more bytes of output dropped]"),
            );
        }
        if source == LogSource::Stderr {
            stderr = text;
        }
    }
    stderr
}
