//! Test guest: a hostile tenant's handler, written with the SDK. Each job is one attack on the
//! host — compute, memory, stack, sizes, counts, durations, process exits — driven by its
//! payload so a test can choose how far it goes. The host must end every one of them in a
//! final state with its own failure kind, and stay healthy for everyone else.

use serde::de::IgnoredAny;
use stepwise_sdk::prelude::*;

/// Payload of `spin`: `{"in_step":true}`.
#[derive(Deserialize)]
struct Spin {
    #[serde(default)]
    in_step: bool,
}

/// Loops forever, in the body or inside the step `spin`.
#[job(max_attempts = 1)]
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
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates and touches memory in 8 MiB chunks until the host refuses more.
#[job(max_attempts = 1)]
fn bomb(_ctx: &mut Ctx, _input: IgnoredAny) -> Result<u64, JobError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![0xa5_u8; 8 << 20]);
        std::hint::black_box(&chunks);
    }
}

/// Recurses without bound until the stack runs out.
#[job(max_attempts = 1)]
fn recurse(_ctx: &mut Ctx, _input: IgnoredAny) -> Result<u64, JobError> {
    Ok(deeper(std::hint::black_box(0)))
}

/// Recurses until `n` wraps around (it never does before the stack runs out).
fn deeper(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    if frame[7] == u64::MAX {
        return 0;
    }
    deeper(frame[7].wrapping_add(1)).wrapping_add(frame[3])
}

/// Payload of the sized jobs: `{"bytes":2000000}`.
#[derive(Deserialize)]
struct Size {
    bytes: usize,
}

/// A step whose output is a string of `bytes` bytes.
#[job(max_attempts = 1)]
fn big_step_output(ctx: &mut Ctx, input: Size) -> Result<usize, JobError> {
    let out: String = ctx.step("big", || Ok("x".repeat(input.bytes)))?;
    Ok(out.len())
}

/// A job whose output is a string of `bytes` bytes.
#[job(max_attempts = 1)]
fn big_output(_ctx: &mut Ctx, input: Size) -> Result<String, JobError> {
    Ok("x".repeat(input.bytes))
}

/// A job whose error message is `bytes` bytes long.
#[job(max_attempts = 3)]
fn big_error(_ctx: &mut Ctx, input: Size) -> Result<(), JobError> {
    Err(JobError::retryable("e".repeat(input.bytes)))
}

/// Payload of `log-flood`: `{"lines":3000000,"bytes":0,"stdout":false}`.
#[derive(Deserialize)]
struct Flood {
    lines: u64,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    stdout: bool,
}

/// Writes `lines` log lines of `bytes` bytes each, through the SDK's log or to stdout.
#[job(max_attempts = 1)]
#[allow(clippy::print_stdout, reason = "flooding stdout is what this job does")]
fn log_flood(ctx: &mut Ctx, input: Flood) -> Result<u64, JobError> {
    let line = "l".repeat(input.bytes);
    for _ in 0..input.lines {
        if input.stdout {
            println!("{line}");
        } else {
            ctx.log_info(line.as_str());
        }
    }
    Ok(input.lines)
}

/// A step with a name of `bytes` bytes.
#[job(max_attempts = 1)]
fn long_step_name(ctx: &mut Ctx, input: Size) -> Result<u32, JobError> {
    ctx.step("n".repeat(input.bytes), || Ok(1))
}

/// Payload of `many-steps`: `{"n":100000}`.
#[derive(Deserialize)]
struct Count {
    n: u32,
}

/// Runs `n` steps with distinct names.
#[job(max_attempts = 1)]
fn many_steps(ctx: &mut Ctx, input: Count) -> Result<u32, JobError> {
    for i in 0..input.n {
        ctx.step(format!("s{i}"), || Ok(i))?;
    }
    Ok(input.n)
}

/// Payload of `growing-steps`: `{"n":700,"step_bytes":1000000}`.
#[derive(Deserialize)]
struct Growing {
    n: u32,
    step_bytes: usize,
}

/// Runs `n` steps, each recording `step_bytes` bytes: a journal that grows without end.
#[job(max_attempts = 1)]
fn growing_steps(ctx: &mut Ctx, input: Growing) -> Result<u32, JobError> {
    for i in 0..input.n {
        let _: String = ctx.step(format!("g{i}"), || Ok("g".repeat(input.step_bytes)))?;
    }
    Ok(input.n)
}

/// Sleeps for `Duration::MAX`.
#[job(max_attempts = 1)]
fn sleep_forever(ctx: &mut Ctx, _input: IgnoredAny) -> Result<(), JobError> {
    ctx.sleep("forever", Duration::MAX)
}

/// Asks to be retried after `Duration::MAX`.
#[job(max_attempts = 2)]
fn retry_after_forever(_ctx: &mut Ctx, _input: IgnoredAny) -> Result<(), JobError> {
    Err(JobError::retry_after(Duration::MAX, "come back never"))
}

/// Payload of `exit`: `{"code":3}`.
#[derive(Deserialize)]
struct Exit {
    code: i32,
}

/// Exits the process instead of returning.
#[job(max_attempts = 1)]
fn exit(_ctx: &mut Ctx, input: Exit) -> Result<(), JobError> {
    std::process::exit(input.code)
}

/// Panics.
#[job(max_attempts = 1)]
fn panic(_ctx: &mut Ctx, _input: IgnoredAny) -> Result<(), JobError> {
    panic!("hostile panic")
}

export_jobs!(
    spin,
    bomb,
    recurse,
    big_step_output,
    big_output,
    big_error,
    log_flood,
    long_step_name,
    many_steps,
    growing_steps,
    sleep_forever,
    retry_after_forever,
    exit,
    panic
);
