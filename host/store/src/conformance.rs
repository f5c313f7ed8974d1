//! The tests every [`Store`] backend must pass, written once against the trait. A backend's
//! own test module instantiates them with [`conformance_tests!`](crate::conformance_tests),
//! giving each a fresh, empty store:
//!
//! ```ignore
//! stepwise_store::conformance_tests!(async { my_backend::fresh_store().await });
//! ```
//!
//! where the expression yields `(Arc<dyn Store>, guard)`, the guard living as long as the store
//! (a temporary directory, a database schema to drop).

use std::sync::Arc;

use serde_json::json;
use stepwise_core::clock::Millis;
use stepwise_core::egress::{RuleSpec, TenantEgress};
use stepwise_core::model::{
    EventKind, LogLevel, LogLine, LogSource, RunRecord, RunStatus, StepKind, StepRecord,
    StepStatus, TimelineEntry,
};
use stepwise_core::picker::ClaimPolicy;
use stepwise_core::policy::Policy;
use stepwise_core::secret::{Sealed, SecretRecord};

use crate::{
    Created, DeadLetter, IdempotencyClaim, JournalWrites, KeyExpiry, ModuleRecord, NewRunWrite,
    QueueSettings, RunFilter, RunWrite, Store, StoreError, TenantRecord,
};

/// The time every run of the suite is created at.
pub const T0: Millis = 1_700_000_000_000;

/// A queued run `id` of `tenant`'s queue `queue`, due at [`T0`].
pub fn run(id: &str, tenant: &str, queue: &str) -> RunRecord {
    RunRecord {
        version: 0,
        id: id.into(),
        tenant: tenant.into(),
        job: "job".into(),
        queue: queue.into(),
        module: "module".into(),
        payload: json!({ "id": id }),
        policy: Policy::default(),
        overrides: Default::default(),
        priority: 0,
        idempotency_key: None,
        status: RunStatus::Queued,
        attempts: 0,
        body_failures: 0,
        body_budget_base: 0,
        ready_at: Some(T0),
        output: None,
        error: None,
        created_at: T0,
        updated_at: T0,
        finished_at: None,
        parent: None,
        wait: None,
        key: None,
        rate_key: None,
    }
}

fn entry(kind: EventKind, detail: &str) -> TimelineEntry {
    TimelineEntry {
        at: T0,
        kind,
        attempt: None,
        step: None,
        detail: detail.into(),
        http: None,
    }
}

fn line(message: &str) -> LogLine {
    LogLine {
        at: T0,
        attempt: 1,
        source: LogSource::Guest,
        level: LogLevel::Info,
        message: message.into(),
    }
}

fn step(name: &str, ordinal: u32) -> StepRecord {
    StepRecord {
        name: name.into(),
        ordinal,
        output_bytes: 1,
        kind: StepKind::Step,
        status: StepStatus::Completed,
        attempts: 1,
        budget_base: 0,
        output: Some(json!(ordinal)),
        error: None,
        wake_at: None,
        started_at: T0,
        completed_at: Some(T0),
        wait: None,
    }
}

/// Creates `run` with its `created` timeline entry; panics unless it was created.
pub async fn create(store: &dyn Store, run: RunRecord) -> RunRecord {
    let new = NewRunWrite {
        journal: JournalWrites {
            tenant: Some(run.tenant.clone()),
            timeline: vec![entry(EventKind::Created, "created")],
            ..JournalWrites::default()
        },
        idempotency: None,
        run: run.clone(),
    };
    assert_eq!(store.create_run(new).await.unwrap(), Created::Created);
    store
        .run(&run.id)
        .await
        .unwrap()
        .expect("created run is stored")
}

/// A run `id` of tenant `t`'s queue `q` under pending key `key`, asking `on_duplicate`.
fn keyed_run(id: &str, key: &str, on_duplicate: stepwise_core::keyed::OnDuplicate) -> RunRecord {
    RunRecord {
        key: Some(stepwise_core::keyed::RunKey {
            key: key.into(),
            on_duplicate,
            debounce: None,
            first_at: T0,
            replaced: 0,
        }),
        ..run(id, "t", "q")
    }
}

/// Asks the store to create `run`.
async fn try_create(store: &dyn Store, run: RunRecord) -> Created {
    let new = NewRunWrite {
        journal: JournalWrites::default(),
        idempotency: None,
        run,
    };
    store.create_run(new).await.unwrap()
}

/// Limits that never hold a claim back.
pub struct Unlimited;

impl ClaimPolicy for Unlimited {
    fn tenant_limit(&self, _: &str) -> usize {
        usize::MAX
    }
    fn tenant_weight(&self, _: &str) -> u64 {
        1
    }
    fn queue_limit(&self, _: &str, _: &str) -> Option<usize> {
        None
    }
    fn memory_budget(&self) -> u64 {
        u64::MAX
    }
}

async fn claim_ids(store: &dyn Store, now: Millis) -> Vec<String> {
    let mut ids: Vec<String> = store
        .claim_due(now, 100, &Unlimited)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.run)
        .collect();
    ids.sort();
    ids
}

/// A new run is stored at version 1 with its first entry, listed, counted and due.
pub async fn a_created_run_is_stored_listed_counted_and_due(store: Arc<dyn Store>) {
    let stored = create(&*store, run("r1", "t", "q")).await;
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, RunStatus::Queued);
    let (timeline, more) = store.timeline_page("r1", 0, 10).await.unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, EventKind::Created);
    assert_eq!(more, None);
    let listed = store
        .list_runs("t", &RunFilter::default(), None, 10)
        .await
        .unwrap()
        .runs;
    assert_eq!(listed.len(), 1);
    let census = store.census().await.unwrap();
    assert_eq!(census.by_status.get(&RunStatus::Queued), Some(&1));
    assert_eq!(census.depth.get(&("t".into(), "q".into())), Some(&1));
    let usage = store.tenant_usage("t").await.unwrap();
    assert_eq!(usage.waiting_runs, 1);
    assert!(
        usage.stored_bytes > 0,
        "creating a run is charged to its tenant"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(T0));
    assert!(store.has_unclaimed().await.unwrap());
    assert!(store.run("absent").await.unwrap().is_none());
}

