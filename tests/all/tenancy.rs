//! Tenancy through the real engine, scheduler and store: slots are shared fairly across
//! tenants whatever their backlogs and priorities, per-tenant caps and the host's memory
//! budget hold, a panic in the host releases everything its attempt held and fails only its
//! run, an unreadable run record is set aside alone, and the store's counters agree with a
//! full scan of the runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use stepwise::engine::journal::Journal;
use stepwise::engine::native::{NativeFuture, NativeHandler};
use stepwise::engine::{TenantLimits, TenantSettings};
use stepwise::{
    Durability, Engine, EngineConfig, FailureKind, JobSpec, NewRun, PolicyOverrides, RunStatus,
};
use tokio::sync::Semaphore;

use crate::util::*;

/// Native jobs: `work` records its payload's tag when it starts; `hold` waits for a permit
/// of `gate` (so a test decides when attempts end); `boom` panics inside the host.
struct Jobs {
    started: Mutex<Vec<String>>,
    gate: Arc<Semaphore>,
}

impl Jobs {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Mutex::default(),
            gate: Arc::new(Semaphore::new(0)),
        })
    }
}

impl NativeHandler for Jobs {
    fn jobs(&self) -> Vec<JobSpec> {
        ["work", "hold", "boom"]
            .into_iter()
            .map(|name| JobSpec {
                name: name.into(),
                description: String::new(),
                policy: PolicyOverrides::default(),
                hosts: Vec::new(),
            })
            .collect()
    }

