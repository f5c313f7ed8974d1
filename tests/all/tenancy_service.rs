//! Tenancy through a real `stepwise serve` process: a hostile tenant's attacks all end in
//! their own failure kinds while a second tenant deploys, enqueues and completes its work,
//! and the control paths answer; quotas refuse with `429 quota_exceeded` and store nothing.

use std::time::Duration;

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::*;

const FINAL: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_hostile_tenant_cannot_stop_another_tenant() {
    let server = Server::start();
    let api = server.api();
    let (a, b) = (
        api.admin_create_tenant("hostile").await,
        api.admin_create_tenant("healthy").await,
    );
    api.deploy(&a, guests::HOSTILE).await;
    api.deploy(&a, guests::RAW_PROTOCOL).await;
    for (path, says) in [
        (guests::DESCRIBE_NAN, "backoff.multiplier"),
        (guests::DESCRIBE_HUGE, "100003 jobs"),
    ] {
        let answer = api.upload(&a, path).await;
        let error = assert_error(&answer, 422, "invalid_module");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }

    // Spinners that hold A's slots for seconds, at the top priority, and the other attacks.
    let spin = |in_step: bool| {
        json!({"job": "spin", "payload": {"in_step": in_step}, "priority": i32::MAX,
               "fuel": 1_000_000_000_000_u64, "timeout_ms": 3_000})
    };
    let mut attacks: Vec<(String, &str)> = Vec::new();
    for i in 0..20 {
        let id = api.enqueue_new(&a, "attacks", spin(i % 2 == 0)).await;
        attacks.push((id, "timeout"));
    }
    for (job, payload, kind) in [
        ("bomb", json!({}), "memory_limit"),
        ("recurse", json!({}), "trap"),
        (
            "big-step-output",
            json!({"bytes": 2 << 20}),
            "limit_exceeded",
        ),
        ("big-output", json!({"bytes": 2 << 20}), "limit_exceeded"),
        ("big-error", json!({"bytes": 1 << 20}), "limit_exceeded"),
        (
            "long-step-name",
            json!({"bytes": 100_000}),
            "protocol_violation",
        ),
        ("sleep-forever", json!({}), "limit_exceeded"),
        ("exit", json!({"code": 7}), "trap"),
        ("panic", json!({}), "trap"),
        ("non-json-output", json!({}), "protocol_violation"),
        ("begin-twice", json!({}), "protocol_violation"),
    ] {
        let body = json!({"job": job, "payload": payload, "memory_bytes": 128 << 20,
                          "priority": i32::MAX});
        attacks.push((api.enqueue_new(&a, "attacks", body).await, kind));
    }

    // Meanwhile the healthy tenant deploys and runs its jobs, and the control paths answer.
    api.deploy(&b, guests::TESTBED).await;
    assert_eq!(api.text("/healthz").await.0, 200);
    let mut healthy = Vec::new();
    for i in 0..50 {
        let body = json!({"job": "echo", "payload": {"message": format!("m{i}"), "count": i}});
        healthy.push(api.enqueue_new(&b, "work", body).await);
    }
    for id in &healthy {
        let view = api.wait_final(&b, id, FINAL).await;
        assert_eq!(view["status"], "completed", "{view}");
    }

    for (id, kind) in &attacks {
        let view = api.wait_final(&a, id, FINAL).await;
        assert_eq!(view["status"], "failed", "{view}");
        assert_eq!(view["error"]["kind"], *kind, "{}", view["error"]);
        if *kind == "timeout" {
            // Ended by its own deadline check, even while it queued for its CPU turn.
            let message = view["error"]["message"].as_str().unwrap();
            assert_eq!(
                message, "attempt exceeded its wall-clock deadline",
                "{view}"
            );
        }
    }
    let (status, metrics) = api.text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("stepwise_memory_reserved_bytes 0"),
        "{metrics}"
    );
    // Fairness is measured too: what each tenant's attempts burned and held.
    for tenant in ["hostile", "healthy"] {
        let line = format!("stepwise_tenant_attempt_seconds_total{{tenant=\"{tenant}\"}}");
        assert!(metrics.contains(&line), "{metrics}");
    }
    let fuel = |tenant: &str| -> f64 {
        let prefix = format!("stepwise_tenant_fuel_total{{tenant=\"{tenant}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no fuel line for {tenant}: {metrics}"))
    };
    assert!(fuel("hostile") > fuel("healthy"), "{metrics}");
    let queue = api.get(&b, "/v1/queues/work").await.1;
    assert_eq!(
        (queue["depth"].clone(), queue["running"].clone()),
        (json!(0), json!(0))
    );
    let queue = api.get(&a, "/v1/queues/attacks").await.1;
    assert_eq!(queue["dead_letters"], json!(attacks.len()), "{queue}");
}