/// Many concurrent creates with one key make exactly one run; a different payload is told
/// apart; once the key expired it can be taken again.
pub async fn one_idempotency_key_makes_one_run_under_a_race(store: Arc<dyn Store>) {
    let claim = |hash: &str| IdempotencyClaim {
        key: "k".into(),
        payload_hash: hash.into(),
        now: T0,
    };
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let new = NewRunWrite {
            run: RunRecord {
                idempotency_key: Some("k".into()),
                ..run(&format!("r{i:02}"), "t", "q")
            },
            journal: JournalWrites::default(),
            idempotency: Some(claim("same")),
        };
        tasks.push(tokio::spawn(async move { store.create_run(new).await }));
    }
    let mut created = Vec::new();
    let mut holders = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap().unwrap() {
            Created::Created => created.push(format!("r{i:02}")),
            Created::KeyTaken { run, same_payload } => {
                assert!(same_payload);
                holders.push(run);
            }
            other => panic!("a run without a key answered {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one create took the key");
    assert!(holders.iter().all(|h| *h == created[0]));
    let listed = store
        .list_runs("t", &RunFilter::default(), None, 100)
        .await
        .unwrap()
        .runs;
    assert_eq!(listed.len(), 1, "the others stored nothing");

    let other = NewRunWrite {
        run: RunRecord {
            idempotency_key: Some("k".into()),
            ..run("other", "t", "q")
        },
        journal: JournalWrites::default(),
        idempotency: Some(claim("different")),
    };
    assert_eq!(
        store.create_run(other.clone()).await.unwrap(),
        Created::KeyTaken {
            run: created[0].clone(),
            same_payload: false
        }
    );
    // The holder ends; its key expires at T0 + 10 and is then free.
    let mut holder = store.run(&created[0]).await.unwrap().unwrap();
    holder.status = RunStatus::Completed;
    holder.ready_at = None;
    holder.finished_at = Some(T0);
    let write = RunWrite {
        key: KeyExpiry::Until(T0 + 10),
        ..RunWrite::new(holder, JournalWrites::default())
    };
    store.write_runs(vec![write]).await.unwrap();
    let record = store.idempotency("t", "q", "k").await.unwrap().unwrap();
    assert_eq!(record.expires_at, Some(T0 + 10));
    let later = NewRunWrite {
        idempotency: Some(IdempotencyClaim {
            now: T0 + 10,
            ..claim("different")
        }),
        ..other
    };
    assert_eq!(store.create_run(later).await.unwrap(), Created::Created);
    assert_eq!(
        store.idempotency("t", "q", "k").await.unwrap().unwrap().run,
        "other"
    );
}

/// A write based on a stale version is refused and changes nothing; so is a write of a run
/// that is not stored; one stale write refuses the whole group.
pub async fn a_stale_version_is_refused_never_applied(store: Arc<dyn Store>) {
    let first = create(&*store, run("r1", "t", "q")).await;
    create(&*store, run("r2", "t", "q")).await;
    let mut next = first.clone();
    next.attempts = 1;
    let versions = store
        .write_runs(vec![RunWrite::new(next.clone(), JournalWrites::default())])
        .await
        .unwrap();
    assert_eq!(versions, vec![2]);
    assert_eq!(store.run("r1").await.unwrap().unwrap().version, 2);

    let mut stale = first.clone();
    stale.attempts = 99;
    let refused = store
        .write_runs(vec![RunWrite::new(stale, JournalWrites::default())])
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Conflict { ref run, expected: 1, found: Some(2) }) if run == "r1"
        ),
        "{refused:?}"
    );
    let kept = store.run("r1").await.unwrap().unwrap();
    assert_eq!((kept.version, kept.attempts), (2, 1));

    let ghost = run("ghost", "t", "q");
    let refused = store
        .write_runs(vec![RunWrite::new(ghost, JournalWrites::default())])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { found: None, .. })),
        "{refused:?}"
    );
    assert!(store.run("ghost").await.unwrap().is_none());

    // r2 is current, r1 is stale: neither is written.
    let mut r2 = store.run("r2").await.unwrap().unwrap();
    r2.attempts = 5;
    let group = vec![
        RunWrite::new(r2, JournalWrites::default()),
        RunWrite::new(first, JournalWrites::default()),
    ];
    assert!(store.write_runs(group).await.is_err());
    assert_eq!(store.run("r2").await.unwrap().unwrap().attempts, 0);
}

