//! The hostile-guest suite: each attack a tenant's handler can make on the host — compute,
//! memory, stack, sizes, counts, durations, exits, protocol violations, absurd `describe`
//! lists — ends in a final state with its own documented failure kind, and the host stays
//! healthy (every test ends by running a healthy job to completion on the same engine).

use serde_json::{Value, json};
use stepwise::engine::journal::JournalLimits;
use stepwise::{
    Backoff, EngineConfig, EngineError, FailureKind, NewRun, PolicyOverrides, RunStatus, RunView,
};
use stepwise_tests::guests;

use crate::util::*;

/// Small journal limits, so each limit is reached in a fraction of a second.
fn limits() -> JournalLimits {
    JournalLimits {
        max_steps: 50,
        max_journal_bytes: 1 << 20,
        max_log_lines: 1_000,
        ..JournalLimits::default()
    }
}

async fn hostile_harness() -> Harness {
    harness_with(EngineConfig {
        journal: limits(),
        ..EngineConfig::default()
    })
    .await
}

/// Small fuel and time, so compute attacks end quickly.
fn tight() -> PolicyOverrides {
    PolicyOverrides {
        fuel: Some(200_000_000),
        timeout_ms: Some(2_000),
        memory_bytes: Some(32 << 20),
        ..PolicyOverrides::default()
    }
}

/// Runs `job` of the hostile guest and checks the host is healthy afterwards.
async fn attack(h: &Harness, job: &str, payload: Value) -> RunView {
    let view = h.run(guests::HOSTILE, job, payload, tight()).await;
    let healthy = h
        .run(
            guests::TESTBED,
            "echo",
            json!({"message": "still here", "count": 1}),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(healthy.run.status, RunStatus::Completed, "{healthy:?}");
    view
}

/// The run failed for good with `kind`, after `attempts` attempts; returns its message.
fn failed_with(view: &RunView, kind: FailureKind, attempts: u32) -> String {
    assert_eq!(view.run.status, RunStatus::Failed, "{:?}", view.run);
    assert!(view.dead_lettered);
    let error = view.run.error.as_ref().expect("failed runs carry an error");
    assert_eq!(error.kind, kind, "{error:?}");
    assert_eq!(view.run.attempts, attempts, "{:?}", view.run);
    error.message.clone()
}

#[tokio::test]
async fn an_infinite_loop_in_the_body_runs_out_of_fuel() {
    let h = hostile_harness().await;
    let view = attack(&h, "spin", json!({})).await;
    failed_with(&view, FailureKind::FuelExhausted, 1);
}

#[tokio::test]
async fn an_infinite_loop_in_a_step_hits_the_deadline_and_is_charged_to_the_step() {
    let h = hostile_harness().await;
    let view = h
        .run(
            guests::HOSTILE,
            "spin",
            json!({"in_step": true}),
            PolicyOverrides {
                fuel: Some(1_000_000_000_000),
                timeout_ms: Some(300),
                ..PolicyOverrides::default()
            },
        )
        .await;
    failed_with(&view, FailureKind::Timeout, 1);
    assert_eq!(
        view.run.error.as_ref().unwrap().step.as_deref(),
        Some("spin")
    );
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let h = hostile_harness().await;
    let view = attack(&h, "bomb", json!({})).await;
    failed_with(&view, FailureKind::MemoryLimit, 1);
}

#[tokio::test]
async fn unbounded_recursion_exhausts_the_stack_as_a_trap() {
    let h = hostile_harness().await;
    let view = attack(&h, "recurse", json!({})).await;
    // Rust's stack lives in linear memory: running off its end is an out-of-bounds access.
    let message = failed_with(&view, FailureKind::Trap, 1);
    assert!(message.starts_with("guest trapped"), "{message}");
}

#[tokio::test]
async fn an_oversize_step_output_is_refused_and_not_recorded() {
    let h = hostile_harness().await;
    let view = attack(&h, "big-step-output", json!({"bytes": 2 << 20})).await;
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(message.contains("over the 1048576-byte limit"), "{message}");
    assert_eq!(
        view.run.error.as_ref().unwrap().step.as_deref(),
        Some("big")
    );
    assert!(view.steps[0].output.is_none());
}

#[tokio::test]
async fn an_oversize_job_output_is_refused() {
    let h = hostile_harness().await;
    let view = attack(&h, "big-output", json!({"bytes": 2 << 20})).await;
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(message.starts_with("job output is"), "{message}");
    assert!(view.run.output.is_none());
}

#[tokio::test]
async fn an_oversize_error_message_is_cut_and_ends_the_run() {
    let h = hostile_harness().await;
    let view = attack(&h, "big-error", json!({"bytes": 1 << 20})).await;
    // Retryable as the guest said, but a limit failure: final on the first attempt.
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(
        message.starts_with("error message is 1048576 bytes"),
        "{message}"
    );
    assert!(message.len() < 2_048, "the stored message is bounded");
}

#[tokio::test]
async fn a_flood_of_empty_log_lines_is_bounded_by_the_line_limit() {
    let h = hostile_harness().await;
    let view = attack(&h, "log-flood", json!({"lines": 200_000})).await;
    assert_eq!(view.run.status, RunStatus::Completed);
    // 1,000 lines kept, then one line saying how many were dropped.
    assert_eq!(view.logs.len(), 1_001);
    assert_eq!(
        view.logs.last().unwrap().message,
        "[199000 log lines dropped: attempt log budget exceeded]"
    );
}

#[tokio::test]
async fn a_flood_of_log_bytes_is_bounded_by_the_byte_limit() {
    let h = hostile_harness().await;
    let view = attack(&h, "log-flood", json!({"lines": 100, "bytes": 100_000})).await;
    assert_eq!(view.run.status, RunStatus::Completed);
    let kept: usize = view.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= limits().max_log_bytes + 100, "{kept} bytes kept");
    assert!(view.logs.last().unwrap().message.contains("dropped"));
}

