//! Unit tests of the store: persistence across reopen, ordering of the ready index, sequence
//! numbers and group commit.

use std::sync::Arc;

use serde_json::json;

use super::*;
use stepwise_core::model::{EventKind, RunRecord, StepKind, StepRecord, StepStatus, TimelineEntry};

fn run(id: &str) -> RunRecord {
    RunRecord {
        payload: json!({"a": 1}),
        ready_at: Some(5),
        ..crate::testing::sample_run(id)
    }
}

fn step(name: &str, ordinal: u32) -> StepRecord {
    StepRecord {
        name: name.into(),
        ordinal,
        output_bytes: 0,
        kind: StepKind::Step,
        status: StepStatus::Completed,
        attempts: 1,
        budget_base: 0,
        output: Some(json!(name)),
        error: None,
        wake_at: None,
        started_at: 1,
        completed_at: Some(2),
        wait: None,
    }
}

use stepwise_store::conformance::Unlimited;

#[tokio::test]
async fn records_survive_reopen_and_keep_step_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
        let r = run("r1");
        let mut b = Batch::new();
        b.put_run(&r, None).set_ready(&r, None, r.ready_at);
        for (ordinal, name) in ["zeta", "alpha", "mid"].into_iter().enumerate() {
            b.put_step("r1", &step(name, ordinal as u32));
        }
        // Rewriting a step keeps its position.
        let mut again = step("zeta", 0);
        again.attempts = 2;
        b.put_step("r1", &again);
        b.append_timeline(
            "r1",
            &TimelineEntry {
                at: 1,
                kind: EventKind::Created,
                attempt: None,
                step: None,
                detail: String::new(),
                http: None,
            },
        );
        store.commit(b).await.unwrap();
    }
    let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
    assert_eq!(store.run("r1").unwrap().unwrap(), run("r1"));
    let names: Vec<_> = store
        .steps("r1")
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.attempts))
        .collect();
    assert_eq!(
        names,
        vec![("zeta".into(), 2), ("alpha".into(), 1), ("mid".into(), 1)]
    );
    assert_eq!(
        store.sequences("r1").unwrap(),
        Sequences {
            timeline: 1,
            logs: 0
        }
    );
    // The ready entry was reloaded with the run's placement.
    let claimed = store.claim(10, 10, &Unlimited);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run, "r1");
    assert_eq!(claimed[0].placement, Placement::of(&run("r1")));
    assert!(store.run("nope").unwrap().is_none());
}

#[tokio::test]
async fn ready_index_orders_by_time_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
    let placed = |at| Some((at, Placement::of(&run("x"))));
    let mut b = Batch::new();
    b.move_ready("late", None, placed(30))
        .move_ready("early", None, placed(10))
        .move_ready("mid", None, placed(20));
    store.commit(b).await.unwrap();
    assert_eq!(store.next_pending(), Some(10));
    let due: Vec<_> = store
        .claim(25, 10, &Unlimited)
        .into_iter()
        .map(|c| c.run)
        .collect();
    assert_eq!(due, vec!["early", "mid"]);
    assert_eq!(store.next_pending(), Some(30));
    let mut b = Batch::new();
    b.move_ready("early", Some(10), placed(40))
        .move_ready("mid", Some(20), None);
    store.commit(b).await.unwrap();
    store.release("early", 0, None);
    store.release("mid", 0, None);
    let all: Vec<_> = store.waiting().unwrap();
    assert_eq!(all, vec![(30, "late".into()), (40, "early".into())]);
}

#[tokio::test]
async fn dead_letters_are_per_tenant_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
    let in_queue = |id: &str, tenant: &str, queue: &str| RunRecord {
        tenant: tenant.into(),
        queue: queue.into(),
        ..run(id)
    };
    let (a, b, c, d) = (
        in_queue("a", "t", "q1"),
        in_queue("b", "t", "q2"),
        in_queue("c", "t", "q1"),
        in_queue("d", "u", "q1"),
    );
    let mut batch = Batch::new();
    batch
        .put_dead_letter(&a, 1)
        .put_dead_letter(&b, 2)
        .put_dead_letter(&c, 3)
        .put_dead_letter(&d, 4);
    store.commit(batch).await.unwrap();
    assert_eq!(
        store.dead_letters("t", "q1").unwrap(),
        vec![("a".into(), 1), ("c".into(), 3)]
    );
    assert_eq!(
        store.dead_letters("u", "q1").unwrap(),
        vec![("d".into(), 4)]
    );
    let mut batch = Batch::new();
    batch.remove_dead_letter(&a);
    store.commit(batch).await.unwrap();
    assert!(!store.is_dead_lettered(&a).unwrap());
    assert!(store.is_dead_lettered(&b).unwrap());
}