/// A due run is claimed once, under a lease, until its claim is released; a release can
/// hold it back; a run not yet due is not claimed; a write under a claim holds only while
/// the claim does.
pub async fn claims_hand_out_each_due_run_once_until_released(store: Arc<dyn Store>) {
    create(&*store, run("a1", "a", "q")).await;
    create(&*store, run("b1", "b", "q")).await;
    create(
        &*store,
        RunRecord {
            ready_at: Some(T0 + 1_000),
            ..run("later", "a", "q")
        },
    )
    .await;
    let claimed = store.claim_due(T0, 100, &Unlimited).await.unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.run.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a1", "b1"]);
    for c in &claimed {
        assert!(!c.lease.holder.is_empty());
        assert!(c.lease.expires_at > T0, "a lease outlives its claim");
    }
    assert!(store.is_claimed("a1").await.unwrap());
    assert!(
        claim_ids(&*store, T0).await.is_empty(),
        "claimed runs are not handed out again"
    );
    let occupancy = store.occupancy().await.unwrap();
    assert_eq!(occupancy.running, 2);
    assert_eq!(store.next_due().await.unwrap(), Some(T0 + 1_000));

    // A write under the claim's lease goes through; one naming another holder does not.
    let b1 = store.run("b1").await.unwrap().unwrap();
    let lease = claimed
        .iter()
        .find(|c| c.run == "b1")
        .unwrap()
        .lease
        .clone();
    let under = RunWrite {
        lease: Some(lease.clone()),
        ..RunWrite::new(b1.clone(), JournalWrites::default())
    };
    let b1_version = store.write_runs(vec![under]).await.unwrap()[0];
    let stranger = RunWrite {
        lease: Some(crate::Lease {
            holder: format!("not-{}", lease.holder),
            ..lease.clone()
        }),
        ..RunWrite::new(
            RunRecord {
                version: b1_version,
                ..b1.clone()
            },
            JournalWrites::default(),
        )
    };
    assert!(
        matches!(
            store.write_runs(vec![stranger]).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "another holder's lease is refused"
    );

    // A journal write under the claim's lease goes through; under another holder's, not.
    let claim_lease = lease.clone();
    let under_lease = |holder: &str| JournalWrites {
        timeline: vec![entry(EventKind::AttemptStarted, "")],
        lease: Some(crate::Lease {
            holder: holder.to_owned(),
            ..claim_lease.clone()
        }),
        ..JournalWrites::default()
    };
    store
        .record_step("b1", under_lease(&lease.holder))
        .await
        .unwrap();
    assert!(
        matches!(
            store
                .record_step("b1", under_lease(&format!("not-{}", lease.holder)))
                .await,
            Err(StoreError::LeaseLost { .. })
        ),
        "a journal write under another holder's lease is refused"
    );

    store.release("a1", 5, Some(T0 + 500)).await.unwrap();
    assert!(!store.is_claimed("a1").await.unwrap());
    assert!(
        claim_ids(&*store, T0 + 499).await.is_empty(),
        "held back until 500"
    );
    assert_eq!(claim_ids(&*store, T0 + 500).await, vec!["a1"]);
    store.release("b1", 5, None).await.unwrap();
    let released = RunWrite {
        lease: Some(lease),
        ..RunWrite::new(
            RunRecord {
                version: b1_version,
                ..b1
            },
            JournalWrites::default(),
        )
    };
    assert!(
        matches!(
            store.write_runs(vec![released]).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "a released claim's lease no longer holds"
    );
    assert!(
        matches!(
            store
                .record_step("b1", under_lease(&claim_lease.holder))
                .await,
            Err(StoreError::LeaseLost { .. })
        ),
        "nor does it for the run's journal"
    );
    let (timeline, _) = store.timeline_page("b1", 0, 10).await.unwrap();
    assert_eq!(
        timeline.len(),
        2,
        "only the write under the live lease was recorded"
    );
    assert_eq!(claim_ids(&*store, T0 + 1_000).await, vec!["b1", "later"]);
}

/// Settling moves a run through the ready set, the counters and the dead letters: retrying
/// waits for its time, a final run leaves scheduling, a failed one is dead-lettered, and a
/// manual retry takes it off the dead letters and makes it due.
pub async fn settling_moves_runs_between_ready_final_and_dead_lettered(store: Arc<dyn Store>) {
    let mut r = create(&*store, run("r", "t", "q")).await;
    assert_eq!(claim_ids(&*store, T0).await, vec!["r"]);
    r.status = RunStatus::Retrying;
    r.ready_at = Some(T0 + 60_000);
    r.attempts = 1;
    r.version = store
        .write_runs(vec![RunWrite::new(r.clone(), JournalWrites::default())])
        .await
        .unwrap()[0];
    store.release("r", 10, None).await.unwrap();
    assert!(claim_ids(&*store, T0 + 59_999).await.is_empty());
    assert_eq!(claim_ids(&*store, T0 + 60_000).await, vec!["r"]);

    r.status = RunStatus::Failed;
    r.ready_at = None;
    r.finished_at = Some(T0 + 60_000);
    let failed = RunWrite {
        dead_letter: DeadLetter::Add(T0 + 60_000),
        ..RunWrite::new(r.clone(), JournalWrites::default())
    };
    r.version = store.write_runs(vec![failed]).await.unwrap()[0];
    store.release("r", 10, None).await.unwrap();
    assert!(
        claim_ids(&*store, u64::MAX).await.is_empty(),
        "a final run is never due"
    );
    assert!(store.is_dead_lettered(&r).await.unwrap());
    assert_eq!(
        store.dead_letters("t", "q").await.unwrap(),
        vec![("r".to_owned(), T0 + 60_000)]
    );
    let census = store.queue_census("t", "q").await.unwrap();
    let key = ("t".to_owned(), "q".to_owned());
    assert_eq!(census.dead_letters.get(&key), Some(&1));
    assert_eq!(
        census.depth.get(&key),
        None,
        "a failed run is not in the queue's depth"
    );
    assert_eq!(
        store
            .census()
            .await
            .unwrap()
            .by_status
            .get(&RunStatus::Failed),
        Some(&1)
    );

    r.status = RunStatus::Queued;
    r.ready_at = Some(T0 + 70_000);
    r.finished_at = None;
    let retried = RunWrite {
        dead_letter: DeadLetter::Remove,
        key: KeyExpiry::Held,
        ..RunWrite::new(r.clone(), JournalWrites::default())
    };
    store.write_runs(vec![retried]).await.unwrap();
    assert!(store.dead_letters("t", "q").await.unwrap().is_empty());
    assert_eq!(claim_ids(&*store, T0 + 70_000).await, vec!["r"]);
    let census = store.queue_census("t", "q").await.unwrap();
    assert_eq!(census.depth.get(&key), Some(&1));
    assert_eq!(census.dead_letters.get(&key), None);
}

/// Purging a queue's dead letters deletes each run with its history and frees the
/// idempotency key it held; runs not dead-lettered there (another queue's, a retried one,
/// another tenant's) are left alone, and the counters follow.
pub async fn purged_dead_letters_are_deleted_with_their_history_and_keys(store: Arc<dyn Store>) {
    let fail = |mut r: RunRecord| {
        r.status = RunStatus::Failed;
        r.ready_at = None;
        r.finished_at = Some(T0 + 1);
        RunWrite {
            dead_letter: DeadLetter::Add(T0 + 1),
            key: KeyExpiry::Until(T0 + 1_000_000),
            journal: JournalWrites {
                tenant: Some(r.tenant.clone()),
                steps: vec![StepRecord {
                    name: "s".into(),
                    ordinal: 0,
                    output_bytes: 0,
                    kind: StepKind::Step,
                    status: StepStatus::Failed,
                    attempts: 1,
                    budget_base: 0,
                    output: None,
                    error: None,
                    wake_at: None,
                    started_at: T0,
                    completed_at: None,
                    wait: None,
                }],
                timeline: vec![entry(EventKind::Failed, "failed")],
                logs: vec![LogLine {
                    at: T0,
                    attempt: 1,
                    source: LogSource::Guest,
                    level: LogLevel::Error,
                    message: "boom".into(),
                }],
                deliveries: Vec::new(),
                lease: None,
            },
            ..RunWrite::new(r, JournalWrites::default())
        }
    };
    let keyed = |id: &str, tenant: &str, queue: &str| NewRunWrite {
        run: RunRecord {
            idempotency_key: Some(format!("key-{id}")),
            ..run(id, tenant, queue)
        },
        journal: JournalWrites::default(),
        idempotency: Some(IdempotencyClaim {
            key: format!("key-{id}"),
            payload_hash: "h".into(),
            now: T0,
        }),
    };
    let mut failed = Vec::new();
    for (id, tenant, queue) in [
        ("a", "t", "q"),
        ("b", "t", "q"),
        ("c", "t", "other"),
        ("d", "u", "q"),
    ] {
        assert_eq!(
            store.create_run(keyed(id, tenant, queue)).await.unwrap(),
            Created::Created
        );
        let r = store.run(id).await.unwrap().unwrap();
        store.write_runs(vec![fail(r)]).await.unwrap();
        failed.push(store.run(id).await.unwrap().unwrap());
    }
    let stored_before = store.tenant_usage("t").await.unwrap().stored_bytes;
    // "b" is retried before the purge: it is no longer a dead letter and must survive.
    let mut b = failed[1].clone();
    b.status = RunStatus::Queued;
    b.ready_at = Some(T0 + 5);
    b.finished_at = None;
    store
        .write_runs(vec![RunWrite {
            dead_letter: DeadLetter::Remove,
            key: KeyExpiry::Held,
            ..RunWrite::new(b, JournalWrites::default())
        }])
        .await
        .unwrap();

    let named = ["a", "b", "c", "d"].map(str::to_owned);
    store.purge_dead_letters("t", "q", &named).await.unwrap();

    assert!(
        store.run("a").await.unwrap().is_none(),
        "the run is deleted"
    );
    assert!(store.steps_page("a", 0, 10).await.unwrap().0.is_empty());
    assert!(store.timeline_page("a", 0, 10).await.unwrap().0.is_empty());
    assert!(store.logs_page("a", 0, 10).await.unwrap().0.is_empty());
    assert!(store.tenant_run("t", "a").await.unwrap().is_none());
    assert!(
        store
            .idempotency("t", "q", "key-a")
            .await
            .unwrap()
            .is_none(),
        "its key is free"
    );
    assert!(store.dead_letters("t", "q").await.unwrap().is_empty());
    for kept in ["b", "c", "d"] {
        assert!(
            store.run(kept).await.unwrap().is_some(),
            "{kept} is not a dead letter of t/q"
        );
    }
    assert_eq!(store.dead_letters("t", "other").await.unwrap().len(), 1);
    assert_eq!(store.dead_letters("u", "q").await.unwrap().len(), 1);
    assert!(
        store
            .idempotency("t", "q", "key-b")
            .await
            .unwrap()
            .is_some()
    );
    let listed = store
        .list_runs("t", &RunFilter::default(), None, 10)
        .await
        .unwrap()
        .runs;
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["b", "c"]);
    let census = store.census().await.unwrap();
    let tq = ("t".to_owned(), "q".to_owned());
    assert_eq!(census.dead_letters.get(&tq), None);
    assert_eq!(
        census.by_status.get(&RunStatus::Failed),
        Some(&2),
        "c and d"
    );
    assert!(store.tenant_usage("t").await.unwrap().stored_bytes < stored_before);
    // The freed key makes a new run.
    assert_eq!(
        store.create_run(keyed("a", "t", "q")).await.unwrap(),
        Created::Created
    );
}

/// Steps, timeline entries and log lines written over several commits come back in order,
/// numbered by the store, and page with a position to continue from.
pub async fn journal_writes_are_numbered_in_order_and_paged(store: Arc<dyn Store>) {
    create(&*store, run("r", "t", "q")).await;
    let first = JournalWrites {
        tenant: Some("t".into()),
        steps: vec![step("a", 0)],
        timeline: vec![entry(EventKind::StepCompleted, "a")],
        logs: vec![line("one"), line("two")],
        deliveries: Vec::new(),
        lease: None,
    };
    store.record_step("r", first).await.unwrap();
    let second = JournalWrites {
        tenant: Some("t".into()),
        steps: vec![step("b", 1), step("a", 0)],
        timeline: vec![entry(EventKind::StepCompleted, "b")],
        logs: vec![line("three")],
        deliveries: Vec::new(),
        lease: None,
    };
    store.record_step("r", second).await.unwrap();
    let steps = store.load_journal("r").await.unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"], "by ordinal, each once");

    let (page, next) = store.timeline_page("r", 0, 2).await.unwrap();
    let details: Vec<&str> = page.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, vec!["created", "a"]);
    let next = next.expect("a third entry follows");
    let (rest, end) = store.timeline_page("r", next, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].detail, "b");
    assert_eq!(end, None);

    let (logs, _) = store.logs_page("r", 0, 10).await.unwrap();
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, vec!["one", "two", "three"]);
    let (one_step, more) = store.steps_page("r", 0, 1).await.unwrap();
    assert_eq!(one_step[0].name, "a");
    assert!(more.is_some());
}

