//! Sandbox limits: each is a distinct, recorded failure kind — fuel, deadline, memory, trap.

use serde_json::json;
use stepwise::{FailureKind, PolicyOverrides, RunStatus, StepStatus};
use stepwise_tests::guests;

use crate::util::*;

fn once(overrides: PolicyOverrides) -> PolicyOverrides {
    PolicyOverrides {
        max_attempts: Some(1),
        ..overrides
    }
}

#[tokio::test]
async fn a_looping_guest_runs_out_of_fuel() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "spin",
            json!({"in_step": true}),
            once(PolicyOverrides {
                fuel: Some(50_000_000),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let error = view.run.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::FuelExhausted, "{error:?}");
    assert_eq!(
        error.step.as_deref(),
        Some("spin"),
        "attributed to the running step"
    );
    let step = &view.steps[0];
    assert_eq!(step.status, StepStatus::Failed);
    assert_eq!(step.attempts, 1);
}

#[tokio::test]
async fn a_slow_guest_hits_its_deadline() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "spin",
            json!({"in_step": false}),
            once(PolicyOverrides {
                fuel: Some(100_000_000_000),
                timeout_ms: Some(300),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let error = view.run.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Timeout, "{error:?}");
    assert_eq!(error.step, None);
}

#[tokio::test]
async fn a_greedy_guest_hits_its_memory_limit() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "hog",
            json!({"mb": 256}),
            once(PolicyOverrides {
                memory_bytes: Some(32 << 20),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let error = view.run.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::MemoryLimit, "{error:?}");

    // Within the limit the same job completes.
    let view = h
        .run(
            guests::TESTBED,
            "hog",
            json!({"mb": 8}),
            once(PolicyOverrides {
                memory_bytes: Some(32 << 20),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
}

#[tokio::test]
async fn a_panicking_guest_traps_with_its_message() {
    let h = harness().await;
    let view = h
        .run(guests::TESTBED, "panic", json!({}), attempts(2, 10))
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert_eq!(view.run.attempts, 2, "traps are retried");
    let error = view.run.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Trap);
    assert!(error.message.contains("boom"), "{}", error.message);
}

#[tokio::test]
async fn limits_are_distinct_kinds_in_one_store() {
    // The same store records all kinds side by side; a failure in one run never touches another.
    let h = harness().await;
    let ok = h
        .run(
            guests::TESTBED,
            "echo",
            json!({"message": "m", "count": 1}),
            Default::default(),
        )
        .await;
    let fuel = h
        .run(
            guests::TESTBED,
            "spin",
            json!({"in_step": false}),
            once(PolicyOverrides {
                fuel: Some(10_000_000),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(ok.run.status, RunStatus::Completed);
    assert_eq!(fuel.run.error.unwrap().kind, FailureKind::FuelExhausted);
    assert_eq!(
        h.engine.view(&ok.run.id).await.unwrap().run.status,
        RunStatus::Completed
    );
}
