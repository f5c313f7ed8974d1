//! Cancelling runs in every state, through the engine on a real store with real guests, and a
//! cancel racing with settlement; then through the HTTP API and the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use stepwise::model::EventKind;
use stepwise::{EngineError, NewRun, PolicyOverrides, RunStatus};
use stepwise_tests::guests;

use crate::util::*;

/// How long a test waits for something that happens within milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

async fn new_run(h: &Harness, module: &str, job: &str, payload: serde_json::Value) -> String {
    new_run_with(h, module, job, payload, PolicyOverrides::default()).await
}

async fn new_run_with(
    h: &Harness,
    module: &str,
    job: &str,
    payload: serde_json::Value,
    overrides: PolicyOverrides,
) -> String {
    h.engine
        .enqueue(NewRun {
            overrides,
            ..NewRun::local(module, job, payload.to_string())
        })
        .await
        .unwrap()
        .run
        .id
}

/// Executes runs until `id` is in `status` (the manual clock is not advanced past it).
async fn until_status(h: &Harness, id: &str, status: RunStatus) {
    let store = h.redb.clone();
    let target = id.to_owned();
    h.engine
        .work_until_async(move || {
            let (store, id) = (store.clone(), target.clone());
            async move {
                store
                    .run(&id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.status == status)
            }
        })
        .await
        .unwrap();
    assert_eq!(h.redb.run(id).unwrap().unwrap().status, status);
}