/// A tenant's listing pages in creation order (or newest first) and filters by queue, job
/// and status, and
/// never shows another tenant's runs; nor does a lookup of one run for a tenant.
/// `tenant_census(tenant)` holds exactly what `census()` and `queue_census` hold of `tenant`.
async fn assert_tenant_census(store: &dyn Store, tenant: &str) {
    use std::collections::BTreeMap;
    let all = store.census().await.unwrap();
    let mine = store.tenant_census(tenant).await.unwrap();
    let of = |m: &BTreeMap<(String, String), u64>| -> BTreeMap<(String, String), u64> {
        m.iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    assert_eq!(mine.runs, of(&all.runs), "runs of {tenant}");
    assert_eq!(mine.depth, of(&all.depth), "depth of {tenant}");
    assert_eq!(
        mine.dead_letters,
        of(&all.dead_letters),
        "dead letters of {tenant}"
    );
    assert_eq!(
        mine.stored_bytes,
        all.stored_bytes
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(t, v)| (t.clone(), *v))
            .collect::<BTreeMap<_, _>>(),
        "stored bytes of {tenant}"
    );
    let mut by_status = BTreeMap::new();
    for (_, queue) in mine.runs.keys() {
        for (status, n) in store.queue_census(tenant, queue).await.unwrap().by_status {
            *by_status.entry(status).or_insert(0) += n;
        }
    }
    assert_eq!(mine.by_status, by_status, "runs by status of {tenant}");
}

