//! Several `stepwise serve` hosts on one PostgreSQL database (a throwaway cluster the test
//! starts, see `stepwise_store_postgres::testing`): clients enqueue through every host while
//! one host at a time is killed with SIGKILL and restarted, over and over. Every acknowledged
//! run completes, no completed step runs twice, every attempt is numbered once (so no two
//! hosts ran one attempt), and a killed host's claims are taken over within the bound its
//! lease sets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::{
    ADMIN_TOKEN, Api, METRICS_TOKEN, Server, assert_attempts_numbered_once, exec_count, is_final,
    run_id, step_attempts,
};

const QUEUE: &str = "shared";

/// Hosts on the database.
const HOSTS: usize = 3;

/// Kills (each followed by a restart of the killed host).
const KILLS: usize = 10;

/// The hosts' lease: short, so takeovers happen within the test's time.
const LEASE_MS: u64 = 2_000;

/// A killed host's claims are all taken over within its lease, a renewal interval (the live
/// hosts' schedulers look again at each of theirs) and slack for a machine busy with every
/// other test (the measured takeovers are printed; 2.0–2.3 s when measured alone).
const TAKEOVER_BOUND: Duration = Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 6_000);

/// How long every acknowledged run gets to finish after the last restart.
const SETTLE: Duration = Duration::from_secs(300);

fn config(url: &str) -> String {
    format!(
        "store = \"{url}\"\nconcurrency = 16\n\n[postgres]\npool_size = 8\nlease = \"{LEASE_MS}ms\"\n"
    )
}

