//! Idempotent enqueue, tenant-routed jobs and priorities, through the engine on a real store.

use std::sync::Arc;

use serde_json::json;
use stepwise::{EngineError, NewRun, RunStatus};
use stepwise_tests::guests;

use crate::util::*;

fn keyed(tenant: &str, key: &str, payload: serde_json::Value) -> NewRun {
    NewRun {
        tenant: tenant.into(),
        module: None,
        idempotency_key: Some(key.into()),
        ..NewRun::local("", "echo", payload.to_string())
    }
}

/// A repeated key is no shortcut past validation, and its fingerprint covers the job and
/// every option that changes what the run does: the same payload for another job, or with
/// other options, is a conflict naming what differs.
#[tokio::test]
async fn a_repeated_key_is_validated_whole_and_compared_on_job_and_options() {
    let h = harness().await;
    h.engine.create_tenant("acme").await.unwrap();
    let bytes = std::fs::read(guests::TESTBED).unwrap();
    h.engine.deploy_for("acme", &bytes).await.unwrap();
    let payload = json!({"message": "a"});
    let first = h
        .engine
        .enqueue(keyed("acme", "k", payload.clone()))
        .await
        .unwrap();

    // Invalid requests under a held key are refused as invalid, not deduplicated.
    let zero_attempts = NewRun {
        overrides: stepwise::PolicyOverrides {
            max_attempts: Some(0),
            ..Default::default()
        },
        ..keyed("acme", "k", payload.clone())
    };
    let no_fuel = NewRun {
        overrides: stepwise::PolicyOverrides {
            fuel: Some(0),
            ..Default::default()
        },
        ..keyed("acme", "k", payload.clone())
    };
    for bad in [zero_attempts, no_fuel] {
        let err = h.engine.enqueue(bad).await.unwrap_err();
        assert!(matches!(err, EngineError::Policy(_)), "{err}");
    }
    let unknown = NewRun {
        job: "no-such-job".into(),
        ..keyed("acme", "k", payload.clone())
    };
    let err = h.engine.enqueue(unknown).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownJob { .. }), "{err}");
    let far = NewRun {
        delay_ms: Some(u64::MAX),
        ..keyed("acme", "k", payload.clone())
    };
    assert!(matches!(
        h.engine.enqueue(far).await.unwrap_err(),
        EngineError::Policy(_)
    ));

    // The same payload for another job, or with other options: conflicts naming the part.
    let differs = |req: NewRun| {
        let engine = h.engine.clone();
        async move {
            match engine.enqueue(req).await {
                Err(EngineError::IdempotencyConflict { run, differs, .. }) => (run, differs),
                other => panic!("not a conflict: {:?}", other.map(|e| e.run.id)),
            }
        }
    };
    let other_job = NewRun {
        job: "chatty".into(),
        ..keyed("acme", "k", payload.clone())
    };
    assert_eq!(
        differs(other_job).await,
        (first.run.id.clone(), vec!["job"])
    );
    let more_attempts = NewRun {
        overrides: stepwise::PolicyOverrides {
            max_attempts: Some(9),
            timeout_ms: Some(1_000),
            ..Default::default()
        },
        priority: 5,
        ..keyed("acme", "k", payload.clone())
    };
    assert_eq!(
        differs(more_attempts).await.1,
        vec!["max_attempts", "timeout_ms", "priority"]
    );
    // Start times are not part of it: a repeat computes its delay anew.
    let later = NewRun {
        delay_ms: Some(60_000),
        ..keyed("acme", "k", payload.clone())
    };
    let again = h.engine.enqueue(later).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.run.id, first.run.id);
    assert_eq!(h.redb.runs().unwrap().len(), 1, "nothing else was stored");
}