pub async fn listings_page_filter_and_stay_within_their_tenant(store: Arc<dyn Store>) {
    for i in 0..5 {
        let queue = if i % 2 == 0 { "even" } else { "odd" };
        create(&*store, run(&format!("r{i}"), "t", queue)).await;
    }
    create(&*store, run("s0", "someone-else", "even")).await;
    // Tenants whose names sort right before and after "t": newest-first pages stay in "t".
    create(&*store, run("q0", "s", "even")).await;
    create(&*store, run("u0", "t0", "even")).await;
    // Each tenant's counters alone, however their names sort against each other's.
    for tenant in ["t", "s", "t0", "someone-else", "nobody"] {
        assert_tenant_census(&*store, tenant).await;
    }
    assert_eq!(store.tenant_census("t").await.unwrap().runs.len(), 2);
    let all = RunFilter::default();
    let newest = RunFilter {
        newest_first: true,
        ..RunFilter::default()
    };
    let ids = |page: Vec<RunRecord>| page.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let page = store.list_runs("t", &newest, None, 2).await.unwrap().runs;
    assert_eq!(ids(page), vec!["r4", "r3"]);
    let page = store
        .list_runs("t", &newest, Some("r3"), 10)
        .await
        .unwrap()
        .runs;
    assert_eq!(ids(page), vec!["r2", "r1", "r0"]);
    let odd_newest = RunFilter {
        queue: Some("odd".into()),
        newest_first: true,
        ..RunFilter::default()
    };
    let page = store
        .list_runs("t", &odd_newest, None, 10)
        .await
        .unwrap()
        .runs;
    assert_eq!(ids(page), vec!["r3", "r1"]);
    let page = store.list_runs("t", &all, None, 2).await.unwrap().runs;
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["r0", "r1"]);
    let page = store
        .list_runs("t", &all, Some("r1"), 10)
        .await
        .unwrap()
        .runs;
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["r2", "r3", "r4"]);
    let odd = RunFilter {
        queue: Some("odd".into()),
        ..RunFilter::default()
    };
    let ids: Vec<String> = store
        .list_runs("t", &odd, None, 10)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["r1", "r3"]);
    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        ..RunFilter::default()
    };
    assert!(
        store
            .list_runs("t", &failed, None, 10)
            .await
            .unwrap()
            .runs
            .is_empty()
    );
    let other_job = RunFilter {
        job: Some("other".into()),
        ..RunFilter::default()
    };
    assert!(
        store
            .list_runs("t", &other_job, None, 10)
            .await
            .unwrap()
            .runs
            .is_empty()
    );
    let theirs = store
        .list_runs("someone-else", &all, None, 10)
        .await
        .unwrap()
        .runs;
    assert_eq!(theirs.len(), 1);
    assert_eq!(store.tenant_run("t", "r0").await.unwrap().unwrap().id, "r0");
    assert!(
        store.tenant_run("t", "s0").await.unwrap().is_none(),
        "another tenant's run is not theirs"
    );
    assert!(store.tenant_run("t", "absent").await.unwrap().is_none());

    // Creation-time bounds: `created_from` takes its instant, `created_before` does not.
    for (id, at) in [("w1", T0 + 10), ("w2", T0 + 20), ("w3", T0 + 30)] {
        let mut r = run(id, "w", "q");
        r.created_at = at;
        create(&*store, r).await;
    }
    let within = |from: Option<Millis>, before: Option<Millis>, newest_first: bool| RunFilter {
        created_from: from,
        created_before: before,
        newest_first,
        ..RunFilter::default()
    };
    for (filter, expected) in [
        (within(Some(T0 + 20), None, false), vec!["w2", "w3"]),
        (within(None, Some(T0 + 20), false), vec!["w1"]),
        (within(Some(T0 + 10), Some(T0 + 30), true), vec!["w2", "w1"]),
        (within(Some(T0 + 31), None, false), vec![]),
    ] {
        let listed = store.list_runs("w", &filter, None, 10).await.unwrap().runs;
        assert_eq!(
            listed.into_iter().map(|r| r.id).collect::<Vec<_>>(),
            expected,
            "{filter:?}"
        );
    }
}

/// A listing reads at most [`crate::MAX_LIST_SCAN`] runs per call: a rare match behind more
/// runs than that comes back on a later page, through `next`, never lost and never skipped.
pub async fn a_listing_reads_a_bounded_number_of_runs_per_page(store: Arc<dyn Store>) {
    create(&*store, run("a-rare", "t", "rare")).await;
    let total = crate::MAX_LIST_SCAN + 10;
    let mut set = tokio::task::JoinSet::new();
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        for &i in chunk {
            let store = store.clone();
            set.spawn(
                async move { create(&*store, run(&format!("c{i:05}"), "t", "common")).await },
            );
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    }
    let rare = RunFilter {
        queue: Some("rare".into()),
        newest_first: true,
        ..RunFilter::default()
    };
    let first = store.list_runs("t", &rare, None, 10).await.unwrap();
    assert!(first.runs.is_empty(), "{:?}", first.runs);
    let next = first.next.expect("the listing goes on");
    assert_eq!(next, format!("c{:05}", total - crate::MAX_LIST_SCAN));
    let second = store.list_runs("t", &rare, Some(&next), 10).await.unwrap();
    assert_eq!(
        second
            .runs
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["a-rare"]
    );
    assert_eq!(second.next, None);
    // A full page says where to go on; the last page does not.
    let all = RunFilter::default();
    let page = store.list_runs("t", &all, None, 3).await.unwrap();
    assert_eq!(page.runs.len(), 3);
    assert_eq!(page.next.as_deref(), Some("c00001"));
}

/// Tenants, tokens, modules, job routes, queue settings, egress settings and secrets are
/// stored and read back, each tenant's apart.
pub async fn settings_round_trip_per_tenant(store: Arc<dyn Store>) {
    let tenant = TenantRecord {
        name: "t".into(),
        created_at: T0,
    };
    store.create_tenant(&tenant, "hash-of-token").await.unwrap();
    assert_eq!(store.tenant("t").await.unwrap(), Some(tenant));
    assert_eq!(
        store
            .tenant_for_token("hash-of-token")
            .await
            .unwrap()
            .as_deref(),
        Some("t")
    );
    assert_eq!(store.tenant_for_token("other").await.unwrap(), None);

    store.put_module("abc", b"component").await.unwrap();
    assert_eq!(
        store.module("abc").await.unwrap().as_deref(),
        Some(&b"component"[..])
    );
    let module = ModuleRecord {
        hash: "abc".into(),
        size: 9,
        jobs: vec![stepwise_core::JobSpec {
            name: "job".into(),
            description: String::new(),
            policy: Default::default(),
            hosts: Vec::new(),
        }],
        deployed_at: T0,
    };
    store.deploy_module("t", &module).await.unwrap();
    assert_eq!(store.tenant_modules("t").await.unwrap(), vec![module]);
    assert_eq!(
        store.job_route("t", "job").await.unwrap().as_deref(),
        Some("abc")
    );
    assert!(store.tenant_has_module("t", "abc").await.unwrap());
    assert!(!store.tenant_has_module("u", "abc").await.unwrap());
    assert_eq!(store.job_route("u", "job").await.unwrap(), None);

    let settings = QueueSettings {
        concurrency: Some(3),
        rate_limit: Some(stepwise_core::rate::RateLimit {
            max: 5,
            per_ms: 1_000,
        }),
    };
    store.put_queue("t", "q", &settings).await.unwrap();
    assert_eq!(
        store.queues().await.unwrap(),
        vec![("t".to_owned(), "q".to_owned(), settings)]
    );

    let egress = TenantEgress {
        rules: vec![RuleSpec {
            pattern: "https://api.example.com:443".into(),
            methods: vec![],
        }],
        limits: None,
    };
    store.put_egress("t", &egress).await.unwrap();
    assert_eq!(store.egress("t").await.unwrap(), egress);
    assert_eq!(store.egress("u").await.unwrap(), TenantEgress::default());

    let secret = SecretRecord {
        name: "KEY".into(),
        sealed: Sealed {
            key_id: "k1".into(),
            nonce: "00".into(),
            ciphertext: "ff".into(),
        },
        hosts: vec![],
        readable: false,
        updated_at: T0,
    };
    store
        .put_secrets(&[("t".into(), secret.clone())])
        .await
        .unwrap();
    assert_eq!(store.secrets_of("t").await.unwrap(), vec![secret]);
    assert!(store.secrets_of("u").await.unwrap().is_empty());
    store.remove_secret("t", "KEY").await.unwrap();
    assert!(store.secrets_of("t").await.unwrap().is_empty());
}

