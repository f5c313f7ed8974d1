//! Test guest: one job per host behaviour under test, each driven entirely by its payload.
//!
//! Jobs log `exec <step> ...` from inside their steps, so tests can count how often a step
//! really ran (as opposed to being replayed from the journal) by reading the run's log.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde_json::{Value, json};
use stepwise_sdk::prelude::*;

/// How a `flaky` step fails.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FailKind {
    #[default]
    Retryable,
    NonRetryable,
    RetryAfter,
}

/// Payload of `flaky`:
/// `{"steps":["a","b","c"],"fail":{"b":2},"kind":"retryable","retry_after_ms":100}`.
#[derive(Deserialize)]
struct Flaky {
    steps: Vec<String>,
    /// Step name → how many of its attempts fail.
    #[serde(default)]
    fail: HashMap<String, u32>,
    #[serde(default)]
    kind: FailKind,
    #[serde(default = "default_retry_after_ms")]
    retry_after_ms: u64,
}

fn default_retry_after_ms() -> u64 {
    100
}

/// Runs the listed steps in order; a step fails while its attempt is within its `fail` count.
#[job(
    max_attempts = 3,
    backoff_initial_ms = 10,
    backoff_max_ms = 1_000,
    backoff_multiplier = 2.0,
    backoff_jitter = 0.0
)]
fn flaky(ctx: &mut Ctx, input: Flaky) -> Result<Vec<Value>, JobError> {
    let mut outputs = Vec::with_capacity(input.steps.len());
    for name in &input.steps {
        let fails = input.fail.get(name).copied().unwrap_or(0);
        let output = ctx.step_attempt(name, |attempt| {
            ctx.log_info(format!("exec {name} attempt {attempt}"));
            if attempt > fails {
                return Ok(json!({ "step": name, "attempt": attempt }));
            }
            let message = format!("step {name} failed on attempt {attempt}");
            Err(match input.kind {
                FailKind::Retryable => JobError::retryable(message),
                FailKind::NonRetryable => JobError::non_retryable(message),
                FailKind::RetryAfter => {
                    JobError::retry_after(Duration::from_millis(input.retry_after_ms), message)
                }
            })
        })?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// Payload of `body-fail`: `{"times":2}`.
#[derive(Deserialize)]
struct Times {
    #[serde(default)]
    times: u32,
}

/// Fails outside any step on the run's first `times` attempts.
#[job(max_attempts = 3, backoff_initial_ms = 10, backoff_jitter = 0.0)]
fn body_fail(ctx: &mut Ctx, input: Times) -> Result<u32, JobError> {
    if ctx.attempt() <= input.times {
        return Err(JobError::retryable("body failed"));
    }
    Ok(ctx.attempt())
}

/// Payload of `spin`: `{"in_step":true}`.
#[derive(Deserialize)]
struct Spin {
    #[serde(default)]
    in_step: bool,
}

/// Loops forever, inside the step `spin` or in the job's body, until fuel or time runs out.
#[job(max_attempts = 1, fuel = 100_000_000, timeout_ms = 5_000)]
fn spin(ctx: &mut Ctx, input: Spin) -> Result<(), JobError> {
    if input.in_step {
        ctx.step("spin", || -> Result<(), JobError> { spin_forever() })
    } else {
        spin_forever()
    }
}

fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop pointless.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Payload of `hog`: `{"mb":16}`.
#[derive(Deserialize)]
struct Hog {
    mb: u32,
}

/// Allocates and fills `mb` MiB in 1 MiB chunks, all kept alive, and returns the byte count.
#[job(max_attempts = 1, memory_bytes = 67_108_864)]
fn hog(_ctx: &mut Ctx, input: Hog) -> Result<u64, JobError> {
    const MIB: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..input.mb {
        chunks.push(vec![1_u8; MIB]);
    }
    let chunks = std::hint::black_box(chunks);
    Ok(chunks.iter().map(|c| c.len() as u64).sum())
}

/// Payload of `sleeper`: `{"ms":50}`.
#[derive(Deserialize)]
struct Sleeper {
    ms: u64,
}

/// Step `before`, durable sleep `nap`, step `after`.
#[job]
fn sleeper(ctx: &mut Ctx, input: Sleeper) -> Result<u64, JobError> {
    ctx.step("before", || {
        ctx.log_info("exec before");
        Ok(())
    })?;
    ctx.sleep("nap", Duration::from_millis(input.ms))?;
    ctx.step("after", || {
        ctx.log_info("exec after");
        Ok(())
    })?;
    Ok(input.ms)
}

/// Payload and output of `echo`: `{"message":"hi","count":2}`.
#[derive(Serialize, Deserialize)]
struct Echo {
    message: String,
    count: u32,
}

/// Returns its typed payload unchanged; it declares no policy at all.
#[job]
fn echo(_ctx: &mut Ctx, input: Echo) -> Result<Echo, JobError> {
    Ok(input)
}

/// Payload of `many-steps`: `{"n":5}`.
#[derive(Deserialize)]
struct ManySteps {
    n: u32,
}

/// Runs `n` steps all named `s` (journal names `s`, `s#2`, ...), each returning its index.
#[job]
fn many_steps(ctx: &mut Ctx, input: ManySteps) -> Result<Vec<u32>, JobError> {
    (0..input.n).map(|i| ctx.step("s", || Ok(i))).collect()
}

/// Payload of `chatty`: `{"lines":1000}`.
#[derive(Deserialize)]
struct Chatty {
    lines: u32,
}

/// Writes `lines` lines to stdout and one to stderr, to test bounded output capture.
#[job]
#[allow(
    clippy::print_stdout,
    reason = "writing to stdout is what this job tests"
)]
fn chatty(_ctx: &mut Ctx, input: Chatty) -> Result<u32, JobError> {
    for i in 0..input.lines {
        println!("chatty line {i}");
    }
    eprintln!("chatty to stderr");
    Ok(input.lines)
}

/// Panics with the message `boom`; accepts any payload.
#[job(max_attempts = 2, backoff_initial_ms = 10, backoff_jitter = 0.0)]
fn panic(_ctx: &mut Ctx, _input: IgnoredAny) -> Result<(), JobError> {
    panic!("boom")
}

/// Payload of `say`: `{"message":"..."}`.
#[derive(Deserialize)]
struct Say {
    message: String,
}

/// Logs `message` (at warn, from a step) and then fails for good with it as the error: a
/// handler's text reaching every place a dashboard shows.
#[job(max_attempts = 1)]
fn say(ctx: &mut Ctx, input: Say) -> Result<(), JobError> {
    ctx.step("say", || {
        ctx.log_warn(input.message.clone());
        Ok(())
    })?;
    Err(JobError::non_retryable(input.message))
}

export_jobs!(
    flaky, body_fail, spin, hog, sleeper, echo, many_steps, chatty, panic, say
);
