//! Crash recovery of `stepwise serve` under concurrent load: clients enqueue as fast as they
//! can while the server executes, the process is killed with SIGKILL at a different moment in
//! each round and restarted on the same data dir. Every enqueue that was acknowledged survives,
//! every run completes, and no completed step runs twice.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::{
    Api, Server, assert_attempts_numbered_once, exec_count, is_final, run_id, step_attempts,
};

const QUEUE: &str = "crash";

/// Concurrent clients per round.
const CLIENTS: usize = 4;

/// Upper bound on enqueues per client per round, so the test stays bounded on a fast machine.
const MAX_PER_CLIENT: usize = 250;

/// How long each round's clients enqueue before the kill.
const KILL_AFTER_MS: [u64; 3] = [150, 400, 900];

/// How long every acknowledged run gets to finish after the last restart.
const SETTLE: Duration = Duration::from_secs(300);

/// What the clients of one round saw.
#[derive(Default)]
struct Round {
    /// Ids of runs whose enqueue was answered 201.
    acknowledged: Vec<String>,
    /// Answers other than 201 (none are expected from a live server).
    unexpected: Vec<(u16, Value)>,
}

/// One client: enqueues `flaky` runs until the server stops answering (it was killed), `stop`
/// is set, or it reaches its bound.
async fn client(api: Api, token: String, next: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> Round {
    let mut round = Round::default();
    for _ in 0..MAX_PER_CLIENT {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let i = next.fetch_add(1, Ordering::SeqCst);
        let body = json!({
            "job": "flaky",
            "payload": {"steps": ["a", "b", "c"], "fail": {"b": 1}, "i": i},
            "backoff": {"initial_ms": 100},
        });
        match api.try_enqueue(&token, QUEUE, body).await {
            Ok((201, answer)) => round.acknowledged.push(run_id(&answer["run"])),
            Ok(other) => {
                // Stop at the first: a broken server would otherwise answer hundreds.
                round.unexpected.push(other);
                break;
            }
            // The server was killed with this request in flight (or before it was sent): it was
            // not acknowledged, so nothing is promised about it.
            Err(_) => break,
        }
    }
    round
}

/// Every run of the queue, through the paginated list.
async fn all_runs(api: &Api, token: &str) -> Vec<Value> {
    let mut runs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/runs?queue={QUEUE}&limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, page) = api.get(token, &path).await;
        assert_eq!(status, 200, "{page}");
        runs.extend(page["runs"].as_array().expect("runs").iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return runs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_runs_survive_repeated_kill9_under_load() {
    let mut server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("crash").await;
    api.deploy(&token, guests::TESTBED).await;

    let next = Arc::new(AtomicU64::new(0));
    let mut acknowledged: Vec<String> = Vec::new();
    for (round, kill_after) in KILL_AFTER_MS.into_iter().enumerate() {
        let api = server.api();
        let api_url = server.url().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    api.clone(),
                    token.clone(),
                    next.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        // Requests in flight now fail; the clients stop at their first failure.
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        let mut acked = 0;
        for c in clients {
            let seen = c.await.expect("client task");
            assert!(
                seen.unexpected.is_empty(),
                "round {round}: answers other than 201: {:?}\n{}",
                seen.unexpected,
                server.log_tail(100)
            );
            acked += seen.acknowledged.len();
            acknowledged.extend(seen.acknowledged);
        }
        eprintln!(
            "round {round}: killed {} after {kill_after} ms, {acked} enqueues acknowledged",
            api_url
        );
        server.restart();
    }
    // Each start logs how many runs it found waiting: after a kill under load, some were.
    let resumed: Vec<u64> = server
        .log()
        .lines()
        .filter(|l| l.contains("store opened"))
        .filter_map(|l| {
            l.split("runs_to_resume=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    eprintln!("runs waiting at each start: {resumed:?}");
    assert_eq!(resumed.len(), KILL_AFTER_MS.len() + 1, "{resumed:?}");
    assert!(
        resumed.iter().any(|n| *n > 0),
        "no kill interrupted any work: {resumed:?}"
    );
    let unique: BTreeSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        unique.len(),
        acknowledged.len(),
        "a run id was acknowledged twice"
    );
    assert!(!acknowledged.is_empty(), "no enqueue was acknowledged");

    // Wait until every acknowledged run is final.
    let api = server.api();
    let deadline = Instant::now() + SETTLE;
    let mut views: BTreeMap<String, Value> = BTreeMap::new();
    let mut pending: Vec<String> = acknowledged.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let (status, view) = api.get(&token, &format!("/v1/runs/{id}")).await;
            assert_eq!(status, 200, "acknowledged run {id} is lost: {view}");
            if is_final(&view) {
                views.insert(id, view);
            } else {
                still.push(id);
            }
        }
        pending = still;
        assert!(
            Instant::now() < deadline,
            "{} runs not final after {SETTLE:?}, e.g. {:?}\n{}",
            pending.len(),
            pending.first(),
            server.log_tail(100)
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Runs whose enqueue was committed but not acknowledged (killed before the answer) are in
    // the queue too; they must obey the same rules.
    let listed = all_runs(&api, &token).await;
    let listed_ids: BTreeSet<String> = listed.iter().map(run_id).collect();
    assert!(
        unique.iter().all(|id| listed_ids.contains(*id)),
        "an acknowledged run is missing from GET /v1/runs"
    );
    for run in &listed {
        let id = run_id(run);
        if let Entry::Vacant(slot) = views.entry(id.clone()) {
            slot.insert(api.wait_final(&token, &id, SETTLE).await);
        }
    }
    eprintln!(
        "{} runs acknowledged, {} in the queue",
        acknowledged.len(),
        views.len()
    );

    // Why exact counts hold across kills: a step's attempt count and its `exec` log line are
    // only written in the same commit as the step's outcome (its completion, or the failed
    // attempt's end). A step that ran but whose outcome was not committed before the kill
    // leaves neither a line nor a count, and runs again as the same attempt number. A step
    // whose completion was committed is replayed from the journal, never run again. So `a` and
    // `c` ran (as far as the record shows) exactly once, and `b` exactly twice: the committed
    // failure of its first attempt and the committed success of its second.
    for (id, view) in &views {
        assert_eq!(view["status"], "completed", "{id}: {view:#}");
        assert_eq!(view["tenant"], "crash");
        assert_eq!(exec_count(view, "a"), 1, "{id}: {view:#}");
        assert_eq!(exec_count(view, "b"), 2, "{id}: {view:#}");
        assert_eq!(exec_count(view, "c"), 1, "{id}: {view:#}");
        assert_eq!(step_attempts(view, "a"), 1, "{id}: {view:#}");
        assert_eq!(step_attempts(view, "b"), 2, "{id}: {view:#}");
        assert_eq!(step_attempts(view, "c"), 1, "{id}: {view:#}");
        assert_eq!(view["output"].as_array().map(Vec::len), Some(3), "{view:#}");
        assert_attempts_numbered_once(view);
    }
    let (_, queue) = api.get(&token, &format!("/v1/queues/{QUEUE}")).await;
    assert_eq!(queue["depth"], 0, "{queue}");
    assert_eq!(queue["dead_letters"], 0, "{queue}");
}

/// `kill -9` of the server after the provider made the charge but before the step's
/// completion was committed: after the restart the run completes, sending the same
/// idempotency key again, and the provider holds exactly one charge.
#[tokio::test]
async fn a_charge_in_flight_at_kill9_is_made_exactly_once() {
    let base = crate::util::fake_provider().await;
    let mut server = Server::start_with_config("[egress]\nallow_private = true\n");
    let api = server.api();
    let token = api.admin_create_tenant("payer").await;
    api.deploy(&token, guests::HTTP_CLIENT).await;
    let (status, _) = api
        .put(
            &token,
            "/v1/egress",
            json!({ "rules": [{ "pattern": base }] }),
        )
        .await;
    assert_eq!(status, 200);
    // The provider makes the charge and then holds its answer back.
    let control = json!({ "lose_next": 1, "lose_delay_ms": 60_000 });
    crate::util::provider_control(&base, control).await;
    let id = api
        .enqueue_new(
            &token,
            "payments",
            json!({ "job": "charge",
                    "payload": { "base_url": base, "amount": 700, "timeout_ms": 30_000 } }),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::util::provider_get(&base, "/v1/charges").await["count"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the charge never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = api.run(&token, &id).await;
    assert_eq!(
        run["status"], "running",
        "the step has not completed: {run}"
    );
    server.kill9();
    server.restart();
    let api = server.api();
    let run = api.wait_final(&token, &id, SETTLE).await;
    assert_eq!(run["status"], "completed", "{run}");
    let all = crate::util::provider_get(&base, "/v1/charges").await;
    assert_eq!(all["count"], 1, "exactly one charge: {all}");
    assert_eq!(run["output"]["id"], all["charges"][0]["id"]);
    // The invocation the kill cut short keeps its number: the run was invoked twice.
    assert_eq!(run["attempts"], 2, "{run}");
    assert_attempts_numbered_once(&run);
}