fn new_event(id: &str, name: &str, key: Option<&str>, at: Millis) -> crate::NewEvent {
    crate::NewEvent {
        id: id.to_owned(),
        name: name.to_owned(),
        correlation_key: key.map(str::to_owned),
        payload: json!({ "id": id }),
        received_at: at,
        expires_at: at + 1_000,
        body_hash: format!("hash-{id}"),
    }
}

async fn put(store: &dyn Store, tenant: &str, e: crate::NewEvent) -> (u64, u64) {
    match store.put_event(tenant, e).await.unwrap() {
        crate::EventPut::Stored { event, woken } => (event.seq, woken),
        crate::EventPut::Exists(e) => panic!("event {} existed", e.id),
    }
}

/// Suspends `r` on an event wait (as a settlement does), returning the version stored.
async fn wait_for(store: &dyn Store, r: &mut RunRecord, key: &str, seen: u64) {
    r.status = RunStatus::Waiting;
    r.ready_at = Some(T0 + 100_000);
    r.updated_at = T0 + 10;
    r.wait = Some(stepwise_core::flow::RunWait::Event {
        step: "w".into(),
        name: "paid".into(),
        correlation_key: Some(key.into()),
        until: T0 + 100_000,
        seen,
    });
    r.version = store
        .write_runs(vec![RunWrite::new(r.clone(), JournalWrites::default())])
        .await
        .unwrap()[0];
}