#[tokio::test]
async fn same_key_same_payload_reuses_the_run_and_another_payload_conflicts() {
    let h = harness().await;
    let acme = h.engine.create_tenant("acme").await.unwrap();
    let bytes = std::fs::read(guests::TESTBED).unwrap();
    h.engine.deploy_for("acme", &bytes).await.unwrap();

    let first = h
        .engine
        .enqueue(keyed("acme", "k1", json!({"message": "a", "count": 1})))
        .await
        .unwrap();
    assert!(!first.deduplicated);
    // Same payload, keys in another order: the same run.
    let again = h
        .engine
        .enqueue(keyed("acme", "k1", json!({"count": 1, "message": "a"})))
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.run.id, first.run.id);

    let err = h
        .engine
        .enqueue(keyed("acme", "k1", json!({"message": "b", "count": 1})))
        .await
        .unwrap_err();
    match err {
        EngineError::IdempotencyConflict { run, key, differs } => {
            assert_eq!(run, first.run.id);
            assert_eq!(key, "k1");
            assert_eq!(differs, ["payload"]);
        }
        other => panic!("{other}"),
    }
    assert_eq!(h.redb.runs().unwrap().len(), 1);
    assert_eq!(
        h.engine.authenticate(&acme.token).await.unwrap().as_deref(),
        Some("acme")
    );

    // The key survives the run's end, for the retention period.
    h.engine.run_to_end(&first.run.id).await.unwrap();
    let again = h
        .engine
        .enqueue(keyed("acme", "k1", json!({"message": "a", "count": 1})))
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.run.status, RunStatus::Completed);
    assert_eq!(h.engine.sweep_idempotency().await.unwrap(), 0);
    h.clock
        .advance(std::time::Duration::from_secs(24 * 3600 + 1));
    assert_eq!(h.engine.sweep_idempotency().await.unwrap(), 1);
    let fresh = h
        .engine
        .enqueue(keyed("acme", "k1", json!({"message": "b", "count": 1})))
        .await
        .unwrap();
    assert!(!fresh.deduplicated, "after retention the key is free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_enqueues_with_one_key_create_one_run() {
    let h = harness().await;
    h.engine.create_tenant("acme").await.unwrap();
    let bytes = std::fs::read(guests::TESTBED).unwrap();
    h.engine.deploy_for("acme", &bytes).await.unwrap();
    let engine = Arc::new(h.engine.clone());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .enqueue(keyed("acme", "race", json!({"message": "m", "count": 2})))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let e = t.await.unwrap();
        created += usize::from(!e.deduplicated);
        ids.insert(e.run.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(h.redb.runs().unwrap().len(), 1);
}

#[tokio::test]
async fn keys_and_runs_are_scoped_to_their_tenant() {
    let h = harness().await;
    for t in ["acme", "globex"] {
        h.engine.create_tenant(t).await.unwrap();
        let bytes = std::fs::read(guests::TESTBED).unwrap();
        h.engine.deploy_for(t, &bytes).await.unwrap();
    }
    let a = h
        .engine
        .enqueue(keyed("acme", "k", json!({"message": "a", "count": 1})))
        .await
        .unwrap();
    let g = h
        .engine
        .enqueue(keyed("globex", "k", json!({"message": "b", "count": 1})))
        .await
        .unwrap();
    assert!(
        !g.deduplicated,
        "the same key in another tenant is another key"
    );
    assert_ne!(a.run.id, g.run.id);
    assert!(matches!(
        h.engine.tenant_run("globex", &a.run.id).await,
        Err(EngineError::UnknownRun(_))
    ));
    let page = h
        .engine
        .list_runs("acme", &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].id, a.run.id);
    let err = h
        .engine
        .enqueue(NewRun {
            job: "nope".into(),
            ..keyed("acme", "z", json!({}))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown job 'nope'"), "{err}");
    assert!(
        err.to_string().contains("echo"),
        "lists the tenant's jobs: {err}"
    );
    assert!(matches!(
        h.engine.create_tenant("acme").await,
        Err(EngineError::TenantExists(_))
    ));
}

#[tokio::test]
async fn higher_priority_runs_start_first() {
    let h = harness_with(stepwise::EngineConfig {
        concurrency: 1,
        ..Default::default()
    })
    .await;
    let module = h.deploy(guests::TESTBED).await;
    let mut runs = Vec::new();
    for (i, priority) in [0, 5, 1, 9].into_iter().enumerate() {
        let payload = json!({"message": i.to_string(), "count": 0}).to_string();
        let run = h
            .engine
            .enqueue(NewRun {
                priority,
                ..NewRun::local(&module, "echo", payload)
            })
            .await
            .unwrap()
            .run;
        runs.push((priority, run.id));
    }
    // One worker: stop after k completions and see which runs those were.
    let store = h.redb;
    let completed = || -> Vec<i32> {
        runs.iter()
            .filter(|(_, id)| store.run(id).unwrap().unwrap().status == RunStatus::Completed)
            .map(|(p, _)| *p)
            .collect()
    };
    let mut order = Vec::new();
    for k in 1..=4 {
        h.engine
            .work_until(|| completed().len() >= k)
            .await
            .unwrap();
        let done = completed();
        assert_eq!(done.len(), k);
        let newest = done.into_iter().find(|p| !order.contains(p)).unwrap();
        order.push(newest);
    }
    assert_eq!(order, vec![9, 5, 1, 0]);
}
