//! Flows through a real `stepwise serve` process: the events routes and their errors, child
//! runs listed by parent and cancelled with it, the CLI's `events` commands, and `kill -9`
//! between an event's arrival and the waiting run's resume.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::Server;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sent_listed_and_refused_over_http() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("shop").await;
    let other = api.admin_create_tenant("rival").await;
    api.deploy(&token, guests::FLOWS).await;
    let id = api
        .enqueue_new(
            &token,
            "orders",
            json!({"job": "await-event",
                   "payload": {"event": "order.paid", "key": "o-9", "timeout_ms": 600_000}}),
        )
        .await;
    let run = api.until_status(&token, &id, "waiting").await;
    assert_eq!(run["wait"]["kind"], "event", "{run}");
    assert_eq!(run["wait"]["correlation_key"], "o-9", "{run}");

    // Another tenant's event does nothing here.
    let (status, body) = api
        .post(
            &other,
            "/v1/events",
            Some(json!({"name": "order.paid", "correlation_key": "o-9"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["woken"], 0);

    let event = json!({"name": "order.paid", "correlation_key": "o-9",
                       "payload": {"cents": 1200}, "id": "pay-1"});
    let (status, sent) = api.post(&token, "/v1/events", Some(event.clone())).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["woken"], 1);
    assert_eq!(sent["event"]["id"], "pay-1");
    let run = api.wait_final(&token, &id, PATIENCE).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["got"], json!({"cents": 1200}));
    let wait = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "wait")
        .unwrap();
    assert_eq!(wait["kind"], "event");
    assert_eq!(wait["wait"]["matched"]["id"], "pay-1", "{wait}");

    // The same id and body: the first event, nothing stored; another body: 409.
    let (status, again) = api.post(&token, "/v1/events", Some(event)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["repeated"], true);
    assert_eq!(
        again["event"]["resumed"],
        json!([{"run": id, "step": "wait"}])
    );
    let (status, err) = api
        .post(
            &token,
            "/v1/events",
            Some(json!({"name": "order.paid", "correlation_key": "o-9", "id": "pay-1"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "event_conflict");
    assert_eq!(err["error"]["event_id"], "pay-1");
    for (bad, code) in [
        (json!({"name": "no spaces"}), "invalid_event"),
        (json!({"name": "x", "correlation_key": ""}), "invalid_event"),
        (json!({"name": "x", "extra": 1}), "invalid_json"),
        (json!({"correlation_key": "k"}), "invalid_json"),
        (
            json!({"name": "x", "payload": "y".repeat(300 << 10)}),
            "payload_too_large",
        ),
    ] {
        let (status, err) = api.post(&token, "/v1/events", Some(bad.clone())).await;
        assert_eq!(err["error"]["code"], code, "{bad}: {status} {err}");
    }

    let (status, page) = api.get(&token, "/v1/events?limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["id"], "pay-1");
    assert_eq!(page["events"][0]["resumed"][0]["run"], id);
    assert!(page["next"].is_null(), "one event of this tenant: {page}");
    let seq = page["events"][0]["seq"].as_u64().unwrap();
    let (_, rest) = api.get(&token, &format!("/v1/events?before={seq}")).await;
    assert!(rest["events"].as_array().unwrap().is_empty(), "{rest}");
    let (status, err) = api.get(&token, "/v1/events?before=soon").await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("invalid_options"))
    );
    let (_, theirs) = api.get(&other, "/v1/events").await;
    assert_eq!(theirs["events"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_listed_by_parent_and_cancelled_with_it_unless_kept() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("fans").await;
    api.deploy(&token, guests::FLOWS).await;
    let parent = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "fan-out", "payload": {"job": "linger", "count": 3}}),
        )
        .await;
    let run = api.until_status(&token, &parent, "waiting").await;
    assert_eq!(run["wait"]["kind"], "children", "{run}");
    let (_, page) = api.get(&token, &format!("/v1/runs?parent={parent}")).await;
    let children = page["runs"].as_array().unwrap().clone();
    assert_eq!(children.len(), 3, "{page}");
    assert!(
        children
            .iter()
            .all(|c| c["parent"]["run"] == parent.as_str())
    );
    let view = api.run(&token, &parent).await;
    assert_eq!(view["children"].as_array().unwrap().len(), 3);

    let (status, cancelled) = api
        .post(
            &token,
            &format!("/v1/runs/{parent}/cancel"),
            Some(json!({"reason": "stop"})),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    for child in &children {
        let id = child["id"].as_str().unwrap();
        let run = api.run(&token, id).await;
        assert_eq!(run["status"], "cancelled", "{run}");
        let last = run["timeline"].as_array().unwrap().last().unwrap().clone();
        assert!(last["detail"].as_str().unwrap().contains(&parent), "{last}");
    }

    let keep = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "fan-out", "payload": {"job": "linger", "count": 1}}),
        )
        .await;
    api.until_status(&token, &keep, "waiting").await;
    let child = api.run(&token, &keep).await["children"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = api
        .post(
            &token,
            &format!("/v1/runs/{keep}/cancel"),
            Some(json!({"children": false})),
        )
        .await;
    assert_eq!(status, 200);
    let run = api.until_status(&token, &child, "waiting").await;
    assert_eq!(run["parent"]["run"], keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_and_lists_events_and_lists_children() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("cli").await;
    api.deploy(&token, guests::FLOWS).await;
    let id = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "await-event",
                            "payload": {"event": "ping", "key": "k1", "timeout_ms": 600_000}}),
        )
        .await;
    api.until_status(&token, &id, "waiting").await;
    let cli = |args: &[&str]| server.cli(&token, args);
    let (code, text, err) = cli(&[
        "events",
        "send",
        "ping",
        "--key",
        "k1",
        "--payload",
        "{\"n\":1}",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("1 waiting run(s) resumed"), "{text}");
    let run = api.wait_final(&token, &id, PATIENCE).await;
    assert_eq!(run["output"]["got"], json!({"n": 1}));
    let (code, text, _) = cli(&["events", "list", "--name", "ping"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("ping") && text.contains("k1"), "{text}");
    let (code, json_text, _) = cli(&["events", "list", "--json"]);
    assert_eq!(code, Some(0));
    let page: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(page["events"][0]["resumed"][0]["run"], id);
    let (code, _, err) = cli(&["events", "send", "bad name"]);
    assert_eq!(code, Some(2), "bad input exits 2: {err}");
    assert!(
        err.contains("invalid_event") || err.contains("event name"),
        "{err}"
    );
    let (code, _, err) = cli(&["events", "send", "ping", "--payload", "{not json"]);
    assert_eq!(code, Some(2), "{err}");

    let parent = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "fan-out", "payload": {"job": "double", "count": 2}}),
        )
        .await;
    api.wait_final(&token, &parent, PATIENCE).await;
    let (code, text, err) = cli(&["runs", "list", "--parent", &parent, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["runs"].as_array().unwrap().len(), 2, "{page}");
}