#[tokio::test]
async fn an_idempotency_guard_admits_one_batch_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path(), Durability::Immediate).unwrap());
    let guarded = |id: &str, payload_hash: &str| {
        let mut batch = Batch::new();
        batch.put_run(&run(id), None).guard(IdempotencyGuard {
            tenant: "t".into(),
            queue: "q".into(),
            key: "k".into(),
            record: IdempotencyRecord {
                run: id.into(),
                payload_hash: payload_hash.into(),
                created_at: 1,
                expires_at: None,
            },
            now: 10,
        });
        batch
    };
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let batch = guarded(&format!("r{i:02}"), "h");
            tokio::spawn(async move { store.commit(batch).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        match t.await.unwrap() {
            CommitOutcome::Applied => applied += 1,
            CommitOutcome::KeyTaken { same_payload, .. } => assert!(same_payload),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 1, "exactly one batch took the key");
    assert_eq!(store.runs().unwrap().len(), 1, "the others wrote nothing");
    let holder = store.idempotency("t", "q", "k").unwrap().unwrap().run;
    match store.commit(guarded("other", "different")).await.unwrap() {
        CommitOutcome::KeyTaken { run, same_payload } => {
            assert_eq!(run, holder);
            assert!(!same_payload);
        }
        other => panic!("{other:?}"),
    }

    // Once expired, the key can be taken again.
    let mut expire = Batch::new();
    let mut record = store.idempotency("t", "q", "k").unwrap().unwrap();
    record.expires_at = Some(5);
    expire.put_idempotency("t", "q", "k", &record);
    store.commit(expire).await.unwrap();
    assert_eq!(
        store.expired_idempotency(10, 10).unwrap(),
        vec![("t".into(), "q".into(), "k".into())]
    );
    assert_eq!(
        store.commit(guarded("fresh", "h")).await.unwrap(),
        CommitOutcome::Applied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path(), Durability::Immediate).unwrap());
    let (commits_before, _) = store.commit_counts();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut b = Batch::new();
                b.put_run(&run(&format!("r{i:03}")), None);
                store.commit(b).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (commits, rows) = store.commit_counts();
    assert_eq!(rows, 200);
    assert_eq!(store.runs().unwrap().len(), 200);
    // Every caller was acknowledged, by fewer transactions than callers.
    assert!(
        commits - commits_before < 200,
        "expected grouping, got {} commits for 200 batches",
        commits - commits_before
    );
}

#[tokio::test]
async fn corrupt_records_are_reported_with_their_name() {
    let err = decode::<RunRecord>(b"not json", || "run x".to_owned()).unwrap_err();
    assert!(err.to_string().contains("run x"), "{err}");
}

/// Sets the schema version recorded in the store file in `dir`.
fn set_schema_version(dir: &std::path::Path, version: u64) {
    let db = redb::Database::create(dir.join("stepwise.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(schema::META)
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_version_2_file_is_migrated_and_older_or_newer_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = crate::testing::sample_run("old");
    run.version = 0;
    {
        let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
        let mut batch = Batch::new();
        batch.put_run(&run, None);
        futures_block_on(store.commit(batch)).unwrap();
    }
    set_schema_version(dir.path(), 2);
    {
        let store = RedbStore::open(dir.path(), Durability::Immediate).unwrap();
        assert_eq!(store.run("old").unwrap().unwrap().version, 0);
    }
    for (version, expected) in [(1, true), (99, true), (schema::SCHEMA_VERSION, false)] {
        set_schema_version(dir.path(), version);
        let opened = RedbStore::open(dir.path(), Durability::Immediate);
        match opened {
            Err(StoreError::Schema { found, expected: e }) => {
                assert!(expected, "version {version} refused");
                assert_eq!((found, e), (version, schema::SCHEMA_VERSION));
            }
            Ok(_) => assert!(!expected, "version {version} opened"),
            Err(other) => panic!("unexpected {other}"),
        }
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
