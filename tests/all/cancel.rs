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
    let cancelled_at = Instant::now();
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
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A figure for the docs, not an assertion: how long the spinning attempt outlived its
    // cancel (the cancel's own write included).
    eprintln!("cancel to attempt end: {:?}", cancelled_at.elapsed());
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

/// A bulk cancel takes every run of the tenant matching its filters that has not ended, and
/// nothing else.
#[tokio::test]
async fn a_bulk_cancel_takes_exactly_the_matching_runs() {
    let h = harness().await;
    let module = h.deploy(guests::TESTBED).await;
    let local = stepwise::model::LOCAL_TENANT;
    let mut bulk = Vec::new();
    let mut other = Vec::new();
    for i in 0..5 {
        for (queue, ids) in [("bulk", &mut bulk), ("other", &mut other)] {
            let id = h
                .engine
                .enqueue(NewRun {
                    queue: queue.into(),
                    ..NewRun::local(
                        &module,
                        "echo",
                        json!({"message": "m", "count": i}).to_string(),
                    )
                })
                .await
                .unwrap()
                .run
                .id;
            ids.push(id);
        }
    }
    // One of the bulk queue's runs has ended already: the bulk cancel skips it.
    h.engine
        .cancel_for(local, &bulk[0], "tester", None)
        .await
        .unwrap();
    let filter = stepwise::RunFilter {
        queue: Some("bulk".into()),
        ..stepwise::RunFilter::default()
    };
    let done = h
        .engine
        .cancel_matching(local, &filter, false, "tester", Some("queue drained"))
        .await
        .unwrap();
    let statuses = |ids: &[String]| {
        ids.iter()
            .map(|id| h.redb.run(id).unwrap().unwrap().status)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        done.cancelled,
        bulk[1..].to_vec(),
        "oldest first, the ended one skipped"
    );
    assert!(
        statuses(&bulk[1..])
            .iter()
            .all(|s| *s == RunStatus::Cancelled)
    );
    assert!(
        statuses(&other).iter().all(|s| !s.is_final()),
        "another queue's runs stay"
    );
    assert!(!done.more);
    let again = h
        .engine
        .cancel_matching(local, &filter, false, "tester", None)
        .await
        .unwrap();
    assert!(again.cancelled.is_empty());
}