/// The event's arrival and the waiting run's wake-up are one durable write: a `kill -9`
/// after the send was acknowledged and before the run could resume (the tenant's only slot
/// is held by a spinning run) loses neither, and the run takes the event exactly once after
/// the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_between_an_events_arrival_and_the_resume_resumes_exactly_once() {
    let mut server = Server::start_with_config("[[tenants]]\nname = \"solo\"\nconcurrency = 1\n");
    let api = server.api();
    let token = api.admin_create_tenant("solo").await;
    api.deploy(&token, guests::FLOWS).await;
    api.deploy(&token, guests::TESTBED).await;
    let id = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "await-event",
                            "payload": {"event": "go", "key": "once", "timeout_ms": 600_000}}),
        )
        .await;
    api.until_status(&token, &id, "waiting").await;
    let spinner = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "spin", "payload": {}, "fuel": 1_000_000_000_000u64,
                            "timeout_ms": 300_000}),
        )
        .await;
    api.until_status(&token, &spinner, "running").await;
    let (status, sent) = api
        .post(
            &token,
            "/v1/events",
            Some(json!({"name": "go", "correlation_key": "once", "payload": 42})),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["woken"], 1);
    let before = api.run(&token, &id).await;
    assert_eq!(
        before["status"], "waiting",
        "the slot is held, so it has not resumed: {before}"
    );
    server.kill9();
    server.restart();
    let api = server.api();
    let (status, _) = api
        .post(&token, &format!("/v1/runs/{spinner}/cancel"), None)
        .await;
    assert!(status == 200 || status == 409, "{status}");
    let run = api.wait_final(&token, &id, PATIENCE).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["got"], 42);
    let received = run["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "event_received")
        .count();
    assert_eq!(received, 1, "{run:#}");
    let (_, page) = api.get(&token, "/v1/events").await;
    assert_eq!(
        page["events"][0]["resumed"],
        json!([{"run": id, "step": "wait"}])
    );
}

/// `kill -9` while a parent's step is starting its 200 children: after the restart the step
/// starts again and finds the children already created by their derived keys, so the parent
/// has exactly 200 children and joins all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_starting_children_leaves_exactly_one_child_each() {
    let mut server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("forks").await;
    api.deploy(&token, guests::FLOWS).await;
    let parent = api
        .enqueue_new(
            &token,
            "q",
            json!({"job": "fan-out",
                            "payload": {"job": "double", "count": 200, "first": true}}),
        )
        .await;
    // Kill once the step has started some children (or all of them, on a fast machine).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, page) = api
            .get(&token, &format!("/v1/runs?parent={parent}&limit=1"))
            .await;
        if !page["runs"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no child was started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    server.restart();
    let api = server.api();
    let run = api.wait_final(&token, &parent, PATIENCE).await;
    assert_eq!(run["status"], "completed", "{run}");
    let outputs = run["output"]["outputs"].as_array().unwrap();
    let expected: Vec<Value> = (0..200).map(|n| json!(n * 2)).collect();
    assert_eq!(outputs, &expected);
    let (_, page) = api
        .get(&token, &format!("/v1/runs?parent={parent}&limit=1000"))
        .await;
    assert_eq!(
        page["runs"].as_array().unwrap().len(),
        200,
        "exactly one child each"
    );
}
