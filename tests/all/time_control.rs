//! Keyed delayed jobs, debounce and queue rate limits through the engine on a real store with
//! real guests and an injected clock: `replace` under 50 concurrent enqueues of one key leaves
//! one pending run with the last payload, `keep` and `reject` answer with the pending run,
//! debounce starts once after the quiet period with the last payload (or at `max_wait`), a
//! rate limit of 5 per second spreads 50 starts (measured from the timeline), and a per-key
//! limit keeps keys apart.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use stepwise::clock::Millis;
use stepwise::engine::{EnqueueOutcome, Keyed};
use stepwise::keyed::{Debounce, OnDuplicate};
use stepwise::model::EventKind;
use stepwise::rate::RateLimit;
use stepwise::store::QueueSettings;
use stepwise::{EngineConfig, EngineError, NewRun, RunFilter, RunStatus};
use stepwise_tests::guests;

use crate::util::*;

const LOCAL: &str = "local";

/// A `double` run of the flows guest on `queue`, with `n` as its payload.
fn double(module: &str, queue: &str, n: u32) -> NewRun {
    NewRun {
        queue: queue.to_owned(),
        ..NewRun::local(module, "double", json!({ "n": n }).to_string())
    }
}

fn keyed(key: &str, on_duplicate: OnDuplicate) -> Option<Keyed> {
    Some(Keyed {
        key: key.to_owned(),
        on_duplicate,
        debounce: None,
    })
}

fn debounced(key: &str, period_ms: u64, max_wait_ms: Option<u64>) -> Option<Keyed> {
    Some(Keyed {
        key: key.to_owned(),
        on_duplicate: OnDuplicate::Replace,
        debounce: Some(Debounce {
            period_ms,
            max_wait_ms,
        }),
    })
}

async fn runs_of(h: &Harness, queue: &str) -> Vec<stepwise::RunRecord> {
    let filter = RunFilter {
        queue: Some(queue.to_owned()),
        ..RunFilter::default()
    };
    h.engine
        .list_runs(LOCAL, &filter, None, 1_000)
        .await
        .unwrap()
        .runs
}

