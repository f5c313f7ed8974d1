//! Manual retry of dead-lettered runs, durable sleep, and attempts the host could not record.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;
use stepwise::model::EventKind;
use stepwise::store::RedbStore;
use stepwise::{
    Durability, Engine, EngineConfig, EngineError, ManualClock, NewRun, PolicyOverrides, RunStatus,
    RuntimeConfig, SeededJitter, StepStatus,
};
use stepwise_store::faults::FaultyStore;
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

/// A storage failure under an attempt is the host's fault, whether a step's completion or
/// the settlement could not be written: the attempt is dropped without being charged (a job
/// allowed one attempt still completes), the run runs again, and the fault is counted (and
/// on the run's timeline when storage takes it).
#[tokio::test]
async fn a_storage_failure_under_an_attempt_does_not_use_the_guests_attempts() {
    for fault in ["record_step", "write_runs"] {
        let dir = tempfile::tempdir().unwrap();
        let redb = Arc::new(RedbStore::open(dir.path(), Durability::Immediate).unwrap());
        let faulty = Arc::new(FaultyStore::new(redb));
        let engine = engine_over(
            faulty.clone(),
            EngineConfig::default(),
            &ManualClock::new(START),
        )
        .await;
        let module = engine
            .deploy(&std::fs::read(guests::TESTBED).unwrap())
            .await
            .unwrap()
            .hash
            .clone();
        let id = engine
            .enqueue(NewRun {
                overrides: PolicyOverrides {
                    max_attempts: Some(1),
                    ..PolicyOverrides::default()
                },
                ..NewRun::local(&module, "many-steps", json!({"n": 2}).to_string())
            })
            .await
            .unwrap()
            .run
            .id;
        let counter = match fault {
            "record_step" => &faulty.fail_record_step,
            _ => &faulty.fail_write_runs,
        };
        counter.store(1, Ordering::SeqCst);
        let view = engine.run_to_end(&id).await.unwrap();
        assert_eq!(
            view.run.status,
            RunStatus::Completed,
            "{fault}: {:?}",
            view.run.error
        );
        // The faulted invocation keeps its own number, but the budget (one attempt) was not
        // charged for it: the run completed on its second invocation.
        assert_eq!(
            view.run.attempts, 2,
            "{fault}: each invocation has its number"
        );
        assert!(
            view.steps.iter().all(|s| s.attempts == 1),
            "{fault}: {:?}",
            view.steps
        );
        assert_eq!(
            counter.load(Ordering::SeqCst),
            0,
            "{fault}: the fault was hit"
        );
        assert_eq!(engine.metrics().host_faults(), 1, "{fault}");
        let faults: Vec<_> = view
            .timeline
            .iter()
            .filter(|e| e.kind == EventKind::HostFault)
            .collect();
        if fault == "record_step" {
            assert_eq!(faults.len(), 1, "{:?}", view.timeline);
            assert!(
                faults[0].detail.contains("injected fault"),
                "{}",
                faults[0].detail
            );
        }
    }
}

/// After a restart no module is loaded: enqueues are checked against the deployment's
/// record without compiling anything, and the first runs to start, all at once, share one
/// compilation of their module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_after_a_restart_compile_a_module_once() {
    let h = harness().await;
    h.engine.create_tenant("acme").await.unwrap();
    let bytes = std::fs::read(guests::TESTBED).unwrap();
    let (module, _) = h.engine.deploy_for("acme", &bytes).await.unwrap();
    // A second engine on the same store starts with nothing loaded, as a restarted host.
    let restarted = Engine::new(
        h.redb.clone(),
        EngineConfig {
            runtime: RuntimeConfig {
                compile_cache: None,
                max_instances: 16,
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        Arc::new(h.clock.clone()),
        Arc::new(SeededJitter::new(SEED)),
    )
    .await
    .unwrap();
    for i in 0..8 {
        restarted
            .enqueue(NewRun {
                tenant: "acme".into(),
                module: None,
                ..NewRun::local("", "echo", json!({"message": "m", "count": i}).to_string())
            })
            .await
            .unwrap();
    }
    let err = restarted
        .enqueue(NewRun {
            tenant: "acme".into(),
            module: None,
            ..NewRun::local("", "no-such-job", "{}")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownJob { .. }), "{err}");
    assert_eq!(
        restarted.runtime().compilations(),
        0,
        "enqueues compiled nothing"
    );

    let loads: Vec<_> = (0..8)
        .map(|_| {
            let (engine, hash) = (restarted.clone(), module.hash.clone());
            tokio::spawn(async move { engine.module(&hash).await })
        })
        .collect();
    let mut loaded = Vec::new();
    for load in loads {
        loaded.push(load.await.unwrap().unwrap());
    }
    assert!(loaded.iter().all(|m| Arc::ptr_eq(m, &loaded[0])));
    assert_eq!(
        restarted.runtime().compilations(),
        1,
        "one compilation for all"
    );
}
