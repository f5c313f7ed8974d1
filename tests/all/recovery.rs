//! Manual retry of dead-lettered runs and durable sleep.

use serde_json::json;
use stepwise::{EngineError, RunStatus, StepStatus};
use stepwise_tests::guests;

use crate::util::*;

#[tokio::test]
async fn manual_retry_gives_a_fresh_budget_and_reuses_completed_steps() {
    let h = harness().await;
    // b fails on its first three attempts; two attempts per step are not enough.
    let view = h
        .run(
            guests::TESTBED,
            "flaky",
            json!({"steps": ["a", "b", "c"], "fail": {"b": 3}}),
            attempts(2, 10),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert!(view.dead_lettered);
    let id = view.run.id.clone();

    let err = h.engine.retry("run_nope", None).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownRun(_)));

    h.engine.retry(&id, None).await.unwrap();
    let view = h.engine.run_to_end(&id).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    assert!(!view.dead_lettered);
    assert!(h.redb.dead_letters("local", "default").unwrap().is_empty());
    assert_eq!(
        executions(&view, "a"),
        1,
        "a completed before and was reused"
    );
    assert_eq!(executions(&view, "b"), 4);
    assert_eq!(executions(&view, "c"), 1);
    assert!(timeline_kinds(&view).contains(&"manual_retry".to_owned()));

    let err = h.engine.retry(&id, None).await.unwrap_err();
    assert!(matches!(err, EngineError::NotFailed { .. }), "{err}");
}

#[tokio::test]
async fn durable_sleep_suspends_and_resumes_after_the_time() {
    let h = harness().await;
    let id = h
        .enqueue(
            guests::TESTBED,
            "sleeper",
            json!({"ms": 3_600_000}),
            Default::default(),
        )
        .await;
    let store = h.redb;
    // Run until the run is suspended: no instance is held, the timer is in the journal.
    h.engine
        .work_until(|| {
            store
                .run(&id)
                .unwrap()
                .is_some_and(|r| r.status == RunStatus::Sleeping)
        })
        .await
        .unwrap();
    let view = h.engine.view(&id).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Sleeping);
    assert_eq!(view.run.ready_at, Some(START + 3_600_000));
    let nap = view.steps.iter().find(|s| s.name == "nap").unwrap();
    assert_eq!(nap.status, StepStatus::Sleeping);
    assert_eq!(executions(&view, "after"), 0);

    let view = h.engine.run_to_end(&id).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Completed);
    assert_eq!(view.run.attempts, 2);
    assert_eq!(executions(&view, "before"), 1);
    assert_eq!(executions(&view, "after"), 1);
    assert_eq!(h.clock.waits(), vec![(START, START + 3_600_000)]);
    assert!(timeline_kinds(&view).contains(&"sleeping".to_owned()));
}
