//! The job logic of the benchmark workloads (`stepwise bench`, see ../../README.md): small,
//! deterministic jobs whose cost is almost entirely the engine's — instantiation, step
//! journaling and durable commits — so the figures measure Stepwise, not the handler.

use stepwise_sdk::prelude::*;

/// Payload of the step jobs.
#[derive(Deserialize)]
struct Indexed {
    /// The job's index in the workload.
    #[serde(default)]
    i: u64,
}

/// Returns at once (`noop`, `instantiate`).
#[job]
fn noop(_ctx: &mut Ctx, input: Indexed) -> Result<u64, JobError> {
    Ok(input.i)
}

/// Three steps, each durable before the next starts (`steps3`).
#[job]
fn steps3(ctx: &mut Ctx, input: Indexed) -> Result<u64, JobError> {
    let a: u64 = ctx.step("one", || Ok(input.i))?;
    let b: u64 = ctx.step("two", || Ok(a + 1))?;
    ctx.step("three", || Ok(b + 1))
}

/// `steps3`, but every tenth job (by index) fails its second step on the first attempt
/// (`retry10`). Each real step execution is logged, so the harness can count repeats.
#[job(max_attempts = 3, backoff_initial_ms = 0, backoff_jitter = 0.0)]
fn retry10(ctx: &mut Ctx, input: Indexed) -> Result<u64, JobError> {
    let a: u64 = ctx.step("one", || {
        ctx.log_info("exec one");
        Ok(input.i)
    })?;
    let b: u64 = ctx.step_attempt("two", |attempt| {
        ctx.log_info("exec two");
        if input.i.is_multiple_of(10) && attempt == 1 {
            return Err(JobError::retryable("planned failure"));
        }
        Ok(a + 1)
    })?;
    ctx.step("three", || {
        ctx.log_info("exec three");
        Ok(b + 1)
    })
}

/// Payload of `replay`.
#[derive(Deserialize)]
struct Replay {
    /// Steps before the pause.
    steps: u32,
    /// How long the pause lasts, in milliseconds.
    pause_ms: u64,
}

/// `steps` steps, then a durable pause; resuming replays every step from the journal before it
/// reaches the pause again (`replay1000`).
#[job(timeout_ms = 600000)]
fn replay(ctx: &mut Ctx, input: Replay) -> Result<u32, JobError> {
    for n in 0..input.steps {
        ctx.step("s", || Ok(n))?;
    }
    ctx.sleep("pause", Duration::from_millis(input.pause_ms))?;
    Ok(input.steps)
}

/// Payload of `sleeper`.
#[derive(Deserialize)]
struct Nap {
    /// How long to sleep, in milliseconds.
    ms: u64,
}

/// Sleeps durably, then returns (`sleepers`).
#[job]
fn sleeper(ctx: &mut Ctx, input: Nap) -> Result<u64, JobError> {
    ctx.sleep("nap", Duration::from_millis(input.ms))?;
    Ok(input.ms)
}

/// Loops until its fuel or time runs out: the noisy neighbour's compute hog (`noisy`).
#[job(max_attempts = 1)]
fn spin(_ctx: &mut Ctx, _input: Indexed) -> Result<u64, JobError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Fills memory in 8 MiB chunks until the host refuses more: the noisy neighbour's memory
/// bomb (`noisy`).
#[job(max_attempts = 1)]
fn bomb(_ctx: &mut Ctx, _input: Indexed) -> Result<u64, JobError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![0x5a_u8; 8 << 20]);
        std::hint::black_box(&chunks);
    }
}

export_jobs!(noop, steps3, retry10, replay, sleeper, spin, bomb);
