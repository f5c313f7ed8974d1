//! Flows end to end on a real store with real guest components: events sent before and after a
//! wait is reached, timeouts on the injected clock, broadcast, scoping by key and tenant,
//! idempotent sends; child runs invoked, failed, fanned out and joined, spawned, listed and
//! cancelled with their parent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use stepwise::RunFilter;
use stepwise::engine::SendEvent;
use stepwise::store::{Durability, RedbStore};
use stepwise::{EngineConfig, EngineError, ManualClock, NewRun, PolicyOverrides, RunStatus};
use stepwise_store::faults::FaultyStore;
use stepwise_tests::guests;

use crate::util::*;

const LOCAL: &str = stepwise::model::LOCAL_TENANT;

async fn start(h: &Harness, job: &str, payload: Value) -> String {
    let module = h.deploy(guests::FLOWS).await;
    h.engine
        .enqueue(NewRun::local(&module, job, payload.to_string()))
        .await
        .unwrap()
        .run
        .id
}

async fn send(h: &Harness, tenant: &str, name: &str, key: Option<&str>, payload: Value) -> u64 {
    h.engine
        .send_event(
            tenant,
            SendEvent {
                name: name.into(),
                correlation_key: key.map(str::to_owned),
                payload: payload.to_string(),
                id: None,
            },
        )
        .await
        .unwrap()
        .woken
}

fn output(h: &Harness, id: &str) -> Value {
    h.redb
        .run(id)
        .unwrap()
        .unwrap()
        .output
        .unwrap_or(Value::Null)
}

