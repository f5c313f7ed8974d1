//! Per-step retries: memoization across attempts, independent counters, the backoff schedule
//! (manual clock, seeded jitter), exhaustion, non-retryable errors and retry-after.

use serde_json::json;
use stepwise::{Backoff, FailureKind, PolicyOverrides, RunStatus};
use stepwise_tests::guests;

use crate::util::*;

#[tokio::test]
async fn completed_steps_are_not_run_again() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "flaky",
            json!({"steps": ["a", "b", "c"], "fail": {"b": 2}}),
            attempts(5, 100),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    assert_eq!(view.run.attempts, 3);
    assert_eq!(executions(&view, "a"), 1, "a replayed from the journal");
    assert_eq!(executions(&view, "b"), 3);
    assert_eq!(executions(&view, "c"), 1);
    assert_eq!(
        view.run.output,
        Some(json!([
            {"step": "a", "attempt": 1},
            {"step": "b", "attempt": 3},
            {"step": "c", "attempt": 1}
        ]))
    );
}

#[tokio::test]
async fn each_step_has_its_own_attempt_budget() {
    let h = harness().await;
    // Three attempts per step; b and c each fail twice: five run attempts in all, yet no step
    // exceeds its own budget.
    let view = h
        .run(
            guests::TESTBED,
            "flaky",
            json!({"steps": ["a", "b", "c"], "fail": {"b": 2, "c": 2}}),
            attempts(3, 10),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    assert_eq!(view.run.attempts, 5);
    assert_eq!(step_attempts(&view, "a"), 1);
    assert_eq!(step_attempts(&view, "b"), 3);
    assert_eq!(step_attempts(&view, "c"), 3);
}

#[tokio::test]
async fn backoff_doubles_without_jitter() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "flaky",
            json!({"steps": ["a"], "fail": {"a": 3}}),
            attempts(5, 1_000),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed);
    let delays: Vec<u64> = h.clock.waits().iter().map(|(from, to)| to - from).collect();
    assert_eq!(delays, vec![1_000, 2_000, 4_000]);
}

#[tokio::test]
async fn jitter_is_seeded_bounded_and_reproducible() {
    let overrides = PolicyOverrides {
        max_attempts: Some(6),
        backoff: Some(Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
            multiplier: 3.0,
            jitter: 0.5,
        }),
        ..Default::default()
    };
    let payload = json!({"steps": ["a"], "fail": {"a": 5}});
    let mut schedules = Vec::new();
    for _ in 0..2 {
        let h = harness().await;
        let view = h
            .run(guests::TESTBED, "flaky", payload.clone(), overrides)
            .await;
        assert_eq!(view.run.status, RunStatus::Completed);
        let delays: Vec<u64> = h.clock.waits().iter().map(|(f, t)| t - f).collect();
        schedules.push(delays);
    }
    assert_eq!(schedules[0], schedules[1], "same seed, same schedule");
    let full = [1_000u64, 3_000, 9_000, 27_000, 60_000];
    assert_eq!(schedules[0].len(), full.len());
    for (d, f) in schedules[0].iter().zip(full) {
        assert!(*d <= f && *d >= f / 2, "delay {d} outside [{}, {f}]", f / 2);
    }
    assert!(
        schedules[0].iter().zip(full).any(|(d, f)| *d != f),
        "jitter moved at least one delay"
    );
}

#[tokio::test]
async fn exhausted_runs_fail_and_are_dead_lettered_with_history() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "flaky",
            json!({"steps": ["a", "b"], "fail": {"b": 99}}),
            attempts(3, 10),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert!(view.dead_lettered);
    assert_eq!(step_attempts(&view, "b"), 3);
    assert_eq!(executions(&view, "a"), 1);
    let error = view.run.error.as_ref().expect("error kept");
    assert_eq!(error.kind, FailureKind::Retryable);
    assert_eq!(error.step.as_deref(), Some("b"));
    assert_eq!(
        view.run.payload,
        json!({"steps": ["a", "b"], "fail": {"b": 99}})
    );
    let kinds = timeline_kinds(&view);
    assert_eq!(kinds.iter().filter(|k| *k == "attempt_failed").count(), 3);
    assert_eq!(kinds.last().map(String::as_str), Some("failed"));
    let listed = h.redb.dead_letters("local", "default").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, view.run.id);
    assert_eq!(h.clock.waits().len(), 2, "no wait after the last attempt");
}

#[tokio::test]
async fn non_retryable_errors_fail_at_once() {
    let h = harness().await;
    let view = h
        .run(
            guests::DIGEST,
            "weekly-digest",
            json!({"user_id": "u_9"}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert_eq!(view.run.attempts, 1);
    let error = view.run.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::NonRetryable);
    assert_eq!(error.step.as_deref(), Some("load-user"));
    assert!(error.message.contains("u_9"), "{}", error.message);
    assert!(view.dead_lettered);
    assert!(h.clock.waits().is_empty());
}

#[tokio::test]
async fn retry_after_sets_the_next_attempt_time() {
    // The rate-limited example against the fake provider answering 429 `Retry-After: 7` twice.
    let h = harness_with(stepwise::EngineConfig {
        egress: stepwise::egress::EgressConfig {
            allow_private: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let base = fake_provider().await;
    let rules = stepwise::egress::TenantEgress {
        rules: vec![stepwise::egress::RuleSpec {
            pattern: base.clone(),
            methods: vec![],
        }],
        limits: None,
    };
    h.engine.set_egress("local", rules).await.unwrap();
    crate::util::provider_control(&base, json!({ "throttle_next": 2, "retry_after": "7" })).await;
    let view = h
        .run(
            guests::RATE_LIMITED,
            "sync-contacts",
            json!({ "api_url": base }),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    assert_eq!(step_attempts(&view, "call-api"), 3);
    let delays: Vec<u64> = h.clock.waits().iter().map(|(f, t)| t - f).collect();
    assert_eq!(
        delays,
        vec![7_000, 7_000],
        "retry-after wins over backoff, no jitter"
    );
    assert_eq!(
        view.run.output,
        Some(json!({ "contacts": ["ada@example.com", "grace@example.com"], "stored": 2 }))
    );
}

#[tokio::test]
async fn failures_outside_steps_spend_the_body_budget() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "body-fail",
            json!({"times": 2}),
            attempts(3, 10),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed);
    assert_eq!(view.run.body_failures, 2);
    let view = h
        .run(
            guests::TESTBED,
            "body-fail",
            json!({"times": 5}),
            attempts(3, 10),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert_eq!(view.run.attempts, 3);
    assert_eq!(view.run.error.as_ref().unwrap().step, None);
}