/// Each tenant's events get increasing numbers of their own, a repeated id stores nothing, matching
/// follows name, exact key, arrival window and skips, listings are per tenant and newest
/// first, and expired events are forgotten with their counters.
pub async fn events_are_numbered_matched_listed_and_expired(store: Arc<dyn Store>) {
    let (a, _) = put(&*store, "t", new_event("a", "paid", Some("k"), T0)).await;
    let (b, _) = put(&*store, "t", new_event("b", "paid", Some("k"), T0 + 5)).await;
    let (c, _) = put(&*store, "u", new_event("c", "paid", Some("k"), T0 + 6)).await;
    assert!(a < b);
    assert_eq!(c, 1, "numbered per tenant");
    match store
        .put_event("t", new_event("a", "x", None, T0))
        .await
        .unwrap()
    {
        crate::EventPut::Exists(e) => assert_eq!((e.seq, e.name.as_str()), (a, "paid")),
        other => panic!("{other:?}"),
    }
    let m = |since, until, skip: Vec<u64>| {
        let store = store.clone();
        async move {
            store
                .match_event("t", "paid", Some("k"), since, until, &skip)
                .await
                .unwrap()
        }
    };
    let (found, high) = m(T0, T0 + 10, vec![]).await;
    assert_eq!(found.unwrap().id, "a");
    assert_eq!(high, b, "the tenant's newest number");
    assert_eq!(m(T0, T0 + 10, vec![a]).await.0.unwrap().id, "b");
    assert_eq!(m(T0 + 1, T0 + 10, vec![]).await.0.unwrap().id, "b");
    assert!(m(T0, T0 + 10, vec![a, b]).await.0.is_none());
    assert!(
        m(T0 + 6, T0 + 10, vec![]).await.0.is_none(),
        "another tenant's"
    );
    let other_key = store
        .match_event("t", "paid", Some("z"), T0, T0 + 10, &[])
        .await
        .unwrap();
    assert!(other_key.0.is_none());
    let no_key = store
        .match_event("t", "paid", None, T0, T0 + 10, &[])
        .await
        .unwrap();
    assert!(
        no_key.0.is_none(),
        "a wait without a key matches only keyless events"
    );
    let listed = store
        .list_events("t", &Default::default(), None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    let page = store
        .list_events("t", &Default::default(), Some(b), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(store.tenant_usage("t").await.unwrap().events, 2);
    let expired = store.expired_events(T0 + 1_000, 10).await.unwrap();
    assert_eq!(expired, vec![("t".to_owned(), a)]);
    store.remove_events(&expired).await.unwrap();
    assert!(store.event("t", "a").await.unwrap().is_none());
    assert_eq!(store.tenant_usage("t").await.unwrap().events, 1);
    assert_eq!(m(T0, T0 + 10, vec![]).await.0.unwrap().id, "b");
}

/// Storing an event makes every run waiting on its name and key due at its arrival, in the
/// same write; runs waiting on another key stay as they were, and a run that stopped
/// waiting is not woken.
pub async fn an_event_wakes_its_waiters_in_the_write_that_stores_it(store: Arc<dyn Store>) {
    let mut r1 = create(&*store, run("r1", "t", "q")).await;
    let mut r2 = create(&*store, run("r2", "t", "q")).await;
    let mut other = create(&*store, run("r3", "t", "q")).await;
    wait_for(&*store, &mut r1, "k", 0).await;
    wait_for(&*store, &mut r2, "k", 0).await;
    wait_for(&*store, &mut other, "z", 0).await;
    assert!(claim_ids(&*store, T0 + 50).await.is_empty());
    let (_, woken) = put(&*store, "t", new_event("e", "paid", Some("k"), T0 + 50)).await;
    assert_eq!(woken, 2);
    let mut due = claim_ids(&*store, T0 + 50).await;
    due.sort();
    assert_eq!(due, ["r1", "r2"]);
    let stored = store.run("r1").await.unwrap().unwrap();
    assert_eq!(stored.ready_at, Some(T0 + 50));
    assert_eq!(stored.version, r1.version, "waking keeps the version");
    // A write over the woken run's version is still accepted.
    r1.status = RunStatus::Completed;
    r1.ready_at = None;
    r1.wait = None;
    store
        .write_runs(vec![RunWrite::new(r1.clone(), JournalWrites::default())])
        .await
        .unwrap();
    // r2's attempt found nothing for it and waits again.
    wait_for(&*store, &mut r2, "k", u64::MAX).await;
    store.release("r1", 1, None).await.unwrap();
    store.release("r2", 1, None).await.unwrap();
    let (_, woken) = put(&*store, "t", new_event("f", "paid", Some("k"), T0 + 60)).await;
    assert_eq!(woken, 1, "only the run still waiting");
    assert_eq!(claim_ids(&*store, T0 + 60).await, vec!["r2"]);
}

/// A wait stored after a matching event arrived (numbered after the wait's `seen`) is due at
/// once; one whose `seen` covers every matching event waits for its deadline.
pub async fn a_wait_already_satisfied_when_stored_is_due_at_once(store: Arc<dyn Store>) {
    let (seq, _) = put(&*store, "t", new_event("e", "paid", Some("k"), T0 + 1)).await;
    let mut late = create(&*store, run("late", "t", "q")).await;
    wait_for(&*store, &mut late, "k", seq - 1).await;
    assert_eq!(claim_ids(&*store, T0 + 10).await, vec!["late"]);
    let mut seen = create(&*store, run("seen", "t", "q")).await;
    wait_for(&*store, &mut seen, "k", seq).await;
    assert!(claim_ids(&*store, T0 + 10).await.is_empty());
}

/// A parent waiting on children is woken by the write that ends the last of them, not before.
pub async fn the_last_child_to_end_wakes_its_waiting_parent(store: Arc<dyn Store>) {
    let mut parent = create(&*store, run("p", "t", "q")).await;
    let link = stepwise_core::flow::ParentLink {
        run: "p".into(),
        step: "fan".into(),
        depth: 1,
    };
    let mut kids = Vec::new();
    for id in ["c1", "c2"] {
        let mut child = run(id, "t", "q");
        child.parent = Some(link.clone());
        kids.push(create(&*store, child).await);
    }
    parent.status = RunStatus::Waiting;
    parent.ready_at = None;
    parent.wait = Some(stepwise_core::flow::RunWait::Children {
        step: "fan".into(),
        runs: vec!["c1".into(), "c2".into()],
    });
    parent.version = store
        .write_runs(vec![RunWrite::new(
            parent.clone(),
            JournalWrites::default(),
        )])
        .await
        .unwrap()[0];
    let filter = RunFilter {
        parent: Some("p".into()),
        ..RunFilter::default()
    };
    let listed = store.list_runs("t", &filter, None, 10).await.unwrap().runs;
    assert_eq!(listed.len(), 2);
    let mut due = claim_ids(&*store, T0).await;
    due.sort();
    assert_eq!(due, ["c1", "c2"]);
    for (i, kid) in kids.iter_mut().enumerate() {
        kid.status = RunStatus::Completed;
        kid.ready_at = None;
        kid.updated_at = T0 + 7;
        store
            .write_runs(vec![RunWrite::new(kid.clone(), JournalWrites::default())])
            .await
            .unwrap();
        store.release(&kid.id, 1, None).await.unwrap();
        let due = claim_ids(&*store, T0 + 7).await;
        if i == 0 {
            assert!(due.is_empty(), "one child still runs");
        } else {
            assert_eq!(due, vec!["p"]);
        }
    }
}

/// A schedule is created once per (tenant, name), written only over the version read, listed
/// per tenant and across tenants, and removed.
pub async fn schedules_are_created_once_and_written_over_their_version(store: Arc<dyn Store>) {
    use stepwise_core::schedule::{ScheduleRecord, ScheduleSpec};
    let record = |name: &str| ScheduleRecord {
        name: name.to_owned(),
        version: 0,
        spec: ScheduleSpec {
            cron: "0 * * * *".into(),
            timezone: "UTC".into(),
            job: "j".into(),
            queue: "q".into(),
            payload: json!({}),
            overrides: Default::default(),
            priority: 0,
            overlap: Default::default(),
            catch_up: Default::default(),
            catch_up_limit: 10,
            paused: false,
        },
        next_fire_at: Some(T0),
        recent: Vec::new(),
        fired: 0,
        skipped: 0,
        created_at: T0,
        updated_at: T0,
    };
    let v1 = store.put_schedule("t", &record("a"), None).await.unwrap();
    assert_eq!(v1, 1);
    assert!(matches!(
        store.put_schedule("t", &record("a"), None).await,
        Err(StoreError::Conflict { .. })
    ));
    store.put_schedule("u", &record("a"), None).await.unwrap();
    let mut changed = store.schedule("t", "a").await.unwrap().unwrap();
    changed.next_fire_at = Some(T0 + 1);
    let v2 = store.put_schedule("t", &changed, Some(v1)).await.unwrap();
    assert_eq!(v2, 2);
    assert!(matches!(
        store.put_schedule("t", &changed, Some(v1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store
            .schedule("t", "a")
            .await
            .unwrap()
            .unwrap()
            .next_fire_at,
        Some(T0 + 1)
    );
    store.put_schedule("t", &record("b"), None).await.unwrap();
    let names: Vec<String> = store
        .schedules_of("t")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(store.all_schedules().await.unwrap().len(), 3);
    assert!(store.remove_schedule("t", "a").await.unwrap());
    assert!(!store.remove_schedule("t", "a").await.unwrap());
    assert!(store.schedule("t", "a").await.unwrap().is_none());
}

/// Instantiates every conformance test for a backend: `$fresh` is an async expression that
/// yields `(Arc<dyn Store>, guard)` for a fresh, empty store.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::conformance_tests!(@each $fresh;
            a_created_run_is_stored_listed_counted_and_due,
            one_idempotency_key_makes_one_run_under_a_race,
            a_stale_version_is_refused_never_applied,
            claims_hand_out_each_due_run_once_until_released,
            settling_moves_runs_between_ready_final_and_dead_lettered,
            journal_writes_are_numbered_in_order_and_paged,
            listings_page_filter_and_stay_within_their_tenant,
            a_listing_reads_a_bounded_number_of_runs_per_page,
            settings_round_trip_per_tenant,
            purged_dead_letters_are_deleted_with_their_history_and_keys,
            events_are_numbered_matched_listed_and_expired,
            an_event_wakes_its_waiters_in_the_write_that_stores_it,
            a_wait_already_satisfied_when_stored_is_due_at_once,
            the_last_child_to_end_wakes_its_waiting_parent,
            schedules_are_created_once_and_written_over_their_version,
            a_pending_key_is_kept_refused_or_replaced_until_its_run_is_claimed,
            a_wait_racing_its_event_or_its_last_child_is_always_woken,
        );
    };
    (@each $fresh:expr; $($name:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (store, _guard) = $fresh;
            $crate::conformance::$name(store).await;
        }
    )*};
}

/// A keyed run holds its (tenant, queue, job, key) while pending: `keep` and `reject` find it
/// (nothing stored), `replace` rewrites it at a new version and due time, any number of
/// concurrent replacements leave one run, and once it is claimed a new run takes the key.
pub async fn a_pending_key_is_kept_refused_or_replaced_until_its_run_is_claimed(
    store: Arc<dyn Store>,
) {
    use stepwise_core::keyed::OnDuplicate as D;
    assert_eq!(
        try_create(&*store, keyed_run("a", "k", D::Replace)).await,
        Created::Created
    );
    for on_duplicate in [D::Keep, D::Reject] {
        assert_eq!(
            try_create(&*store, keyed_run("b", "k", on_duplicate)).await,
            Created::PendingHeld { run: "a".into() }
        );
    }
    assert_eq!(store.run("b").await.unwrap(), None);
    let mut later = keyed_run("c", "k", D::Replace);
    later.payload = json!({"new": true});
    later.ready_at = Some(T0 + 5_000);
    later.created_at = T0 + 10;
    let before = store.tenant_usage("t").await.unwrap().stored_bytes;
    let Created::Replaced { run: replaced } = try_create(&*store, later).await else {
        panic!("not replaced");
    };
    // Charged what it adds (its timeline entry, a few changed bytes), not the whole record
    // again.
    let grew = store.tenant_usage("t").await.unwrap().stored_bytes - before;
    let record = serde_json::to_vec(&*replaced).unwrap().len() as u64;
    assert!(
        grew < record,
        "a replacement charged {grew} bytes for a {record}-byte record"
    );
    assert_eq!((replaced.id.as_str(), replaced.version), ("a", 2));
    let stored = store.run("a").await.unwrap().unwrap();
    assert_eq!(stored, *replaced);
    assert_eq!(stored.payload, json!({"new": true}));
    assert_eq!(stored.key.as_ref().map(|k| k.replaced), Some(1));
    assert_eq!(store.run("c").await.unwrap(), None);
    // Moved in the ready set: not due at T0, due at its new time.
    assert!(claim_ids(&*store, T0).await.is_empty());
    let (timeline, _) = store.timeline_page("a", 0, 10).await.unwrap();
    assert_eq!(timeline.len(), 1, "the replacement is on the timeline");
    assert_eq!(claim_ids(&*store, T0 + 5_000).await, vec!["a".to_owned()]);
    // Claimed, no start recorded: busy, nothing stored; handed back, it is pending again.
    for on_duplicate in [D::Replace, D::Keep] {
        assert_eq!(
            try_create(&*store, keyed_run("d", "k", on_duplicate)).await,
            Created::HolderBusy { run: "a".into() }
        );
    }
    assert_eq!(store.run("d").await.unwrap(), None);
    store.release("a", 0, None).await.unwrap();
    assert_eq!(
        try_create(&*store, keyed_run("d", "k", D::Keep)).await,
        Created::PendingHeld { run: "a".into() }
    );
    // Claimed again, and its attempt's start recorded: it has started, and the key goes to
    // a new run, which later enqueues then find.
    assert_eq!(claim_ids(&*store, T0 + 5_000).await, vec!["a".to_owned()]);
    let started = TimelineEntry {
        attempt: Some(1),
        ..entry(EventKind::AttemptStarted, "")
    };
    let writes = JournalWrites {
        timeline: vec![started],
        ..JournalWrites::default()
    };
    store.record_step("a", writes).await.unwrap();
    assert_eq!(
        try_create(&*store, keyed_run("d", "k", D::Replace)).await,
        Created::Created
    );
    assert_eq!(store.run("a").await.unwrap().unwrap().version, 2);
    store.release("a", 0, None).await.unwrap();
    assert_eq!(
        try_create(&*store, keyed_run("f", "k", D::Keep)).await,
        Created::PendingHeld { run: "d".into() }
    );
    // Another job's key of the same name is its own.
    let mut other_job = keyed_run("e", "k", D::Reject);
    other_job.job = "other".into();
    assert_eq!(try_create(&*store, other_job).await, Created::Created);

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let mut run = keyed_run(&format!("r{i:02}"), "race", D::Replace);
        run.payload = json!({ "i": i });
        tasks.push(tokio::spawn(async move { try_create(&*store, run).await }));
    }
    let (mut created, mut versions) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Created::Created => created.push(()),
            Created::Replaced { run } => versions.push(run.version),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    versions.sort_unstable();
    assert_eq!(versions, (2..=20).collect::<Vec<u64>>());
    let listed = store
        .list_runs("t", &RunFilter::default(), None, 100)
        .await
        .unwrap()
        .runs;
    assert_eq!(
        listed
            .iter()
            .filter(|r| r.key.as_ref().is_some_and(|k| k.key == "race"))
            .count(),
        1
    );
}