#[tokio::test]
async fn a_flood_of_stdout_is_bounded_by_the_capture() {
    let h = hostile_harness().await;
    let view = attack(&h, "log-flood", json!({"lines": 100_000, "stdout": true})).await;
    assert_eq!(view.run.status, RunStatus::Completed);
    assert!(
        view.logs.len() <= limits().max_log_lines + 1,
        "{}",
        view.logs.len()
    );
}

#[tokio::test]
async fn an_absurd_step_name_is_a_protocol_violation() {
    let h = hostile_harness().await;
    let view = attack(&h, "long-step-name", json!({"bytes": 1 << 20})).await;
    let message = failed_with(&view, FailureKind::ProtocolViolation, 1);
    assert!(
        message.contains("a step name must be 1 to 256 bytes"),
        "{message}"
    );
    assert!(view.steps.is_empty());
}

#[tokio::test]
async fn a_hundred_thousand_steps_stop_at_the_steps_limit() {
    let h = hostile_harness().await;
    let view = attack(&h, "many-steps", json!({"n": 100_000})).await;
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(message.contains("already has 50 steps"), "{message}");
    assert_eq!(view.steps.len(), 50);
}

#[tokio::test]
async fn a_growing_journal_stops_at_the_journal_limit() {
    let h = hostile_harness().await;
    let view = attack(
        &h,
        "growing-steps",
        json!({"n": 700, "step_bytes": 100_000}),
    )
    .await;
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(message.contains("1048576-byte limit"), "{message}");
    let recorded: u64 = view.steps.iter().map(|s| s.output_bytes).sum();
    assert!(recorded <= 1 << 20, "{recorded}");
}

#[tokio::test]
async fn a_sleep_of_duration_max_is_refused() {
    let h = hostile_harness().await;
    let view = attack(&h, "sleep-forever", json!({})).await;
    let message = failed_with(&view, FailureKind::LimitExceeded, 1);
    assert!(
        message.contains("longer than the longest delay"),
        "{message}"
    );
}

#[tokio::test]
async fn a_retry_after_of_duration_max_is_clamped_to_the_longest_delay() {
    let h = hostile_harness().await;
    let view = attack(&h, "retry-after-forever", json!({})).await;
    failed_with(&view, FailureKind::RetryAfter, 2);
    // The manual clock jumped over the wait, which was exactly the longest delay.
    let max = stepwise::policy::MAX_DELAY_MS;
    let waits: Vec<u64> = h.clock.waits().iter().map(|(from, to)| to - from).collect();
    assert!(waits.contains(&max), "{waits:?}");
}

#[tokio::test]
async fn exit_with_a_code_is_a_trap_naming_the_code() {
    let h = hostile_harness().await;
    // WASI preview 2 carries only success or failure: any non-zero code arrives as 1.
    let view = attack(&h, "exit", json!({"code": 3})).await;
    let message = failed_with(&view, FailureKind::Trap, 1);
    assert!(message.contains("exit(1)"), "{message}");
}

#[tokio::test]
async fn a_panic_is_a_trap_with_its_message() {
    let h = hostile_harness().await;
    let view = attack(&h, "panic", json!({})).await;
    let message = failed_with(&view, FailureKind::Trap, 1);
    assert!(message.contains("hostile panic"), "{message}");
}

#[tokio::test]
async fn every_step_protocol_violation_ends_the_run_at_once() {
    let h = hostile_harness().await;
    for (job, says) in [
        ("succeed-without-begin", "succeed('a') without begin('a')"),
        ("fail-without-begin", "fail('a') without begin('a')"),
        (
            "begin-twice",
            "step 'b' began while step 'a' was still running",
        ),
        ("sleep-in-step", "sleep('nap') inside step 'a'"),
        (
            "non-json-step-output",
            "output of step 'a' is not valid JSON",
        ),
        ("non-json-output", "job output is not valid JSON"),
    ] {
        let view = h
            .run(
                guests::RAW_PROTOCOL,
                job,
                json!({}),
                PolicyOverrides::default(),
            )
            .await;
        // The module allows 3 attempts; a violation is deterministic, so one is enough.
        let message = failed_with(&view, FailureKind::ProtocolViolation, 1);
        assert!(message.contains(says), "{job}: {message}");
    }
}