/// Enqueues `flaky` runs through `api` until `stop` is set or the host stops answering.
async fn client(
    api: Api,
    token: String,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let body = json!({
            "job": "flaky",
            "payload": {"steps": ["a", "b", "c"], "fail": {"b": 1}, "i": i},
            "backoff": {"initial_ms": 100},
        });
        match api.try_enqueue(&token, QUEUE, body).await {
            Ok((201, answer)) => acknowledged.push(run_id(&answer["run"])),
            Ok((status, answer)) => panic!("enqueue answered {status}: {answer}"),
            // The host was killed with this request in flight: nothing is promised about it.
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    acknowledged
}

/// Runs claimed by `host` now, read from the database.
async fn claims_of(db: &tokio_postgres::Client, host: &str) -> i64 {
    db.query_one("SELECT count(*) FROM runs WHERE claimed_by = $1", &[&host])
        .await
        .expect("count claims")
        .get(0)
}

/// The id a host reports on `/v1/hosts`.
async fn host_id(api: &Api) -> String {
    let (status, hosts) = api.get(ADMIN_TOKEN, "/v1/hosts").await;
    assert_eq!(status, 200, "{hosts}");
    hosts["this_host"].as_str().expect("this_host").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_sharing_postgres_take_over_a_killed_hosts_runs_and_never_run_a_step_twice() {
    let url = stepwise_store_postgres::testing::server()
        .fresh_database()
        .await;
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);

    let toml = config(&url);
    let mut servers: Vec<Server> = (0..HOSTS)
        .map(|_| Server::start_with_config(&toml))
        .collect();
    let token = servers[0].api().admin_create_tenant("shared").await;
    servers[0].api().deploy(&token, guests::TESTBED).await;

    // Every host sees the others, and the tenant and module one host stored.
    let (status, hosts) = servers[1].api().get(ADMIN_TOKEN, "/v1/hosts").await;
    assert_eq!(status, 200, "{hosts}");
    assert_eq!(
        hosts["hosts"].as_array().map(Vec::len),
        Some(HOSTS),
        "{hosts}"
    );
    let (status, modules) = servers[2].api().get(&token, "/v1/modules").await;
    assert_eq!(status, 200, "{modules}");

    // A queue's settings changed through one host reach the others without a restart.
    let (status, body) = servers[0]
        .api()
        .put(
            &token,
            &format!("/v1/queues/{QUEUE}"),
            json!({"concurrency": 12}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for server in &servers[1..] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, queue) = server
                .api()
                .get(&token, &format!("/v1/queues/{QUEUE}"))
                .await;
            if queue["concurrency"] == 12 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "settings not propagated: {queue}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let next = Arc::new(AtomicU64::new(0));
    let mut acknowledged: Vec<String> = Vec::new();
    let mut takeovers: Vec<Duration> = Vec::new();
    for kill in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = servers
            .iter()
            .flat_map(|s| {
                let api = s.api();
                let (token, next, stop) = (token.clone(), next.clone(), stop.clone());
                [tokio::spawn(client(api, token, next, stop))]
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let victim = kill % HOSTS;
        let victim_id = host_id(&servers[victim].api()).await;
        let held = claims_of(&db, &victim_id).await;
        servers[victim].kill9();
        let killed_at = Instant::now();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            acknowledged.extend(c.await.expect("client task"));
        }
        // Its claims pass to the live hosts once its lease lapsed.
        loop {
            let left = claims_of(&db, &victim_id).await;
            if left == 0 {
                break;
            }
            assert!(
                killed_at.elapsed() < TAKEOVER_BOUND,
                "kill {kill}: {left} of the {held} claims of {victim_id} not taken over after {:?}",
                killed_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if held > 0 {
            takeovers.push(killed_at.elapsed());
        }
        eprintln!(
            "kill {kill}: host {victim_id} held {held} claims, taken over after {:?}",
            killed_at.elapsed()
        );
        servers[victim].restart();
    }
    assert!(
        !takeovers.is_empty(),
        "no kill found the host holding claims: nothing was taken over"
    );
    eprintln!("takeovers: {takeovers:?}");
    let unique: BTreeSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        unique.len(),
        acknowledged.len(),
        "a run id was acknowledged twice"
    );
    assert!(!acknowledged.is_empty(), "no enqueue was acknowledged");

    // Every run in the queue (acknowledged or committed just before a kill) completes.
    let api = servers[0].api();
    let deadline = Instant::now() + SETTLE;
    let mut views: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        let (_, queue) = api.get(&token, &format!("/v1/queues/{QUEUE}")).await;
        if queue["depth"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs still waiting after {SETTLE:?}: {queue}\n{}",
            servers[0].log_tail(50)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &acknowledged {
        let (status, view) = api.get(&token, &format!("/v1/runs/{id}")).await;
        assert_eq!(status, 200, "acknowledged run {id} is lost: {view}");
        assert!(is_final(&view), "{view}");
        views.insert(id.clone(), view);
    }
    // As in the single-host crash test: a step's count and its `exec` line are written with
    // its outcome, so `a` and `c` ran once and `b` twice, whichever hosts ran them.
    for (id, view) in &views {
        assert_eq!(view["status"], "completed", "{id}: {view:#}");
        assert_eq!(exec_count(view, "a"), 1, "{id}: {view:#}");
        assert_eq!(exec_count(view, "b"), 2, "{id}: {view:#}");
        assert_eq!(exec_count(view, "c"), 1, "{id}: {view:#}");
        assert_eq!(step_attempts(view, "b"), 2, "{id}: {view:#}");
        assert_attempts_numbered_once(view);
    }
    // Each host names itself on /metrics, and counts the writes its lost leases refused.
    let mut refused = 0u64;
    for server in &servers {
        let (status, metrics) = server.api().get(METRICS_TOKEN, "/metrics").await;
        assert_eq!(status, 200);
        let text = metrics.as_str().expect("metrics are text");
        let id = host_id(&server.api()).await;
        assert!(
            text.contains(&format!("stepwise_host_info{{host=\"{id}\"}} 1")),
            "{text}"
        );
        refused += text
            .lines()
            .find_map(|l| l.strip_prefix("stepwise_lease_writes_refused_total "))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("stepwise_lease_writes_refused_total");
    }
    eprintln!(
        "{} runs acknowledged and completed across {HOSTS} hosts and {KILLS} kills; \
         writes refused by lost leases on the live hosts: {refused}",
        views.len()
    );
}