/// A run suspending on an event while that very event is stored, and a parent suspending on
/// its children while its last child ends, each from a concurrent write, many times over:
/// the wait is always woken (either the suspension sees what it waits for, or the event or
/// the child's end sees the waiter), never left to its deadline.
pub async fn a_wait_racing_its_event_or_its_last_child_is_always_woken(store: Arc<dyn Store>) {
    for i in 0..25 {
        // An event wait against its event.
        let id = format!("w{i:02}");
        let key = format!("k{i}");
        let r = create(&*store, run(&id, "t", "q")).await;
        // What the attempt saw before the event arrived.
        let (_, seen) = store
            .match_event("t", "paid", Some(&key), 0, Millis::MAX, &[])
            .await
            .unwrap();
        let waiter = {
            let (store, mut r, key) = (store.clone(), r.clone(), key.clone());
            tokio::spawn(async move { wait_for(&*store, &mut r, &key, seen).await })
        };
        let event = {
            let (store, key) = (store.clone(), key.clone());
            let e = new_event(&format!("e{i}"), "paid", Some(&key), T0 + 50);
            tokio::spawn(async move { put(&*store, "t", e).await })
        };
        waiter.await.unwrap();
        event.await.unwrap();
        let stored = store.run(&id).await.unwrap().unwrap();
        assert!(
            stored.ready_at.is_some_and(|at| at <= T0 + 50),
            "{id} lost its event's wake-up: due at {:?}",
            stored.ready_at
        );

        // A children wait against its last child's end.
        let parent_id = format!("p{i:02}");
        let mut parent = create(&*store, run(&parent_id, "t", "q")).await;
        let mut child = run(&format!("c{i:02}"), "t", "q");
        child.parent = Some(stepwise_core::flow::ParentLink {
            run: parent_id.clone(),
            step: "fan".into(),
            depth: 1,
        });
        let mut child = create(&*store, child).await;
        parent.status = RunStatus::Waiting;
        parent.ready_at = None;
        parent.updated_at = T0 + 9;
        parent.wait = Some(stepwise_core::flow::RunWait::Children {
            step: "fan".into(),
            runs: vec![child.id.clone()],
        });
        child.status = RunStatus::Completed;
        child.ready_at = None;
        child.updated_at = T0 + 7;
        let suspend = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write_runs(vec![RunWrite::new(parent, JournalWrites::default())])
                    .await
                    .unwrap()
            })
        };
        let end = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write_runs(vec![RunWrite::new(child, JournalWrites::default())])
                    .await
                    .unwrap()
            })
        };
        suspend.await.unwrap();
        end.await.unwrap();
        let stored = store.run(&parent_id).await.unwrap().unwrap();
        assert!(
            stored.ready_at.is_some_and(|at| at <= T0 + 9),
            "{parent_id} lost its last child's wake-up: due at {:?}",
            stored.ready_at
        );
    }
}
