//! Keyed delayed jobs, debounce and rate limits through a real `stepwise serve`: 50
//! concurrent HTTP enqueues of one key leave one pending run with the last payload (and the
//! key survives a `kill -9`), `keep` and `reject`, refused options, debounce, a queue rate
//! limit set over HTTP and the CLI holding runs back (the run view says why), the operator's
//! enqueue rate answering 429 with `Retry-After` per tenant, and the `/metrics` counters.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::{Server, run_id};

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_enqueues_over_http_replace_keep_and_reject_and_survive_kill9() {
    let mut server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("keyed").await;
    api.deploy(&token, guests::FLOWS).await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let api = server.api();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"job": "double", "payload": {"n": n}, "delay": "1h",
                              "key": "user-7", "on_duplicate": "replace"});
            api.enqueue(&token, "keyed", body).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ids: HashSet<String> = answers.iter().map(|(_, a)| run_id(&a["run"])).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let id = ids.into_iter().next().unwrap();
    let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].1["outcome"], "created");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != 201)
            .all(|(s, a)| *s == 200 && a["outcome"] == "replaced" && a["deduplicated"] == true),
        "{answers:?}"
    );
    // The answer that saw the 49th replacement carries what is stored.
    let last = answers
        .iter()
        .find(|(_, a)| a["run"]["key"]["replaced"] == 49)
        .expect("one answer saw every replacement");
    let view = api.run(&token, &id).await;
    assert_eq!(view["payload"], last.1["run"]["payload"]);
    assert_eq!(view["status"], "queued");
    assert_eq!(view["key"]["key"], "user-7");
    assert_eq!(view["key"]["on_duplicate"], "replace");
    let (_, listed) = api.get(&token, "/v1/runs?queue=keyed").await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "{listed}");

    // The key survives a crash: after kill -9, `keep` finds the same run.
    server.kill9();
    server.restart();
    let api = server.api();
    let (status, kept) = api
        .enqueue(
            &token,
            "keyed",
            json!({"job": "double", "payload": {"n": 1000}, "key": "user-7", "on_duplicate": "keep"}),
        )
        .await;
    assert_eq!(
        (status, kept["outcome"].clone()),
        (200, json!("kept")),
        "{kept}"
    );
    assert_eq!(run_id(&kept["run"]), id);
    assert_eq!(kept["run"]["payload"], last.1["run"]["payload"]);
    let (status, refused) = api
        .enqueue(&token, "keyed", json!({"job": "double", "key": "user-7"}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "pending_run_exists");
    assert_eq!(refused["error"]["run_id"], id.as_str());

    // Refused options name what is wrong and store nothing.
    for (bad, code) in [
        (
            json!({"job": "double", "key": "k", "debounce": {"key": "k", "period": "1s"}}),
            "invalid_options",
        ),
        (
            json!({"job": "double", "on_duplicate": "keep"}),
            "invalid_options",
        ),
        (
            json!({"job": "double", "key": "k", "on_duplicate": "sometimes"}),
            "invalid_json",
        ),
        (
            json!({"job": "double", "key": "k", "idempotency_key": "i"}),
            "invalid_options",
        ),
        (json!({"job": "double", "key": ""}), "invalid_options"),
        (
            json!({"job": "double", "debounce": {"key": "d", "period": "soon"}}),
            "invalid_options",
        ),
        (
            json!({"job": "double", "debounce": {"key": "d", "period": "1s", "max_wait": "10ms"}}),
            "invalid_options",
        ),
        (
            json!({"job": "double", "debounce": {"key": "d", "period": "1s"}, "delay": "1s"}),
            "invalid_options",
        ),
        (
            json!({"job": "double", "debounce": {"key": "d"}}),
            "invalid_json",
        ),
        (json!({"job": "double", "rate_key": ""}), "invalid_options"),
    ] {
        let (status, err) = api.enqueue(&token, "keyed", bad.clone()).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{bad}: {err}"
        );
    }
    let (_, listed) = api.get(&token, "/v1/runs?queue=keyed").await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "{listed}");

    // Debounce: each enqueue answers with the one run and pushes its start back.
    let body = json!({"job": "double", "payload": {"n": 1},
                      "debounce": {"key": "search", "period": "1h", "max_wait": "2h"}});
    let (status, first) = api.enqueue(&token, "debounce", body).await;
    assert_eq!(
        (status, first["outcome"].clone()),
        (201, json!("created")),
        "{first}"
    );
    let body = json!({"job": "double", "payload": {"n": 2},
                      "debounce": {"key": "search", "period": "1h", "max_wait": "2h"}});
    let (status, second) = api.enqueue(&token, "debounce", body).await;
    assert_eq!(
        (status, second["outcome"].clone()),
        (200, json!("debounced")),
        "{second}"
    );
    assert_eq!(run_id(&second["run"]), run_id(&first["run"]));
    assert_eq!(second["run"]["payload"], json!({"n": 2}));
    assert!(second["run"]["ready_at"].as_u64() >= first["run"]["ready_at"].as_u64());
    let view = api.run(&token, &run_id(&first["run"])).await;
    let kinds: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["created", "replaced"], "{view:#}");

    // The CLI: a keyed enqueue that keeps the pending run says so.
    let (code, out, err) = server.cli(
        &token,
        &[
            "enqueue",
            "keyed",
            "double",
            "--payload",
            r#"{"n": 5}"#,
            "--key",
            "user-7",
            "--on-duplicate",
            "keep",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), format!("kept: existing run {id} (queued)"));
    let (code, out, err) = server.cli(&token, &["runs", "show", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("key: 'user-7' (on duplicate: replace; replaced 49 times)"),
        "{out}"
    );

    let (_, text) = api.text("/metrics").await;
    assert_eq!(
        metric(&text, "stepwise_keyed_enqueues_total{outcome=\"kept\"}"),
        2,
        "the HTTP and the CLI keep, counted since the restart"
    );
    assert_eq!(
        metric(&text, "stepwise_keyed_enqueues_total{outcome=\"rejected\"}"),
        1
    );
    assert_eq!(
        metric(
            &text,
            "stepwise_keyed_enqueues_total{outcome=\"debounced\"}"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_rate_limit_holds_runs_back_and_the_run_view_says_why() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("limited").await;
    api.deploy(&token, guests::FLOWS).await;
    for (bad, why) in [
        (json!({"rate_limit": {"max": 0, "per": "1s"}}), "max"),
        (json!({"rate_limit": {"max": 5, "per": "2d"}}), "window"),
        (
            json!({"rate_limit": {"max": 5, "per": "often"}}),
            "rate_limit.per",
        ),
    ] {
        let (status, err) = api.put(&token, "/v1/queues/paced", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "invalid_options");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(why),
            "{err}"
        );
    }
    // Set with the CLI; a later change of the concurrency keeps the rate limit.
    let (code, out, err) = server.cli(&token, &["queue", "set", "paced", "--rate-limit", "2/1s"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("at most 2 per 1s starts"), "{out}");
    let (code, out, err) = server.cli(&token, &["queue", "set", "paced", "--concurrency", "4"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("concurrency 4, at most 2 per 1s starts"),
        "{out}"
    );
    let (_, queue) = api.get(&token, "/v1/queues/paced").await;
    assert_eq!(
        queue["rate_limit"],
        json!({"max": 2, "per_ms": 1000}),
        "{queue}"
    );

    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            api.enqueue_new(
                &token,
                "paced",
                json!({"job": "double", "payload": {"n": n}}),
            )
            .await,
        );
    }
    // While the later runs wait, their view says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_held = None;
    loop {
        let mut done = 0;
        for id in &ids {
            let view = api.run(&token, id).await;
            if view["status"] == "completed" {
                done += 1;
            } else if !view["held"].is_null() {
                seen_held.get_or_insert(view["held"].clone());
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = seen_held.expect("a run over the limit showed why it waited");
    assert_eq!(held["reason"], "rate_limit");
    assert_eq!(held["detail"], "queue 'paced' allows 2 per 1s");
    let mut starts = Vec::new();
    for id in &ids {
        let view = api.run(&token, id).await;
        for e in view["timeline"].as_array().unwrap() {
            if e["kind"] == "attempt_started" {
                starts.push(e["at"].as_u64().unwrap());
            }
        }
    }
    starts.sort_unstable();
    assert_eq!(starts.len(), 6);
    // On the real clock a start is stamped a few ms after it was admitted, so the window
    // is checked with 50 ms to spare.
    crate::util::assert_at_most_per_window(&starts, 2, 950);
    let (_, text) = api.text("/metrics").await;
    assert!(
        metric(&text, "stepwise_rate_limited_waits_total") >= 4,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_enqueue_rate_answers_429_with_retry_after_per_tenant() {
    let server = Server::start_with_config(
        "[tenant_defaults]\nenqueue_rate = { max = 3, per = \"1h\" }\n\n\
         [[tenants]]\nname = \"roomy\"\nenqueue_rate = { max = 5, per = \"1h\" }\n",
    );
    let api = server.api();
    let busy = api.admin_create_tenant("busy").await;
    let roomy = api.admin_create_tenant("roomy").await;
    for token in [&busy, &roomy] {
        api.deploy(token, guests::FLOWS).await;
    }
    let body = json!({"job": "double", "payload": {"n": 1}});
    for _ in 0..3 {
        api.enqueue_new(&busy, "q", body.clone()).await;
    }
    let response = api
        .post_response(&busy, "/v1/queues/q/jobs", body.clone())
        .await;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3_590..=3_600).contains(&retry_after), "{retry_after}");
    let err: Value = response.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limited");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 per 1h"),
        "{err}"
    );
    // Another tenant has its own window (and here its own limit).
    for _ in 0..5 {
        api.enqueue_new(&roomy, "q", body.clone()).await;
    }
    let (status, _) = api.enqueue(&roomy, "q", body.clone()).await;
    assert_eq!(status, 429);
    let (_, listed) = api.get(&busy, "/v1/runs").await;
    assert_eq!(
        listed["runs"].as_array().unwrap().len(),
        3,
        "a refused enqueue stores nothing"
    );
    let (_, text) = api.text("/metrics").await;
    assert_eq!(metric(&text, "stepwise_enqueues_refused_total"), 2);
}

/// 2026-01-01 00:00 UTC: where the test clock of these servers starts.
const START: u64 = 1_767_225_600_000;

/// Waits until the server has done what is due at `now` on `queue`: every run there is
/// completed, or waits for a later time (its start, or its turn under the rate limit).
async fn settled(api: &crate::serve_util::Api, token: &str, queue: &str, now: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = api
            .get(token, &format!("/v1/runs?queue={queue}&limit=1000"))
            .await;
        let runs = page["runs"].as_array().cloned().unwrap_or_default();
        let later = |r: &Value, field: &Value| {
            field.as_u64().is_some_and(|t| t > now) && r["status"] == "queued"
        };
        if runs.iter().all(|r| {
            r["status"] == "completed" || later(r, &r["held"]["until"]) || later(r, &r["ready_at"])
        }) {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} not settled at {now}: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When each attempt of run `id` started, from its timeline.
async fn starts_of(api: &crate::serve_util::Api, token: &str, id: &str) -> Vec<u64> {
    let view = api.run(token, id).await;
    view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "attempt_started")
        .map(|e| e["at"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_debounce_of_10_enqueues_100ms_apart_starts_once_1s_after_the_last() {
    let server = Server::start_with_clock("", START);
    let api = server.api();
    let token = api.admin_create_tenant("typing").await;
    api.deploy(&token, guests::FLOWS).await;
    let mut ids = HashSet::new();
    for n in 0..10u64 {
        let now = START + 100 * n;
        server.set_time(now);
        settled(&api, &token, "debounce", now).await;
        let body = json!({"job": "double", "payload": {"n": n},
                          "debounce": {"key": "search-box", "period": "1s"}});
        let (status, answer) = api.enqueue(&token, "debounce", body).await;
        assert_eq!(status, if n == 0 { 201 } else { 200 }, "{answer}");
        ids.insert(run_id(&answer["run"]));
    }
    assert_eq!(ids.len(), 1, "every enqueue answers with the one run");
    let id = ids.into_iter().next().unwrap();
    let last = START + 900;
    // Nothing starts before the quiet period is over.
    server.set_time(last + 999);
    let runs = settled(&api, &token, "debounce", last + 999).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "queued");
    assert_eq!(runs[0]["ready_at"], last + 1_000);
    server.set_time(last + 1_000);
    let done = api.wait_final(&token, &id, Duration::from_secs(30)).await;
    assert_eq!(done["output"], 18, "the 10th payload ran: {done:#}");
    assert_eq!(starts_of(&api, &token, &id).await, vec![last + 1_000]);
}

/// Moves the server's clock in 100 ms ticks from [`START`] until every run on `queue` has
/// completed, letting it settle at each tick.
async fn tick_until_done(server: &Server, api: &crate::serve_util::Api, token: &str, queue: &str) {
    let mut now = START;
    loop {
        server.set_time(now);
        let runs = settled(api, token, queue, now).await;
        if runs.iter().all(|r| r["status"] == "completed") {
            return;
        }
        assert!(
            now < START + 60_000,
            "{queue} still running after a minute of test time"
        );
        now += 100;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_rate_limit_of_5_per_second_spreads_50_starts() {
    let server = Server::start_with_clock("", START);
    let api = server.api();
    let token = api.admin_create_tenant("paced").await;
    api.deploy(&token, guests::FLOWS).await;
    let (status, queue) = api
        .put(
            &token,
            "/v1/queues/limited",
            json!({"rate_limit": {"max": 5, "per": "1s"}}),
        )
        .await;
    assert_eq!(status, 200, "{queue}");
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            api.enqueue_new(
                &token,
                "limited",
                json!({"job": "double", "payload": {"n": n}}),
            )
            .await,
        );
    }
    tick_until_done(&server, &api, &token, "limited").await;
    let mut starts = Vec::new();
    for id in &ids {
        starts.extend(starts_of(&api, &token, id).await);
    }
    starts.sort_unstable();
    assert_eq!(starts.len(), 50);
    crate::util::assert_at_most_per_window(&starts, 5, 1_000);
    assert_eq!(starts[4], START, "the first five start at once");
    let span = starts[49] - starts[0];
    assert!(
        (9_000..=10_000).contains(&span),
        "50 starts at 5 per second take 9-10 s, took {span} ms: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_per_key_rate_limit_keeps_keys_apart() {
    let server = Server::start_with_clock("", START);
    let api = server.api();
    let token = api.admin_create_tenant("keys").await;
    api.deploy(&token, guests::FLOWS).await;
    let (status, _) = api
        .put(
            &token,
            "/v1/queues/per-key",
            json!({"rate_limit": {"max": 1, "per": "1s"}}),
        )
        .await;
    assert_eq!(status, 200);
    let mut by_key: Vec<(&str, String)> = Vec::new();
    for n in 0..6 {
        let key = ["a", "b", "c"][n % 3];
        let body = json!({"job": "double", "payload": {"n": n}, "rate_key": key});
        by_key.push((key, api.enqueue_new(&token, "per-key", body).await));
    }
    tick_until_done(&server, &api, &token, "per-key").await;
    for key in ["a", "b", "c"] {
        let mut starts = Vec::new();
        for (_, id) in by_key.iter().filter(|(k, _)| *k == key) {
            starts.extend(starts_of(&api, &token, id).await);
        }
        starts.sort_unstable();
        assert_eq!(starts, vec![START, START + 1_000], "key {key}");
    }
}