fn await_payload(key: &str, timeout_ms: u64) -> Value {
    json!({"event": "order.paid", "key": key, "timeout_ms": timeout_ms})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_before_the_wait_is_reached_is_matched() {
    let h = harness().await;
    let id = start(&h, "await-event", await_payload("o-1", 60_000)).await;
    // Sent after the run was created, before any attempt reached the wait.
    assert_eq!(
        send(&h, LOCAL, "order.paid", Some("o-1"), json!({"cents": 5})).await,
        0
    );
    until_status(&h, &id, RunStatus::Completed).await;
    assert_eq!(output(&h, &id)["got"], json!({"cents": 5}));
    let view = h.engine.view(&id).await.unwrap();
    assert!(timeline_kinds(&view).contains(&"event_received".to_owned()));
    assert!(!timeline_kinds(&view).contains(&"waiting".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_while_waiting_resumes_the_run_and_replays_its_steps() {
    let h = harness().await;
    let id = start(&h, "await-event", await_payload("o-2", 60_000)).await;
    until_status(&h, &id, RunStatus::Waiting).await;
    let run = h.redb.run(&id).unwrap().unwrap();
    let wait = serde_json::to_value(run.wait.as_ref().unwrap()).unwrap();
    assert_eq!(wait["kind"], "event");
    assert_eq!(wait["name"], "order.paid");
    assert_eq!(wait["correlation_key"], "o-2");
    assert_eq!(run.ready_at, Some(run.created_at + 60_000));
    assert_eq!(
        send(&h, LOCAL, "order.paid", Some("o-2"), json!(7)).await,
        1
    );
    until_status(&h, &id, RunStatus::Completed).await;
    let out = output(&h, &id);
    assert_eq!(out["got"], json!(7));
    assert_eq!(
        out["after_in_attempt"],
        json!(2),
        "resumed in the second attempt"
    );
    let view = h.engine.view(&id).await.unwrap();
    assert_eq!(step_attempts(&view, "before"), 1, "not run again on resume");
    // The event lists the wait that took it.
    let events = h
        .engine
        .list_events(LOCAL, &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].resumed, vec![(id.clone(), "wait".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_with_no_event_times_out_at_its_deadline_with_none() {
    let h = harness().await;
    let id = start(&h, "await-event", await_payload("o-3", 30_000)).await;
    until_status(&h, &id, RunStatus::Waiting).await;
    h.clock.advance(Duration::from_millis(29_999));
    drain_due(&h).await;
    assert_eq!(h.redb.run(&id).unwrap().unwrap().status, RunStatus::Waiting);
    h.clock.advance(Duration::from_millis(1));
    until_status(&h, &id, RunStatus::Completed).await;
    assert_eq!(output(&h, &id)["got"], Value::Null);
    let view = h.engine.view(&id).await.unwrap();
    assert!(timeline_kinds(&view).contains(&"wait_timed_out".to_owned()));
    // An event after the deadline changes nothing.
    assert_eq!(
        send(&h, LOCAL, "order.paid", Some("o-3"), json!(1)).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_waiting_on_a_key_gets_the_event_and_others_get_nothing() {
    let h = harness().await;
    let a = start(&h, "await-event", await_payload("shared", 60_000)).await;
    let b = start(&h, "await-event", await_payload("shared", 60_000)).await;
    let other_key = start(&h, "await-event", await_payload("other", 60_000)).await;
    for id in [&a, &b, &other_key] {
        until_status(&h, id, RunStatus::Waiting).await;
    }
    // Another tenant's event with the same name and key resumes nothing here.
    assert_eq!(
        send(&h, "someone-else", "order.paid", Some("shared"), json!(0)).await,
        0
    );
    assert_eq!(
        send(&h, LOCAL, "order.paid", Some("shared"), json!("both")).await,
        2
    );
    until_status(&h, &a, RunStatus::Completed).await;
    until_status(&h, &b, RunStatus::Completed).await;
    assert_eq!(output(&h, &a)["got"], json!("both"));
    assert_eq!(output(&h, &b)["got"], json!("both"));
    drain_due(&h).await;
    assert_eq!(
        h.redb.run(&other_key).unwrap().unwrap().status,
        RunStatus::Waiting
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_waits_of_one_run_on_one_key_take_one_event_each() {
    let h = harness().await;
    let id = start(&h, "await-twice", await_payload("k", 60_000)).await;
    send(&h, LOCAL, "order.paid", Some("k"), json!(1)).await;
    send(&h, LOCAL, "order.paid", Some("k"), json!(2)).await;
    until_status(&h, &id, RunStatus::Completed).await;
    assert_eq!(output(&h, &id), json!([1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_makes_a_send_idempotent_and_a_different_body_a_conflict() {
    let h = harness().await;
    let event = |payload: Value| SendEvent {
        name: "user.signed_up".into(),
        correlation_key: None,
        payload: payload.to_string(),
        id: Some("evt-1".into()),
    };
    let first = h
        .engine
        .send_event(LOCAL, event(json!({"a": 1})))
        .await
        .unwrap();
    assert!(!first.repeated);
    let again = h
        .engine
        .send_event(LOCAL, event(json!({"a": 1})))
        .await
        .unwrap();
    assert!(again.repeated);
    assert_eq!(again.event, first.event);
    let err = h
        .engine
        .send_event(LOCAL, event(json!({"a": 2})))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::EventConflict { .. }), "{err}");
    let bad = SendEvent {
        name: "has space".into(),
        ..event(json!(1))
    };
    assert!(matches!(
        h.engine.send_event(LOCAL, bad).await.unwrap_err(),
        EngineError::InvalidEvent(_)
    ));
    assert_eq!(h.redb.tenant_usage(LOCAL).unwrap().events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_their_retention_are_swept() {
    let h = harness().await;
    send(&h, LOCAL, "tick", None, json!(1)).await;
    assert_eq!(h.engine.sweep_events().await.unwrap(), 0);
    h.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(h.engine.sweep_events().await.unwrap(), 1);
    assert!(
        h.engine
            .list_events(LOCAL, &Default::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.redb.tenant_usage(LOCAL).unwrap().events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoked_child_hands_its_output_to_the_parent() {
    let h = harness().await;
    let id = start(&h, "fan-out", json!({"job": "double", "count": 1})).await;
    until_status(&h, &id, RunStatus::Completed).await;
    assert_eq!(output(&h, &id), json!({"outputs": [0]}));
    let view = h.engine.view(&id).await.unwrap();
    assert_eq!(view.children.len(), 1);
    let child = h.redb.run(&view.children[0]).unwrap().unwrap();
    assert_eq!(child.parent.as_ref().unwrap().run, id);
    assert_eq!(child.parent.as_ref().unwrap().step, "start");
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(step_attempts(&view, "before"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_fails_for_good_fails_the_parents_step_with_its_kind() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let id = h
        .engine
        .enqueue(NewRun {
            overrides: PolicyOverrides {
                max_attempts: Some(1),
                ..Default::default()
            },
            ..NewRun::local(
                &module,
                "fan-out",
                json!({"job": "refuse", "count": 2}).to_string(),
            )
        })
        .await
        .unwrap()
        .run
        .id;
    until_status(&h, &id, RunStatus::Failed).await;
    let run = h.redb.run(&id).unwrap().unwrap();
    let error = run.error.unwrap();
    assert_eq!(error.kind, stepwise::FailureKind::NonRetryable);
    assert_eq!(error.step.as_deref(), Some("start"));
    assert!(
        error.message.contains("child run run_"),
        "{}",
        error.message
    );
    assert!(error.message.contains("refused 0"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_children_fan_out_and_join_in_order_each_started_once() {
    let h = harness().await;
    let id = start(&h, "fan-out", json!({"job": "double", "count": 50})).await;
    until_status(&h, &id, RunStatus::Completed).await;
    let expected: Vec<u32> = (0..50).map(|n| n * 2).collect();
    assert_eq!(output(&h, &id), json!({"outputs": expected}));
    let filter = RunFilter {
        parent: Some(id.clone()),
        ..Default::default()
    };
    let children = h
        .engine
        .list_runs(LOCAL, &filter, None, 1000)
        .await
        .unwrap();
    assert_eq!(children.runs.len(), 50, "each child started once");
    assert!(
        children
            .runs
            .iter()
            .all(|c| c.status == RunStatus::Completed)
    );
}

/// The children are started, then storage fails before the step that started them is
/// recorded (as a crash there would): the next attempt starts the step again and finds the
/// same children through their derived idempotency keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_parent_attempt_finds_the_children_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbStore::open(dir.path(), Durability::Immediate).unwrap());
    let faulty = Arc::new(FaultyStore::new(redb.clone()));
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = engine_over(faulty.clone(), EngineConfig::default(), &clock).await;
    let module = engine
        .deploy(&std::fs::read(guests::FLOWS).unwrap())
        .await
        .unwrap()
        .hash
        .clone();
    let payload = json!({"job": "double", "count": 3, "first": true});
    let id = engine
        .enqueue(NewRun::local(&module, "fan-out", payload.to_string()))
        .await
        .unwrap()
        .run
        .id;
    faulty.fail_record_step.store(1, Ordering::SeqCst);
    let (store, target) = (redb.clone(), id.clone());
    engine
        .work_until_async(move || {
            let (store, id) = (store.clone(), target.clone());
            async move {
                // The faulted attempt started the children and is held back.
                store.run(&id).unwrap().unwrap().attempts == 0
                    && store.waiting().unwrap().len() >= 4
            }
        })
        .await
        .unwrap();
    assert_eq!(
        faulty.fail_record_step.load(Ordering::SeqCst),
        0,
        "the fault was hit"
    );
    clock.advance(Duration::from_secs(2));
    let view = engine.run_to_end(&id).await.unwrap();
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    assert_eq!(view.run.output, Some(json!({"outputs": [0, 2, 4]})));
    let filter = RunFilter {
        parent: Some(id.clone()),
        ..Default::default()
    };
    let children = engine
        .list_runs(LOCAL, &filter, None, 100)
        .await
        .unwrap()
        .runs;
    assert_eq!(children.len(), 3, "each child started once: {children:?}");
    let step = view.steps.iter().find(|s| s.name == "start").unwrap();
    assert_eq!(step.attempts, 1, "the faulted attempt was not charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_children_run_on_their_own_and_cancelling_the_parent_cancels_them() {
    let h = harness().await;
    let id = start(
        &h,
        "fan-out",
        json!({"job": "linger", "count": 4, "spawn": true}),
    )
    .await;
    until_status(&h, &id, RunStatus::Completed).await;
    let ids: Vec<String> = serde_json::from_value(output(&h, &id)["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 4);
    // A parent that waits on children, cancelled: its children go with it.
    let parent = start(&h, "fan-out", json!({"job": "linger", "count": 2})).await;
    until_status(&h, &parent, RunStatus::Waiting).await;
    drain_due(&h).await;
    let view = h.engine.view(&parent).await.unwrap();
    assert_eq!(view.children.len(), 2);
    h.engine
        .cancel_for(LOCAL, &parent, "tester", Some("done"))
        .await
        .unwrap();
    for child in &view.children {
        let run = h.redb.run(child).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Cancelled, "{child}");
    }
    // Leaving children alone.
    let spawned = h.redb.run(&ids[0]).unwrap().unwrap();
    assert_eq!(spawned.parent.unwrap().run, id);
    let keep = start(&h, "fan-out", json!({"job": "linger", "count": 1})).await;
    until_status(&h, &keep, RunStatus::Waiting).await;
    let kept = h.engine.view(&keep).await.unwrap().children;
    h.engine
        .cancel_with(LOCAL, &keep, "tester", None, false)
        .await
        .unwrap();
    assert_ne!(
        h.redb.run(&kept[0]).unwrap().unwrap().status,
        RunStatus::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiting_run_stays_cancelled_when_its_event_arrives() {
    let h = harness().await;
    let id = start(&h, "await-event", await_payload("gone", 60_000)).await;
    until_status(&h, &id, RunStatus::Waiting).await;
    let run = h
        .engine
        .cancel_for(LOCAL, &id, "tester", Some("no longer needed"))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(run.wait.is_none());
    assert_eq!(
        send(&h, LOCAL, "order.paid", Some("gone"), json!(1)).await,
        0
    );
    drain_due(&h).await;
    let run = h.redb.run(&id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(run.ready_at.is_none());
}

/// A parent joining children, woken by the last of them, settles its step from their
/// outputs; many such joins at once, each child racing its siblings' ends, never lose a
/// wake-up (a lost one would leave a parent waiting forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_joins_at_once_all_complete() {
    let h = harness().await;
    let mut parents = Vec::new();
    for _ in 0..20 {
        parents.push(start(&h, "fan-out", json!({"job": "double", "count": 5})).await);
    }
    let (store, ids) = (h.redb.clone(), parents.clone());
    h.engine
        .work_until_async(move || {
            let (store, ids) = (store.clone(), ids.clone());
            async move {
                ids.iter().all(|id| {
                    store
                        .run(id)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.status == RunStatus::Completed)
                })
            }
        })
        .await
        .unwrap();
    for id in &parents {
        assert_eq!(output(&h, id), json!({"outputs": [0, 2, 4, 6, 8]}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_failure_keeps_its_kind_unless_the_guest_returns_its_own_error() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let enqueue = |payload: Value| {
        let engine = h.engine.clone();
        let module = module.clone();
        async move {
            engine
                .enqueue(NewRun {
                    overrides: PolicyOverrides {
                        max_attempts: Some(2),
                        backoff: Some(stepwise::Backoff {
                            initial_ms: 1,
                            max_ms: 1,
                            multiplier: 1.0,
                            jitter: 0.0,
                        }),
                        ..Default::default()
                    },
                    ..NewRun::local(&module, "fan-out", payload.to_string())
                })
                .await
                .unwrap()
                .run
                .id
        }
    };
    // The child's retryable failure is the step's: the parent retries it, then gives up.
    let kept = enqueue(json!({"job": "flake", "count": 1})).await;
    // The guest catches it and ends with its own final error.
    let own = enqueue(json!({"job": "flake", "count": 1, "own_error": "give up"})).await;
    let (store, ids) = (h.redb.clone(), [kept.clone(), own.clone()]);
    let clock = h.clock.clone();
    h.engine
        .work_until_async(move || {
            let (store, ids, clock) = (store.clone(), ids.clone(), clock.clone());
            async move {
                clock.advance(Duration::from_millis(5));
                ids.iter().all(|id| {
                    store
                        .run(id)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.status.is_final())
                })
            }
        })
        .await
        .unwrap();
    let kept = h.redb.run(&kept).unwrap().unwrap();
    let error = kept.error.unwrap();
    assert_eq!(kept.status, RunStatus::Failed);
    assert_eq!(
        error.kind,
        stepwise::FailureKind::Retryable,
        "{}",
        error.message
    );
    assert!(error.message.contains("flaked 0"), "{}", error.message);
    // Counted on the step: the parent's run may also have suspended once, before its child
    // ended, which depends on timing.
    let step_attempts = |id: &str| {
        let steps = h.redb.steps(id).unwrap();
        steps.iter().find(|s| s.name == "start").unwrap().attempts
    };
    assert_eq!(
        step_attempts(&kept.id),
        2,
        "the retryable child failure was retried"
    );
    let own = h.redb.run(&own).unwrap().unwrap();
    let error = own.error.unwrap();
    assert_eq!(error.kind, stepwise::FailureKind::NonRetryable);
    assert_eq!(error.message, "give up");
    assert_eq!(step_attempts(&own.id), 1, "a final error is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_by_name_and_key_and_charged_to_stored_bytes() {
    let h = harness().await;
    let before = h.redb.tenant_usage(LOCAL).unwrap().stored_bytes;
    for (name, key) in [
        ("a", Some("1")),
        ("a", Some("2")),
        ("b", Some("1")),
        ("a", None),
    ] {
        send(&h, LOCAL, name, key, json!({"pad": "x".repeat(100)})).await;
    }
    let after = h.redb.tenant_usage(LOCAL).unwrap().stored_bytes;
    assert!(
        after >= before + 400,
        "events are charged: {before} -> {after}"
    );
    let list = |name: Option<&str>, key: Option<&str>| {
        let filter = stepwise::engine::EventFilter {
            name: name.map(str::to_owned),
            correlation_key: key.map(str::to_owned),
        };
        let engine = h.engine.clone();
        async move {
            engine
                .list_events(LOCAL, &filter, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.event.name, e.event.correlation_key))
                .collect::<Vec<_>>()
        }
    };
    let some = |k: &str| Some(k.to_owned());
    assert_eq!(list(Some("a"), None).await.len(), 3);
    assert_eq!(
        list(Some("a"), Some("1")).await,
        vec![("a".to_owned(), some("1"))]
    );
    assert_eq!(list(None, None).await.len(), 4);
    assert_eq!(
        list(None, None).await[0],
        ("a".to_owned(), None),
        "newest first"
    );
    h.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(h.engine.sweep_events().await.unwrap(), 4);
    assert_eq!(h.redb.tenant_usage(LOCAL).unwrap().stored_bytes, before);
}
