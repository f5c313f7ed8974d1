//! Stepwise test guest: jobs that wait for events and start child runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise_sdk::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct Await {
    pub event: String,
    #[serde(default)]
    pub key: Option<String>,
    pub timeout_ms: u64,
}

/// Counts a step before and after one wait; returns what the wait got.
#[job]
fn await_event(ctx: &mut Ctx, input: Await) -> Result<Value, JobError> {
    ctx.step("before", || Ok(1))?;
    let got: Option<Value> = ctx.wait_for_event(
        "wait",
        &input.event,
        input.key.as_deref(),
        Duration::from_millis(input.timeout_ms),
    )?;
    let after: u32 = ctx.step("after", || Ok(ctx.attempt()))?;
    Ok(serde_json::json!({ "got": got, "after_in_attempt": after }))
}

/// Two waits on one name and key: each takes its own event.
#[job]
fn await_twice(ctx: &mut Ctx, input: Await) -> Result<Vec<Option<Value>>, JobError> {
    let timeout = Duration::from_millis(input.timeout_ms);
    let first = ctx.wait_for_event("first", &input.event, input.key.as_deref(), timeout)?;
    let second = ctx.wait_for_event("second", &input.event, input.key.as_deref(), timeout)?;
    Ok(vec![first, second])
}

#[derive(Serialize, Deserialize)]
pub struct Fan {
    pub job: String,
    pub count: u32,
    #[serde(default)]
    pub spawn: bool,
    /// Start the children first thing, with no step before.
    #[serde(default)]
    pub first: bool,
    /// When a child fails, end the run with this non-retryable error instead of the child's.
    #[serde(default)]
    pub own_error: Option<String>,
}

/// Starts `count` children of `job` with payloads 0..count; joins them unless `spawn`.
#[job]
fn fan_out(ctx: &mut Ctx, input: Fan) -> Result<Value, JobError> {
    if !input.first {
        ctx.step("before", || Ok(1))?;
    }
    let children = (0..input.count)
        .map(|i| Child::new(&input.job, &serde_json::json!({ "n": i })))
        .collect::<Result<Vec<_>, _>>()?;
    if input.spawn {
        let ids = ctx.spawn_all("start", children)?;
        return Ok(serde_json::json!({ "ids": ids }));
    }
    let outputs: Vec<Value> = match (ctx.invoke_all("start", children), &input.own_error) {
        (Ok(outputs), _) => outputs,
        (Err(_), Some(own)) => return Err(JobError::non_retryable(own.clone())),
        (Err(e), None) => return Err(e),
    };
    Ok(serde_json::json!({ "outputs": outputs }))
}

#[derive(Serialize, Deserialize)]
pub struct N {
    pub n: u32,
}

/// Doubles `n`.
#[job]
fn double(ctx: &mut Ctx, input: N) -> Result<u32, JobError> {
    ctx.step("double", || Ok(input.n * 2))
}

/// Fails for good.
#[job(max_attempts = 1)]
fn refuse(_ctx: &mut Ctx, input: N) -> Result<u32, JobError> {
    Err(JobError::non_retryable(format!("refused {}", input.n)))
}

/// Fails with a retryable error, once (its single attempt is spent).
#[job(max_attempts = 1)]
fn flake(_ctx: &mut Ctx, input: N) -> Result<u32, JobError> {
    Err(JobError::retryable(format!("flaked {}", input.n)))
}

/// Waits a long time for an event nobody sends (a child that stays waiting).
#[job]
fn linger(ctx: &mut Ctx, _input: N) -> Result<Option<Value>, JobError> {
    ctx.wait_for_event("forever", "never", None, Duration::from_secs(86_400))
}

export_jobs!(
    await_event,
    await_twice,
    fan_out,
    double,
    refuse,
    flake,
    linger
);