#[tokio::test]
async fn quotas_refuse_with_429_and_store_nothing() {
    let server = Server::start_with_config(
        "[[tenants]]\nname = \"small\"\nmax_waiting_runs = 3\nmax_modules = 1\n",
    );
    let api = server.api();
    let t = api.admin_create_tenant("small").await;
    api.deploy(&t, guests::TESTBED).await;
    // Deploying the same module again is not a new module.
    api.deploy(&t, guests::TESTBED).await;
    let answer = api.upload(&t, guests::HOSTILE).await;
    let error = assert_error(&answer, 429, "quota_exceeded");
    assert_eq!(error["quota"], "modules", "{error}");
    assert_eq!(
        api.get(&t, "/v1/modules").await.1["modules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Three sleeping runs fill the quota of runs not yet final.
    let sleeper = json!({"job": "sleeper", "payload": {"ms": 600_000}});
    for _ in 0..3 {
        api.enqueue_new(&t, "q", sleeper.clone()).await;
    }
    let answer = api.enqueue(&t, "q", sleeper.clone()).await;
    let error = assert_error(&answer, 429, "quota_exceeded");
    assert_eq!(error["quota"], "waiting runs", "{error}");
    assert_eq!(error["limit"], 3, "{error}");
    let runs: Value = api.get(&t, "/v1/runs").await.1;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 3, "{runs}");
}

#[tokio::test]
async fn the_stored_bytes_quota_refuses_new_runs_once_reached() {
    let server = Server::start_with_config("[tenant_defaults]\nmax_stored_bytes = 200000\n");
    let api = server.api();
    let t = api.admin_create_tenant("filler").await;
    api.deploy(&t, guests::TESTBED).await;
    let body = json!({"job": "echo", "payload": {"message": "f".repeat(30_000), "count": 1}});
    let mut created = 0;
    let refused = loop {
        let answer = api.enqueue(&t, "q", body.clone()).await;
        if answer.0 != 201 {
            break answer;
        }
        created += 1;
        let id = run_id(&answer.1["run"]);
        api.wait_final(&t, &id, FINAL).await;
        assert!(created < 20, "the quota never refused");
    };
    let error = assert_error(&refused, 429, "quota_exceeded");
    assert_eq!(error["quota"], "stored bytes", "{error}");
    // Each run stores its payload and its output (~60 KB): the quota stops the fourth.
    assert!(
        (3..=4).contains(&created),
        "{created} runs before the refusal"
    );
    let (_, metrics) = api.text("/metrics").await;
    assert!(
        metrics.contains("stepwise_tenant_stored_bytes{tenant=\"filler\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn run_views_and_lists_are_bounded_pages() {
    let server = Server::start();
    let api = server.api();
    let t = api.admin_create_tenant("pages").await;
    api.deploy(&t, guests::HOSTILE).await;
    api.deploy(&t, guests::TESTBED).await;
    let steps = api
        .enqueue_new(
            &t,
            "q",
            json!({"job": "many-steps", "payload": {"n": 1_200}}),
        )
        .await;
    let logs = api
        .enqueue_new(
            &t,
            "q",
            json!({"job": "log-flood", "payload": {"lines": 2_500}}),
        )
        .await;
    let message = "m".repeat(20_000);
    let big = api
        .enqueue_new(
            &t,
            "q",
            json!({"job": "echo", "payload": {"message": message, "count": 1}}),
        )
        .await;
    for id in [&steps, &logs, &big] {
        assert_eq!(api.wait_final(&t, id, FINAL).await["status"], "completed");
    }

    let view = api.run(&t, &steps).await;
    assert_eq!(view["steps"].as_array().unwrap().len(), 1_000);
    assert_eq!(view["more"]["steps"], 1_000, "{}", view["more"]);
    let (status, page) = api
        .get(&t, &format!("/v1/runs/{steps}/steps?from=1000&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 200);
    // The testbed's many-steps (deployed last, so it serves the job) names repeats `s#N`.
    assert_eq!(page["items"][0]["name"], "s#1001");
    assert_eq!(page["next"], Value::Null);

    let view = api.run(&t, &logs).await;
    assert_eq!(view["logs"].as_array().unwrap().len(), 1_000);
    let mut seen = 1_000;
    let mut from = view["more"]["logs"].as_u64().unwrap();
    loop {
        let path = format!("/v1/runs/{logs}/logs?from={from}&limit=1000");
        let page = api.get(&t, &path).await.1;
        seen += page["items"].as_array().unwrap().len();
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(seen, 2_500);
    let (status, _) = api.get(&t, &format!("/v1/runs/{logs}/logs?from=x")).await;
    assert_eq!(status, 400);

    // In a list, the 20 KB payload and output are summarized; the view has them whole.
    let list = api.get(&t, "/v1/runs?queue=q").await.1;
    let listed = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == big.as_str())
        .unwrap()
        .clone();
    assert!(
        listed["payload"]["truncated_bytes"].as_u64().unwrap() > 20_000,
        "{listed}"
    );
    assert!(
        listed["output"]["truncated_bytes"].as_u64().unwrap() > 20_000,
        "{listed}"
    );
    let whole = api.run(&t, &big).await;
    assert_eq!(whole["output"]["message"].as_str().unwrap().len(), 20_000);
    assert!(whole.get("more").is_none(), "{whole}");
}

#[tokio::test]
async fn memory_bombs_leave_no_resident_memory_behind() {
    let server = Server::start();
    let api = server.api();
    let t = api.admin_create_tenant("bomber").await;
    api.deploy(&t, guests::HOSTILE).await;
    api.deploy(&t, guests::TESTBED).await;
    let warm = api
        .enqueue_new(
            &t,
            "w",
            json!({"job": "echo", "payload": {"message": "x", "count": 1}}),
        )
        .await;
    api.wait_final(&t, &warm, FINAL).await;
    let baseline = server.rss_bytes();
    let mut bombs = Vec::new();
    for _ in 0..8 {
        let body = json!({"job": "bomb", "memory_bytes": 256 << 20});
        bombs.push(api.enqueue_new(&t, "bombs", body).await);
    }
    for id in &bombs {
        let view = api.wait_final(&t, id, FINAL).await;
        assert_eq!(view["error"]["kind"], "memory_limit", "{view}");
    }
    // Eight attempts touched 256 MiB each; what they held went back to the system.
    let after = server.rss_bytes();
    assert!(
        after < baseline + (128 << 20),
        "RSS {} MiB after the bombs, {} MiB before",
        after >> 20,
        baseline >> 20
    );
}