fn last_entry_is_the_cancel(view: &stepwise::RunView, says: &str) {
    let last = view.timeline.last().expect("a timeline");
    assert_eq!(last.kind, EventKind::Cancelled, "{:?}", view.timeline);
    assert!(last.detail.contains(says), "{}", last.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_every_state_can_be_cancelled_and_stay_cancelled() {
    let h = harness().await;
    let module = h.deploy(guests::TESTBED).await;
    let local = stepwise::model::LOCAL_TENANT;

    // Queued.
    let queued = new_run(&h, &module, "echo", json!({"message": "m", "count": 1})).await;
    let run = h
        .engine
        .cancel_for(local, &queued, "tester", Some("no longer needed"))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    let view = h.engine.view(&queued).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Cancelled);
    assert!(view.run.finished_at.is_some() && view.run.ready_at.is_none());
    assert!(!view.dead_lettered);
    last_entry_is_the_cancel(&view, "by tester: no longer needed");
    // Final: not again, not retried, never run.
    let again = h.engine.cancel_for(local, &queued, "tester", None).await;
    assert!(matches!(
        again,
        Err(EngineError::NotCancellable {
            status: RunStatus::Cancelled,
            ..
        })
    ));
    let retry = h.engine.retry_for(local, &queued).await;
    assert!(
        matches!(retry, Err(EngineError::NotFailed { .. })),
        "{retry:?}"
    );
    h.engine.drain().await.unwrap();
    assert_eq!(h.engine.view(&queued).await.unwrap().run.attempts, 0);

    // Retrying (its backoff never elapses on the manual clock).
    let retrying = new_run_with(
        &h,
        &module,
        "flaky",
        json!({"steps": ["a"], "fail": {"a": 9}}),
        PolicyOverrides {
            max_attempts: Some(5),
            ..PolicyOverrides::default()
        },
    )
    .await;
    until_status(&h, &retrying, RunStatus::Retrying).await;
    h.engine
        .cancel_for(local, &retrying, "tester", None)
        .await
        .unwrap();

    // Sleeping.
    let sleeping = new_run(&h, &module, "sleeper", json!({"ms": 3_600_000})).await;
    until_status(&h, &sleeping, RunStatus::Sleeping).await;
    h.engine
        .cancel_for(local, &sleeping, "tester", None)
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(7200));
    h.engine.drain().await.unwrap();
    for id in [&retrying, &sleeping] {
        let view = h.engine.view(id).await.unwrap();
        assert_eq!(view.run.status, RunStatus::Cancelled, "{id}");
        last_entry_is_the_cancel(&view, "by tester");
    }
    let after = h.engine.view(&sleeping).await.unwrap();
    assert!(
        after.steps.iter().all(|s| s.name != "after"),
        "nothing ran after the cancel: {:?}",
        after.steps
    );

    // Running: a guest spinning inside a step is stopped, and the step is not completed.
    let spinning = new_run_with(
        &h,
        &module,
        "spin",
        json!({"in_step": true}),
        PolicyOverrides {
            fuel: Some(1_000_000_000_000),
            timeout_ms: Some(60_000),
            ..PolicyOverrides::default()
        },
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let scheduler = {
        let (engine, stop) = (h.engine.clone(), stop.clone());
        tokio::spawn(async move { engine.run_scheduler(stop).await })
    };
    let deadline = Instant::now() + PATIENCE;
    while h.engine.executing(&spinning).and_then(|e| e.step).is_none() {
        assert!(Instant::now() < deadline, "the spin never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.engine
        .cancel_for(local, &spinning, "tester", Some("stuck"))
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while h.engine.executing(&spinning).is_some() {
        assert!(
            Instant::now() < deadline,
            "the cancelled attempt kept running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    h.engine.wake();
    scheduler.await.unwrap().unwrap();
    let view = h.engine.view(&spinning).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Cancelled);
    assert!(
        view.run.output.is_none() && view.run.error.is_none(),
        "{:?}",
        view.run
    );
    assert!(
        view.steps
            .iter()
            .all(|s| s.status != stepwise::StepStatus::Completed)
    );
    last_entry_is_the_cancel(&view, "stuck");
}

/// Cancels racing with attempts that complete at once: every run ends either completed (and
/// the cancel was refused as too late) or cancelled (and the attempt's outcome was refused);
/// never both, never neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_with_settlement_never_loses_either() {
    let h = harness().await;
    let module = h.deploy(guests::TESTBED).await;
    let local = stepwise::model::LOCAL_TENANT;
    let stop = Arc::new(AtomicBool::new(false));
    let scheduler = {
        let (engine, stop) = (h.engine.clone(), stop.clone());
        tokio::spawn(async move { engine.run_scheduler(stop).await })
    };
    let (mut cancelled, mut completed) = (0, 0);
    for i in 0..60u64 {
        let id = new_run(&h, &module, "echo", json!({"message": "m", "count": i})).await;
        // Spread the cancels over the attempt's life (about a millisecond): before, during
        // and after it. A timer would round up to a millisecond; this waits exactly.
        let wait = Duration::from_micros((i % 12) * 100);
        let started = Instant::now();
        while started.elapsed() < wait {
            std::hint::spin_loop();
        }
        let answer = h.engine.cancel_for(local, &id, "racer", None).await;
        let deadline = Instant::now() + PATIENCE;
        let view = loop {
            let view = h.engine.view(&id).await.unwrap();
            if view.run.status.is_final() && h.engine.executing(&id).is_none() {
                break view;
            }
            assert!(Instant::now() < deadline, "run {id} never ended");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        match answer {
            Ok(_) => {
                cancelled += 1;
                assert_eq!(view.run.status, RunStatus::Cancelled, "{id}");
                assert!(
                    view.run.output.is_none(),
                    "{id}: a refused attempt left its output"
                );
                assert!(
                    !view.timeline.iter().any(|e| e.kind == EventKind::Completed),
                    "{id}: {:?}",
                    view.timeline
                );
            }
            Err(EngineError::NotCancellable { status, .. }) => {
                completed += 1;
                assert_eq!(status, RunStatus::Completed, "{id}");
                assert_eq!(view.run.status, RunStatus::Completed, "{id}");
                assert!(!view.timeline.iter().any(|e| e.kind == EventKind::Cancelled));
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    h.engine.wake();
    scheduler.await.unwrap().unwrap();
    eprintln!("{cancelled} cancelled, {completed} completed first");
    assert_eq!(cancelled + completed, 60);
}