async fn deploy_error(h: &Harness, path: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    match h.engine.deploy(&bytes).await {
        Err(e @ EngineError::Load(_)) => e.to_string(),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_describe_with_a_nan_backoff_is_refused_at_deploy() {
    let h = hostile_harness().await;
    let e = deploy_error(&h, guests::DESCRIBE_NAN).await;
    assert!(
        e.contains("job 'nan'") && e.contains("backoff.multiplier"),
        "{e}"
    );
}

#[tokio::test]
async fn a_describe_with_a_hundred_thousand_jobs_is_refused_at_deploy() {
    let h = hostile_harness().await;
    let e = deploy_error(&h, guests::DESCRIBE_HUGE).await;
    assert!(e.contains("100003 jobs"), "{e}");
}

#[tokio::test]
async fn a_describe_asking_for_u64_max_is_clamped_to_the_caps() {
    let h = hostile_harness().await;
    let view = h
        .run(
            guests::DESCRIBE_MAX,
            "max",
            json!({}),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed);
    let caps = stepwise::Caps::default();
    let p = view.run.policy;
    assert_eq!(
        (p.max_attempts, p.fuel, p.timeout_ms, p.memory_bytes),
        (
            caps.max_attempts,
            caps.fuel,
            caps.timeout_ms,
            caps.memory_bytes
        )
    );
}

#[tokio::test]
async fn absurd_enqueue_policies_and_delays_are_refused_and_nothing_is_stored() {
    let h = hostile_harness().await;
    let module = h.deploy(guests::TESTBED).await;
    let backoff = |b: Backoff| PolicyOverrides {
        backoff: Some(b),
        ..PolicyOverrides::default()
    };
    let cases = [
        (
            backoff(Backoff {
                multiplier: f64::NAN,
                ..Backoff::default()
            }),
            None,
            "backoff.multiplier",
        ),
        (
            backoff(Backoff {
                multiplier: 1e308,
                ..Backoff::default()
            }),
            None,
            "backoff.multiplier",
        ),
        (
            backoff(Backoff {
                initial_ms: u64::MAX,
                max_ms: u64::MAX,
                ..Backoff::default()
            }),
            None,
            "backoff.initial_ms",
        ),
        (
            backoff(Backoff {
                jitter: f64::INFINITY,
                ..Backoff::default()
            }),
            None,
            "backoff.jitter",
        ),
        (PolicyOverrides::default(), Some(u64::MAX), "delay"),
    ];
    for (overrides, delay_ms, field) in cases {
        let e = h
            .engine
            .enqueue(NewRun {
                overrides,
                delay_ms,
                ..NewRun::local(&module, "echo", r#"{"message":"x","count":1}"#)
            })
            .await
            .unwrap_err();
        match e {
            EngineError::Policy(p) => assert_eq!(p.field, field),
            other => panic!("expected a policy error for {field}, got {other:?}"),
        }
    }
    assert_eq!(h.redb.census().unwrap(), Default::default());
}

/// A cancel reaches an attempt spinning inside a step: the guest is stopped at its next epoch
/// tick, long before its own deadline, and the attempt settles nothing (no attempt counted,
/// no failure recorded: the run's next state is the canceller's to write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_spinning_attempt_and_settles_nothing() {
    let h = hostile_harness().await;
    let overrides = PolicyOverrides {
        fuel: Some(1_000_000_000_000),
        timeout_ms: Some(120_000),
        ..PolicyOverrides::default()
    };
    let id = h
        .enqueue(guests::HOSTILE, "spin", json!({"in_step": true}), overrides)
        .await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (engine, done) = (h.engine.clone(), done.clone());
        tokio::spawn(async move {
            engine
                .work_until(move || done.load(std::sync::atomic::Ordering::SeqCst))
                .await
        })
    };
    let started = std::time::Instant::now();
    while !h.engine.is_running(&id).await.unwrap() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the attempt never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Let the guest get into its loop inside the step.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(h.engine.cancel_attempt(&id));
    // The attempt's own deadline is two minutes away: ending at all means the cancel did it.
    tokio::time::timeout(std::time::Duration::from_secs(60), worker)
        .await
        .expect("the cancelled attempt ended")
        .unwrap()
        .unwrap();
    assert!(!h.engine.is_running(&id).await.unwrap());
    assert!(!h.engine.cancel_attempt(&id), "no attempt runs any more");
    let view = h.engine.view(&id).await.unwrap();
    assert_eq!(view.run.attempts, 0, "{:?}", view.run);
    assert_eq!(view.run.status, RunStatus::Queued);
    assert!(view.run.error.is_none());
    assert!(view.steps.is_empty(), "{:?}", view.steps);
}