    fn run(&self, journal: Journal, job: String, payload: String) -> NativeFuture {
        let tag = serde_json::from_str::<serde_json::Value>(&payload).unwrap()["tag"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.started.lock().unwrap().push(tag);
        let gate = self.gate.clone();
        Box::pin(async move {
            match job.as_str() {
                "hold" => gate.acquire().await.unwrap().forget(),
                "boom" => panic!("a bug in the host"),
                _ => {}
            }
            (Ok("1".to_owned()), journal)
        })
    }
}

async fn engine_with(config: EngineConfig) -> (Harness, Arc<Jobs>, String) {
    engine_on(config, Durability::Immediate).await
}

async fn engine_on(config: EngineConfig, durability: Durability) -> (Harness, Arc<Jobs>, String) {
    let h = harness_on(config, durability).await;
    let jobs = Jobs::new();
    let module = h.engine.register_native("jobs", jobs.clone());
    (h, jobs, module)
}

fn new_run(module: &str, tenant: &str, job: &str, tag: &str) -> NewRun {
    NewRun {
        tenant: tenant.into(),
        ..NewRun::local(module, job, json!({ "tag": tag }).to_string())
    }
}

/// Creates `run`; returns its id.
async fn create(engine: &Engine, run: NewRun) -> String {
    engine.enqueue(run).await.unwrap().run.id
}

/// Waits (for real, bounded) until `check` holds for the engine's occupancy.
async fn until_running(engine: &Engine, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(t, n)| ((*t).into(), *n)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = engine.store().occupancy().await.unwrap().running_by_tenant;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "running {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_tenant_with_50000_due_runs_at_top_priority_does_not_delay_another_tenants_first_run() {
    let (h, jobs, module) = engine_on(
        EngineConfig {
            concurrency: 4,
            ..EngineConfig::default()
        },
        Durability::Eventual,
    )
    .await;
    let mut enqueues = tokio::task::JoinSet::new();
    for chunk in 0..50 {
        let (engine, module) = (h.engine.clone(), module.clone());
        enqueues.spawn(async move {
            for i in 0..1_000 {
                let mut run = new_run(&module, "a", "work", &format!("a{chunk}-{i}"));
                run.priority = i32::MAX;
                engine.enqueue(run).await.unwrap();
            }
        });
    }
    enqueues.join_all().await;
    let b = create(&h.engine, new_run(&module, "b", "work", "b")).await;
    h.engine.run_to_end(&b).await.unwrap();
    let started = jobs.started.lock().unwrap().clone();
    let position = started.iter().position(|t| t == "b").unwrap();
    // The first round claims 4 slots: A gets its fair half, B's run is among them.
    assert!(
        position < 4,
        "B's run started {position}th: {:?}",
        &started[..8]
    );
}

#[tokio::test]
async fn per_tenant_caps_hold_while_attempts_run() {
    let mut tenants = TenantLimits::default();
    tenants.overrides.insert(
        "a".into(),
        TenantSettings {
            concurrency: Some(2),
            ..TenantSettings::default()
        },
    );
    let (h, jobs, module) = engine_with(EngineConfig {
        concurrency: 8,
        tenants,
        ..EngineConfig::default()
    })
    .await;
    for i in 0..10 {
        create(&h.engine, new_run(&module, "a", "hold", &format!("a{i}"))).await;
    }
    for i in 0..6 {
        create(&h.engine, new_run(&module, "b", "hold", &format!("b{i}"))).await;
    }
    let engine = h.engine.clone();
    let drain = tokio::spawn(async move { engine.drain().await });
    // A is capped at 2 by its override; B by the default, half of the 8 slots.
    until_running(&h.engine, &[("a", 2), ("b", 4)]).await;
    jobs.gate.add_permits(16);
    drain.await.unwrap().unwrap();
    assert_eq!(h.redb.occupancy().running, 0);
    assert_eq!(jobs.started.lock().unwrap().len(), 16);
}

#[tokio::test]
async fn the_memory_budget_queues_runs_instead_of_running_them_all() {
    let (h, jobs, module) = engine_with(EngineConfig {
        memory_budget_bytes: 100 << 20,
        ..EngineConfig::default()
    })
    .await;
    for i in 0..3 {
        let mut run = new_run(&module, "a", "hold", &format!("m{i}"));
        run.overrides.memory_bytes = Some(64 << 20);
        h.engine.enqueue(run).await.unwrap();
    }
    let engine = h.engine.clone();
    let drain = tokio::spawn(async move { engine.drain().await });
    until_running(&h.engine, &[("a", 1)]).await;
    assert_eq!(h.redb.occupancy().memory_in_use, 64 << 20);
    jobs.gate.add_permits(3);
    drain.await.unwrap().unwrap();
    assert_eq!(h.redb.occupancy().memory_in_use, 0);
}

#[tokio::test]
async fn a_panic_in_the_host_fails_only_its_run_and_releases_its_slot() {
    let (h, _jobs, module) = engine_with(EngineConfig::default()).await;
    h.engine
        .set_queue(
            "a",
            "default",
            stepwise::store::QueueSettings {
                concurrency: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let boom = create(&h.engine, new_run(&module, "a", "boom", "boom")).await;
    let next = create(&h.engine, new_run(&module, "a", "work", "next")).await;
    h.engine.drain().await.unwrap();
    let view = h.engine.view(&boom).await.unwrap();
    assert_eq!(view.run.status, RunStatus::Failed);
    assert!(view.dead_lettered);
    let error = view.run.error.unwrap();
    assert_eq!(error.kind, FailureKind::HostError);
    assert!(
        error.message.contains("a bug in the host"),
        "{}",
        error.message
    );
    // The queue's only slot was released: the next run completed.
    assert_eq!(
        h.engine.view(&next).await.unwrap().run.status,
        RunStatus::Completed
    );
    assert_eq!(h.engine.metrics().host_panics(), 1);
    assert_eq!(h.redb.occupancy(), Default::default());
    let store = h.redb;
    let mut counted = store.census().unwrap();
    assert!(counted.stored_bytes["a"] > 0, "{counted:?}");
    counted.stored_bytes.clear();
    assert_eq!(counted, store.census_by_scan().unwrap());
}

#[tokio::test]
async fn an_unreadable_run_record_is_set_aside_and_everything_else_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        stepwise::open_engine(
            dir.path(),
            stepwise::store::RedbOptions::default(),
            EngineConfig::default(),
            Arc::new(stepwise::ManualClock::new(START)),
            Arc::new(stepwise::SeededJitter::new(SEED)),
        )
        .await
        .unwrap()
    };
    let (poisoned, healthy) = {
        let engine = open().await;
        let module = engine.register_native("jobs", Jobs::new());
        (
            create(&engine, new_run(&module, "a", "work", "p")).await,
            create(&engine, new_run(&module, "b", "work", "q")).await,
        )
    };
    // Corrupt one stored record behind the host's back, as a disk or a bug could.
    {
        let db = redb::Database::create(dir.path().join("stepwise.redb")).unwrap();
        let runs: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("runs");
        let txn = db.begin_write().unwrap();
        txn.open_table(runs)
            .unwrap()
            .insert(poisoned.as_str(), b"{\"not\": a run".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let engine = open().await;
    engine.register_native("jobs", Jobs::new());
    engine.drain().await.unwrap();
    assert_eq!(
        engine.view(&healthy).await.unwrap().run.status,
        RunStatus::Completed
    );
    let aside = engine.store().unreadable_runs().await.unwrap();
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].0, poisoned);
    assert!(aside[0].1.contains("corrupt"), "{}", aside[0].1);
}
