//! Unit tests of the store: persistence across reopen, ordering of the ready index, sequence
//! numbers and group commit.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::model::{EventKind, RunStatus, StepKind, StepStatus};
use crate::policy::Policy;

fn run(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        job: "j".into(),
        queue: "default".into(),
        module: "m".into(),
        payload: json!({"a": 1}),
        policy: Policy::default(),
        overrides: Default::default(),
        status: RunStatus::Queued,
        attempts: 0,
        body_failures: 0,
        body_budget_base: 0,
        ready_at: Some(5),
        output: None,
        error: None,
        created_at: 1,
        updated_at: 1,
        finished_at: None,
    }
}

fn step(name: &str) -> StepRecord {
    StepRecord {
        name: name.into(),
        kind: StepKind::Step,
        status: StepStatus::Completed,
        attempts: 1,
        budget_base: 0,
        output: Some(json!(name)),
        error: None,
        wake_at: None,
        started_at: 1,
        completed_at: Some(2),
    }
}

#[tokio::test]
async fn records_survive_reopen_and_keep_step_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Durability::Immediate).unwrap();
        let r = run("r1");
        let mut b = Batch::new();
        b.put_run(&r).set_ready("r1", None, r.ready_at);
        for name in ["zeta", "alpha", "mid"] {
            b.put_step("r1", &step(name));
        }
        // Rewriting a step keeps its position.
        let mut again = step("zeta");
        again.attempts = 2;
        b.put_step("r1", &again);
        b.put_timeline(
            "r1",
            0,
            &TimelineEntry {
                at: 1,
                kind: EventKind::Created,
                attempt: None,
                step: None,
                detail: String::new(),
            },
        );
        store.commit(b).await.unwrap();
    }
    let store = Store::open(dir.path(), Durability::Immediate).unwrap();
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
    assert_eq!(store.due(10, 10).unwrap(), vec![(5, "r1".to_owned())]);
    assert!(store.run("nope").unwrap().is_none());
}

#[tokio::test]
async fn ready_index_orders_by_time_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Immediate).unwrap();
    let mut b = Batch::new();
    b.set_ready("late", None, Some(30))
        .set_ready("early", None, Some(10))
        .set_ready("mid", None, Some(20));
    store.commit(b).await.unwrap();
    assert_eq!(store.next_due().unwrap(), Some(10));
    let due: Vec<_> = store
        .due(25, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(due, vec!["early", "mid"]);
    let mut b = Batch::new();
    b.set_ready("early", Some(10), Some(40))
        .set_ready("mid", Some(20), None);
    store.commit(b).await.unwrap();
    let all: Vec<_> = store.waiting().unwrap();
    assert_eq!(all, vec![(30, "late".into()), (40, "early".into())]);
}

#[tokio::test]
async fn dead_letters_are_per_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Immediate).unwrap();
    let mut b = Batch::new();
    b.put_dead_letter("q1", "a", 1)
        .put_dead_letter("q2", "b", 2)
        .put_dead_letter("q1", "c", 3);
    store.commit(b).await.unwrap();
    assert_eq!(
        store.dead_letters("q1").unwrap(),
        vec![("a".into(), 1), ("c".into(), 3)]
    );
    let mut b = Batch::new();
    b.remove_dead_letter("q1", "a");
    store.commit(b).await.unwrap();
    assert!(!store.is_dead_lettered("q1", "a").unwrap());
    assert!(store.is_dead_lettered("q2", "b").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Durability::Immediate).unwrap());
    let (commits_before, _) = store.commit_counts();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut b = Batch::new();
                b.put_run(&run(&format!("r{i:03}")));
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
    let err = decode::<RunRecord>("run x", b"not json").unwrap_err();
    assert!(err.to_string().contains("run x"), "{err}");
}