/// When each attempt of `id` started, from its timeline.
async fn starts_of(h: &Harness, id: &str) -> Vec<Millis> {
    let view = h.engine.view(id).await.unwrap();
    view.timeline
        .iter()
        .filter(|e| e.kind == EventKind::AttemptStarted)
        .map(|e| e.at)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_under_50_concurrent_enqueues_leaves_one_pending_run_with_the_last_payload() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let engine = h.engine.clone();
        let req = NewRun {
            keyed: keyed("user-7", OnDuplicate::Replace),
            delay_ms: Some(60_000 + u64::from(n)),
            ..double(&module, "keyed", n)
        };
        tasks.push(tokio::spawn(async move { engine.enqueue(req).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    let ids: HashSet<&str> = answers.iter().map(|a| a.run.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        1,
        "every enqueue answers with the one pending run"
    );
    let created = answers
        .iter()
        .filter(|a| a.outcome == EnqueueOutcome::Created)
        .count();
    assert_eq!(created, 1);
    assert!(
        answers
            .iter()
            .filter(|a| a.outcome != EnqueueOutcome::Created)
            .all(|a| a.outcome == EnqueueOutcome::Replaced && a.deduplicated)
    );
    // The last write wins: the answer with the highest version carries the stored payload
    // and start.
    let last = answers.iter().max_by_key(|a| a.run.version).unwrap();
    assert_eq!(last.run.version, 50, "one create and 49 replacements");
    let runs = runs_of(&h, "keyed").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let stored = h.redb.run(&runs[0].id).unwrap().unwrap();
    assert_eq!(stored.payload, last.run.payload);
    assert_eq!(stored.ready_at, last.run.ready_at);
    assert_eq!(stored.key.as_ref().unwrap().replaced, 49);
    let view = h.engine.view(&stored.id).await.unwrap();
    let replaced = view
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::Replaced)
        .count();
    assert_eq!(replaced, 49, "each replacement is on the timeline");

    // `keep` answers with the pending run, unchanged; `reject` refuses, naming it.
    let kept = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("user-7", OnDuplicate::Keep),
            ..double(&module, "keyed", 99)
        })
        .await
        .unwrap();
    assert_eq!(kept.outcome, EnqueueOutcome::Kept);
    assert_eq!(kept.run.id, stored.id);
    assert_eq!(kept.run.payload, stored.payload);
    let refused = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("user-7", OnDuplicate::Reject),
            ..double(&module, "keyed", 99)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, EngineError::PendingRunExists { run, .. } if *run == stored.id),
        "{refused}"
    );
    assert_eq!(h.redb.run(&stored.id).unwrap().unwrap().version, 50);

    // Once the run has run, the key makes a new run.
    h.engine.drain().await.unwrap();
    let done = h.redb.run(&stored.id).unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let n = last.run.payload["n"].as_u64().unwrap();
    assert_eq!(done.output, Some(json!(n * 2)));
    let again = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("user-7", OnDuplicate::Replace),
            ..double(&module, "keyed", 1)
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, EnqueueOutcome::Created);
    assert_ne!(again.run.id, stored.id);
    // Another key, or another job's key of the same name, is its own run.
    let other = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("user-8", OnDuplicate::Reject),
            ..double(&module, "keyed", 1)
        })
        .await
        .unwrap();
    assert_eq!(other.outcome, EnqueueOutcome::Created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_moves_the_start_and_a_run_that_started_is_never_replaced() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let first = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("k", OnDuplicate::Replace),
            delay_ms: Some(3_600_000),
            ..double(&module, "moves", 1)
        })
        .await
        .unwrap();
    // Brought forward to now: it runs at once with the new payload.
    let moved = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("k", OnDuplicate::Replace),
            ..double(&module, "moves", 2)
        })
        .await
        .unwrap();
    assert_eq!(moved.run.id, first.run.id);
    assert_eq!(moved.run.ready_at, Some(START));
    until_status(&h, &first.run.id, RunStatus::Completed).await;
    assert_eq!(starts_of(&h, &first.run.id).await, vec![START]);
    let done = h.redb.run(&first.run.id).unwrap().unwrap();
    assert_eq!(done.output, Some(json!(4)));

    // A run whose attempt failed and waits for its retry has started: a new run is made.
    let flaky = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("f", OnDuplicate::Replace),
            overrides: attempts(3, 60_000),
            ..NewRun::local(&module, "flake", json!({"n": 1}).to_string())
        })
        .await
        .unwrap();
    until_status(&h, &flaky.run.id, RunStatus::Retrying).await;
    let second = h
        .engine
        .enqueue(NewRun {
            keyed: keyed("f", OnDuplicate::Replace),
            overrides: attempts(3, 60_000),
            ..NewRun::local(&module, "flake", json!({"n": 2}).to_string())
        })
        .await
        .unwrap();
    assert_eq!(second.outcome, EnqueueOutcome::Created);
    assert_ne!(second.run.id, flaky.run.id);

    // Bad keyed options are refused, naming the option, and store nothing.
    let before = runs_of(&h, "moves").await.len();
    for (req, field) in [
        (
            NewRun {
                keyed: keyed("", OnDuplicate::Keep),
                ..double(&module, "moves", 1)
            },
            "key",
        ),
        (
            NewRun {
                keyed: keyed("k2", OnDuplicate::Keep),
                idempotency_key: Some("i".into()),
                ..double(&module, "moves", 1)
            },
            "key",
        ),
        (
            NewRun {
                keyed: debounced("d", 0, None),
                ..double(&module, "moves", 1)
            },
            "debounce",
        ),
        (
            NewRun {
                keyed: debounced("d", 1_000, Some(10)),
                ..double(&module, "moves", 1)
            },
            "debounce",
        ),
        (
            NewRun {
                keyed: debounced("d", 1_000, None),
                delay_ms: Some(5),
                ..double(&module, "moves", 1)
            },
            "debounce",
        ),
        (
            NewRun {
                rate_key: Some("x".repeat(257)),
                ..double(&module, "moves", 1)
            },
            "rate_key",
        ),
    ] {
        let err = h.engine.enqueue(req).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Policy(p) if p.field == field),
            "{field}: {err}"
        );
    }
    assert_eq!(runs_of(&h, "moves").await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_of_10_enqueues_100ms_apart_starts_once_1s_after_the_last_with_the_10th_payload() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let mut answers = Vec::new();
    for n in 0..10 {
        if n > 0 {
            h.clock.advance(Duration::from_millis(100));
        }
        let answer = h
            .engine
            .enqueue(NewRun {
                keyed: debounced("search-box", 1_000, None),
                ..double(&module, "debounce", n)
            })
            .await
            .unwrap();
        // Nothing due yet: running what is due starts nothing.
        drain_due(&h).await;
        answers.push(answer);
    }
    let id = answers[0].run.id.clone();
    assert!(answers.iter().all(|a| a.run.id == id));
    assert_eq!(answers[0].outcome, EnqueueOutcome::Created);
    assert!(
        answers[1..]
            .iter()
            .all(|a| a.outcome == EnqueueOutcome::Debounced)
    );
    let last_enqueue = START + 900;
    let run = h.redb.run(&id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.ready_at, Some(last_enqueue + 1_000));
    assert!(starts_of(&h, &id).await.is_empty());
    h.engine.drain().await.unwrap();
    assert_eq!(starts_of(&h, &id).await, vec![last_enqueue + 1_000]);
    let done = h.redb.run(&id).unwrap().unwrap();
    assert_eq!(done.output, Some(json!(18)), "the 10th payload ran");
    assert_eq!(runs_of(&h, "debounce").await.len(), 1);
    let view = h.engine.view(&id).await.unwrap();
    let debounced_entries = view
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::Replaced && e.detail.starts_with("debounced"))
        .count();
    assert_eq!(debounced_entries, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_with_max_wait_starts_at_the_bound_however_often_it_is_pushed_back() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let first_at = START;
    let mut id = None;
    // An enqueue every 200 ms with a 1 s period would never go quiet: max_wait 1.5 s does.
    // The clock moves in 100 ms ticks, running what is due at each.
    for tick in 0..40u32 {
        if tick > 0 {
            h.clock.advance(Duration::from_millis(100));
        }
        drain_due(&h).await;
        if tick % 2 == 0 {
            let answer = h
                .engine
                .enqueue(NewRun {
                    keyed: debounced("chatty", 1_000, Some(1_500)),
                    ..double(&module, "bounded", tick / 2)
                })
                .await
                .unwrap();
            id.get_or_insert(answer.run.id);
        }
    }
    let id = id.unwrap();
    // Started at the bound, with the payload it had then (the enqueue at 1.4 s).
    assert_eq!(starts_of(&h, &id).await, vec![first_at + 1_500]);
    let done = h.redb.run(&id).unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output, Some(json!(7 * 2)));
    // The enqueues after it made a new run, itself started at its bound (3.1 s), and the
    // last ones a third, still pending.
    let runs = runs_of(&h, "bounded").await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(starts_of(&h, &runs[1].id).await, vec![first_at + 3_100]);
    assert_eq!(runs[2].status, RunStatus::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_5_per_second_spreads_50_starts_and_says_why_runs_wait() {
    let h = harness_with(EngineConfig {
        concurrency: 16,
        ..EngineConfig::default()
    })
    .await;
    let module = h.deploy(guests::FLOWS).await;
    let limit = RateLimit {
        max: 5,
        per_ms: 1_000,
    };
    h.engine
        .set_queue(
            LOCAL,
            "limited",
            QueueSettings {
                rate_limit: Some(limit),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            h.engine
                .enqueue(double(&module, "limited", n))
                .await
                .unwrap()
                .run
                .id,
        );
    }
    // Until the first five have run: the rest wait, and say why.
    let store = h.redb.clone();
    let first = ids.clone();
    h.engine
        .work_until(move || {
            first
                .iter()
                .filter(|id| {
                    store
                        .run(id)
                        .unwrap()
                        .is_some_and(|r| r.status == RunStatus::Completed)
                })
                .count()
                >= 5
        })
        .await
        .unwrap();
    let held: Vec<_> = ids.iter().filter_map(|id| h.engine.rate_hold(id)).collect();
    assert!(!held.is_empty(), "runs over the limit are held back");
    for hold in &held {
        assert_eq!(hold.limit, limit);
        assert!(hold.until >= START + 1_000, "{hold:?}");
        assert_eq!(hold.describe("limited"), "queue 'limited' allows 5 per 1s");
    }
    h.engine.drain().await.unwrap();
    let mut starts = Vec::new();
    for id in &ids {
        let run = h.redb.run(id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Completed, "none is dropped");
        let s = starts_of(&h, id).await;
        assert_eq!(s.len(), 1);
        starts.push(s[0]);
        assert!(h.engine.rate_hold(id).is_none());
    }
    starts.sort_unstable();
    assert_at_most_per_window(&starts, 5, 1_000);
    assert_eq!(starts[4], START, "the first five start at once");
    let span = starts[49] - starts[0];
    assert!(
        (9_000..=10_000).contains(&span),
        "50 starts at 5 per second take 9-10 s, took {span} ms: {starts:?}"
    );
    // A held run's timeline says how long it waited and for what.
    let waited = h.engine.view(&ids[49]).await.unwrap();
    let entry = waited
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::RateLimited)
        .expect("a rate_limited entry");
    assert!(
        entry
            .detail
            .contains("for the rate limit: queue 'limited' allows 5 per 1s"),
        "{}",
        entry.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_key_rate_limit_keeps_keys_apart() {
    let h = harness_with(EngineConfig {
        concurrency: 16,
        ..EngineConfig::default()
    })
    .await;
    let module = h.deploy(guests::FLOWS).await;
    h.engine
        .set_queue(
            LOCAL,
            "per-key",
            QueueSettings {
                rate_limit: Some(RateLimit {
                    max: 1,
                    per_ms: 1_000,
                }),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
    let mut by_key: Vec<(&str, String)> = Vec::new();
    for n in 0..6 {
        let key = ["a", "b", "c"][n as usize % 3];
        let run = h
            .engine
            .enqueue(NewRun {
                rate_key: Some(key.to_owned()),
                ..double(&module, "per-key", n)
            })
            .await
            .unwrap()
            .run;
        by_key.push((key, run.id));
    }
    // Runs without a rate_key share one lane of their own.
    let mut unkeyed = Vec::new();
    for n in 0..3 {
        unkeyed.push(
            h.engine
                .enqueue(double(&module, "per-key", n))
                .await
                .unwrap()
                .run
                .id,
        );
    }
    h.engine.drain().await.unwrap();
    for key in ["a", "b", "c"] {
        let mut starts = Vec::new();
        for (_, id) in by_key.iter().filter(|(k, _)| *k == key) {
            starts.extend(starts_of(&h, id).await);
        }
        starts.sort_unstable();
        assert_eq!(starts, vec![START, START + 1_000], "key {key}");
    }
    let mut shared = Vec::new();
    for id in &unkeyed {
        shared.extend(starts_of(&h, id).await);
    }
    shared.sort_unstable();
    assert_eq!(shared, vec![START, START + 1_000, START + 2_000]);
    let value: Value = serde_json::to_value(h.redb.run(&by_key[0].1).unwrap().unwrap()).unwrap();
    assert_eq!(value["rate_key"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_while_runs_start_never_runs_a_payload_replaced_under_it() {
    let h = harness().await;
    let module = h.deploy(guests::FLOWS).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scheduler = {
        let (engine, stop) = (h.engine.clone(), stop.clone());
        tokio::spawn(async move { engine.run_scheduler(stop).await })
    };
    // Each enqueue is due at once, so the scheduler claims and starts the pending run while
    // later enqueues try to replace it.
    let mut answers = Vec::new();
    for n in 0..200 {
        let answer = h
            .engine
            .enqueue(NewRun {
                keyed: keyed("hot", OnDuplicate::Replace),
                ..double(&module, "race", n)
            })
            .await
            .unwrap();
        answers.push(answer);
        if n % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    h.engine.wake();
    scheduler.await.unwrap().unwrap();
    h.engine.drain().await.unwrap();
    let created: HashSet<&str> = answers
        .iter()
        .filter(|a| a.outcome == EnqueueOutcome::Created)
        .map(|a| a.run.id.as_str())
        .collect();
    let runs = runs_of(&h, "race").await;
    assert_eq!(runs.len(), created.len(), "one run per created answer");
    assert!(
        answers.iter().all(|a| created.contains(a.run.id.as_str())),
        "every answer names a created run"
    );
    for run in &runs {
        let run = h.redb.run(&run.id).unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{run:?}");
        let n = run.payload["n"].as_u64().unwrap();
        assert_eq!(
            run.output,
            Some(json!(n * 2)),
            "run {} ran a payload other than the one it holds",
            run.id
        );
        assert_eq!(starts_of(&h, &run.id).await.len(), 1);
    }
    // The last enqueue's payload ran, in the last run.
    let last = answers.last().unwrap();
    let stored = h.redb.run(&last.run.id).unwrap().unwrap();
    assert_eq!(stored.payload, json!({"n": 199}));
}
