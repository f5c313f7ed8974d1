//! Outbound HTTP end to end: a real guest built with the SDK's client, the real host's egress
//! checks, and the fake provider on loopback. Time is the harness's manual clock; network
//! timeouts are real (a second at most).

use serde_json::{Value, json};
use stepwise::egress::{EgressConfig, LimitsPatch, RuleSpec, TenantEgress};
use stepwise::{EngineConfig, PolicyOverrides, RunStatus, RunView};
use stepwise_tests::guests;

use crate::util::{Harness, fake_provider, harness_with, provider_control, provider_get};

/// The tenant of `NewRun::local` runs.
const LOCAL: &str = "local";

async fn harness(allow_private: bool) -> Harness {
    harness_with(EngineConfig {
        egress: EgressConfig {
            allow_private,
            ..EgressConfig::default()
        },
        ..EngineConfig::default()
    })
    .await
}

fn rules(patterns: &[&str]) -> TenantEgress {
    TenantEgress {
        rules: patterns
            .iter()
            .map(|p| RuleSpec {
                pattern: p.to_string(),
                methods: vec![],
            })
            .collect(),
        limits: None,
    }
}

/// A fake provider that the local tenant's rules allow (plain HTTP on its loopback port).
async fn allowed_provider(h: &Harness) -> String {
    let base = fake_provider().await;
    h.allow(&base).await;
    base
}

async fn fetch(h: &Harness, payload: Value) -> RunView {
    h.run(
        guests::HTTP_CLIENT,
        "fetch",
        payload,
        PolicyOverrides::default(),
    )
    .await
}

fn http_entries(view: &RunView) -> Vec<&stepwise::model::TimelineEntry> {
    view.timeline.iter().filter(|t| t.http.is_some()).collect()
}

#[tokio::test]
async fn a_request_with_no_rule_is_denied_recorded_and_never_sent() {
    let h = harness(true).await;
    let base = fake_provider().await;
    let view = fetch(&h, json!({ "url": format!("{base}/bytes/10") })).await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let error = view.run.error.as_ref().unwrap();
    assert!(error.message.contains("refused"), "{error:?}");
    let calls = http_entries(&view);
    assert_eq!(calls.len(), 1);
    let call = calls[0].http.as_ref().unwrap();
    assert_eq!(
        (call.method.as_str(), call.host.as_str()),
        ("GET", "127.0.0.1")
    );
    assert!(
        call.error.as_ref().unwrap().contains("no egress rule"),
        "{call:?}"
    );
    assert_eq!(calls[0].step.as_deref(), Some("call"));
    assert!(
        view.logs
            .iter()
            .any(|l| l.message.contains("no egress rule")),
        "the refusal is logged"
    );
    let seen = provider_get(&base, "/requests").await;
    assert_eq!(seen, json!({}), "the provider saw nothing");
    assert_eq!(
        h.engine.egress().stats().snapshot(),
        vec![(LOCAL.to_owned(), "denied", 1)],
        "/metrics counts the refusal"
    );
}

#[tokio::test]
async fn an_allowed_request_reaches_the_provider_and_lands_on_the_timeline() {
    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    let view = fetch(&h, json!({ "url": format!("{base}/bytes/1234?secret=x") })).await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    assert_eq!(
        view.run.output,
        Some(json!({ "status": 200, "bytes": 1234 }))
    );
    let call = http_entries(&view)[0].http.clone().unwrap();
    assert_eq!(call.status, Some(200));
    assert_eq!(call.response_bytes, 1234);
    assert_eq!(call.path, "/bytes/1234", "no query string on the timeline");
}

#[tokio::test]
async fn loopback_is_refused_after_resolution_unless_the_operator_allows_private() {
    let h = harness(false).await;
    let base = fake_provider().await;
    let port = base.rsplit(':').next().unwrap();
    // The tenant allows `localhost`, a name: it resolves to loopback, which the host refuses.
    h.engine
        .set_egress(LOCAL, rules(&[&format!("http://localhost:{port}")]))
        .await
        .unwrap();
    let view = fetch(
        &h,
        json!({ "url": format!("http://localhost:{port}/bytes/1") }),
    )
    .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let call = http_entries(&view)[0].http.clone().unwrap();
    let why = call.error.unwrap();
    assert!(why.contains("loopback"), "{why}");
    let seen = provider_get(&base, "/requests").await;
    assert_eq!(seen, json!({}), "no connection was made");
}

#[tokio::test]
async fn the_response_cap_and_the_request_cap_end_the_call_with_a_clear_error() {
    let h = harness(true).await;
    let base = fake_provider().await;
    let mut settings = rules(&[&base]);
    settings.limits = Some(LimitsPatch {
        max_response_bytes: Some(1000),
        max_request_bytes: Some(1000),
        max_requests: Some(3),
        ..LimitsPatch::default()
    });
    h.engine.set_egress(LOCAL, settings).await.unwrap();

    let upload = json!({ "url": format!("{base}/v1/receipts"), "method": "POST",
                         "body": "x".repeat(5000) });
    let upload = fetch(&h, upload).await;
    assert_eq!(upload.run.status, RunStatus::Failed);
    let call = http_entries(&upload)[0].http.clone().unwrap();
    assert!(
        call.error
            .unwrap()
            .contains("request body over the 1000-byte limit")
    );

    let big = fetch(&h, json!({ "url": format!("{base}/bytes/5000") })).await;
    assert_eq!(big.run.status, RunStatus::Failed);
    assert!(
        big.run.error.as_ref().unwrap().message.contains("limit"),
        "{:?}",
        big.run.error
    );
    let call = http_entries(&big)[0].http.clone().unwrap();
    assert!(call.error.unwrap().contains("1000-byte limit"));

    let many = fetch(&h, json!({ "url": format!("{base}/bytes/1"), "times": 5 })).await;
    assert_eq!(many.run.status, RunStatus::Failed);
    let calls = http_entries(&many);
    assert_eq!(calls.len(), 4, "three sent, the first refusal recorded");
    let refused = calls[3].http.clone().unwrap();
    assert!(refused.error.unwrap().contains("max_requests"));
    let seen = provider_get(&base, "/requests").await;
    assert_eq!(
        seen["/bytes"], 4,
        "one big and three small requests arrived"
    );
}

#[tokio::test]
async fn a_lost_charge_response_is_retried_with_the_same_key_and_charged_once() {
    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    // The first charge is processed but its response comes only after the client gave up.
    provider_control(&base, json!({ "lose_next": 1, "lose_delay_ms": 5000 })).await;
    let view = h
        .run(
            guests::HTTP_CLIENT,
            "charge",
            json!({ "base_url": base, "amount": 1200 }),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    let charges = provider_get(&base, "/v1/charges").await;
    assert_eq!(charges["count"], 1, "exactly one charge: {charges}");
    let key = charges["charges"][0]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(key, format!("{}.charge", view.run.id));
    assert_eq!(
        view.run.output.as_ref().unwrap()["idempotency_key"],
        json!(key)
    );
    let calls = http_entries(&view);
    assert_eq!(calls.len(), 2, "the timed-out call and the retry");
    assert!(calls[0].http.as_ref().unwrap().error.is_some());
    assert_eq!(calls[1].http.as_ref().unwrap().status, Some(200));
}

#[tokio::test]
async fn bad_egress_settings_are_refused_and_nothing_is_stored() {
    let h = harness(false).await;
    h.engine
        .set_egress(LOCAL, rules(&["api.stripe.com"]))
        .await
        .unwrap();
    for bad in [
        rules(&["ftp://x.com"]),
        rules(&["*.com"]),
        rules(&["x.com/path"]),
    ] {
        let e = h.engine.set_egress(LOCAL, bad).await.unwrap_err();
        assert!(e.to_string().contains("invalid egress settings"), "{e}");
    }
    let mut over = rules(&[]);
    over.limits = Some(LimitsPatch {
        max_requests: Some(1_000_000),
        ..LimitsPatch::default()
    });
    let e = h.engine.set_egress(LOCAL, over).await.unwrap_err();
    assert!(e.to_string().contains("max_requests"), "{e}");
    let kept = h.engine.egress_settings(LOCAL).await.unwrap();
    assert_eq!(kept.rules[0].pattern, "https://api.stripe.com:443");
}

#[tokio::test]
async fn a_429_retry_after_in_seconds_or_as_a_date_sets_the_next_attempt() {
    // The harness clock starts at 2026-01-01T00:00:00Z; the guest's wall clock is that clock.
    for (retry_after, wait_ms) in [("2", 2_000), ("Thu, 01 Jan 2026 00:00:30 GMT", 30_000)] {
        let h = harness(true).await;
        let base = allowed_provider(&h).await;
        provider_control(
            &base,
            json!({ "throttle_next": 1, "retry_after": retry_after }),
        )
        .await;
        let view = h
            .run(
                guests::HTTP_CLIENT,
                "charge",
                json!({ "base_url": base, "amount": 1 }),
                PolicyOverrides::default(),
            )
            .await;
        assert_eq!(
            view.run.status,
            RunStatus::Completed,
            "{:?}",
            view.run.error
        );
        let delays: Vec<u64> = h.clock.waits().iter().map(|(f, t)| t - f).collect();
        assert_eq!(delays, vec![wait_ms], "Retry-After: {retry_after}");
        let statuses: Vec<Option<u16>> = http_entries(&view)
            .iter()
            .map(|t| t.http.as_ref().unwrap().status)
            .collect();
        assert_eq!(statuses, vec![Some(429), Some(200)]);
    }
}

async fn deliver(h: &Harness, base: &str) -> RunView {
    let payload = json!({ "url": format!("{base}/v1/webhooks"), "event": { "type": "paid" } });
    h.run(
        guests::WEBHOOK_DELIVERY,
        "deliver-webhook",
        payload,
        PolicyOverrides::default(),
    )
    .await
}

/// The webhook-delivery example against the fake provider: retried with its exponential
/// backoff through 5xx, waiting exactly as asked on 429, and final on 410.
#[tokio::test]
async fn the_webhook_example_backs_off_honours_retry_after_and_stops_on_410() {
    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    provider_control(&base, json!({ "webhook_status": 502, "webhook_times": 2 })).await;
    let view = deliver(&h, &base).await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    let waits: Vec<u64> = h.clock.waits().iter().map(|(f, t)| t - f).collect();
    assert_eq!(waits.len(), 2);
    for (wait, full) in waits.iter().zip([60_000u64, 120_000]) {
        // The job's backoff: one minute doubling, shortened by at most the 20 % jitter.
        assert!((full * 8 / 10..=full).contains(wait), "{waits:?}");
    }
    let ids: Vec<String> = view
        .logs
        .iter()
        .filter_map(|l| l.message.strip_prefix("delivering "))
        .map(|m| m.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "one Webhook-Id on every attempt: {ids:?}"
    );

    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    provider_control(
        &base,
        json!({ "webhook_status": 429, "webhook_times": 1, "retry_after": "120" }),
    )
    .await;
    let view = deliver(&h, &base).await;
    assert_eq!(view.run.status, RunStatus::Completed);
    let waits: Vec<u64> = h.clock.waits().iter().map(|(f, t)| t - f).collect();
    assert_eq!(waits, vec![120_000], "Retry-After wins over the backoff");

    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    provider_control(&base, json!({ "webhook_status": 410 })).await;
    let view = deliver(&h, &base).await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert!(
        view.run
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("410 Gone")
    );
    assert!(h.clock.waits().is_empty(), "410 is not retried");
}

/// Attempts that wait on a slow provider hold their own tenant's slots only: another tenant's
/// run completes while every one of them is still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_waiting_on_slow_http_use_only_their_tenants_slots() {
    let h = harness_with(EngineConfig {
        concurrency: 4,
        egress: EgressConfig {
            allow_private: true,
            ..EgressConfig::default()
        },
        ..EngineConfig::default()
    })
    .await;
    let base = fake_provider().await;
    h.engine.set_egress("slow", rules(&[&base])).await.unwrap();
    // Every charge is made, then answered only after 3 s.
    provider_control(&base, json!({ "lose_next": 10, "lose_delay_ms": 3_000 })).await;
    let http = h.deploy(guests::HTTP_CLIENT).await;
    let mut slow = Vec::new();
    for i in 0..10 {
        let run = h
            .engine
            .enqueue(stepwise::NewRun {
                tenant: "slow".into(),
                ..stepwise::NewRun::local(
                    &http,
                    "charge",
                    json!({ "base_url": base, "amount": i, "timeout_ms": 10_000 }).to_string(),
                )
            })
            .await
            .unwrap();
        slow.push(run.run.id);
    }
    let testbed = h.deploy(guests::TESTBED).await;
    let quick = h
        .engine
        .enqueue(stepwise::NewRun {
            tenant: "quick".into(),
            ..stepwise::NewRun::local(
                &testbed,
                "echo",
                json!({ "message": "hi", "count": 1 }).to_string(),
            )
        })
        .await
        .unwrap()
        .run
        .id;
    // The scheduler runs in the background; once the quick run is final, look at the slow
    // tenant's runs (run_to_end itself would wait for the attempts in flight to settle).
    let scheduler = {
        let (engine, quick) = (h.engine.clone(), quick.clone());
        tokio::spawn(async move { engine.run_to_end(&quick).await })
    };
    let store = h.redb.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !store.run(&quick).unwrap().unwrap().status.is_final() {
        assert!(
            std::time::Instant::now() < deadline,
            "the quick run never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.run(&quick).unwrap().unwrap().status,
        RunStatus::Completed
    );
    let unfinished = slow
        .iter()
        .filter(|id| !store.run(id).unwrap().unwrap().status.is_final())
        .count();
    assert_eq!(
        unfinished, 10,
        "the quick tenant finished while the slow one still waited"
    );
    let running = slow.iter().filter(|id| h.redb.is_claimed(id)).count();
    assert!(
        (1..=2).contains(&running),
        "the slow tenant holds at most its cap of 2 slots, held {running}"
    );
    scheduler.await.unwrap().unwrap();
}

/// A guest built with `wstd` (a standard wasip2 HTTP client with its own bindings) deploys and
/// sends through the same egress rules.
#[tokio::test]
async fn a_guest_using_wstd_sends_under_the_same_rules() {
    let h = harness(true).await;
    let base = fake_provider().await;
    let url = format!("{base}/v1/contacts");
    let denied = h
        .run(
            guests::WSTD_CLIENT,
            "get",
            json!(url),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(denied.run.status, RunStatus::Failed);
    assert!(
        denied
            .run
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("HttpRequestDenied"),
        "{:?}",
        denied.run.error
    );
    h.engine.set_egress(LOCAL, rules(&[&base])).await.unwrap();
    let view = h
        .run(
            guests::WSTD_CLIENT,
            "get",
            json!(url),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    assert_eq!(view.run.output.as_ref().unwrap()["status"], 200);
    assert!(
        view.run.output.as_ref().unwrap()["body"]
            .as_str()
            .unwrap()
            .contains("ada@example.com")
    );
    let call = http_entries(&view)[0].http.clone().unwrap();
    assert_eq!(call.path, "/v1/contacts");
}

/// A request never outlives its attempt: the deadline ends a call that waits on a slow
/// provider, and the call is on the timeline with the reason.
#[tokio::test]
async fn the_attempts_deadline_ends_a_call_in_flight() {
    let h = harness(true).await;
    let base = allowed_provider(&h).await;
    provider_control(&base, json!({ "lose_next": 1, "lose_delay_ms": 20_000 })).await;
    let started = std::time::Instant::now();
    let view = h
        .run(
            guests::HTTP_CLIENT,
            "charge",
            json!({ "base_url": base, "amount": 1, "timeout_ms": 30_000 }),
            PolicyOverrides {
                max_attempts: Some(1),
                timeout_ms: Some(500),
                ..PolicyOverrides::default()
            },
        )
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the call did not wait for the provider's answer"
    );
    assert_eq!(view.run.status, RunStatus::Failed);
    let call = http_entries(&view)[0].http.clone().unwrap();
    assert!(
        call.error.unwrap().contains("deadline"),
        "{:?}",
        view.timeline
    );
}

/// The per-attempt concurrency cap holds for a guest that sends at once: the provider holds
/// every request until three are in flight, and sees three from an attempt allowed four but
/// only two from one allowed two (the third waits for a slot, then for its hold).
#[tokio::test]
async fn concurrent_requests_are_capped_per_attempt() {
    for (cap, most) in [(4, 3), (2, 2)] {
        let h = harness(true).await;
        let base = fake_provider().await;
        provider_control(&base, json!({ "hold_ms": 1_500 })).await;
        let mut settings = rules(&[&base]);
        settings.limits = Some(LimitsPatch {
            max_concurrent: Some(cap),
            ..LimitsPatch::default()
        });
        h.engine.set_egress(LOCAL, settings).await.unwrap();
        let urls = vec![format!("{base}/hold/3"); 3];
        let view = h
            .run(
                guests::WSTD_CLIENT,
                "fan-out",
                json!(urls),
                PolicyOverrides::default(),
            )
            .await;
        assert_eq!(
            view.run.status,
            RunStatus::Completed,
            "{:?}",
            view.run.error
        );
        let seen = view.run.output.as_ref().unwrap().as_array().unwrap();
        let seen = seen
            .iter()
            .map(|got| {
                let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
                body["most_held"].as_u64().unwrap()
            })
            .max();
        assert_eq!(seen, Some(most), "max_concurrent {cap}");
        assert_eq!(http_entries(&view).len(), 3);
    }
}

/// A destination that never completes the TCP handshake: the connect timeout ends the call.
/// The listener never accepts and its accept queue is full, so the kernel drops new SYNs.
#[tokio::test]
async fn the_connect_timeout_ends_a_call_that_never_connects() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        let wait = std::time::Duration::from_millis(300);
        match tokio::time::timeout(wait, tokio::net::TcpStream::connect(addr)).await {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }

    let h = harness(true).await;
    let base = format!("http://{addr}");
    let mut settings = rules(&[&base]);
    settings.limits = Some(LimitsPatch {
        connect_timeout_ms: Some(300),
        ..LimitsPatch::default()
    });
    h.engine.set_egress(LOCAL, settings).await.unwrap();
    // Without the connect timeout the attempt's deadline would end the call, saying so.
    let view = h
        .run(
            guests::HTTP_CLIENT,
            "fetch",
            json!({ "url": format!("{base}/v1/contacts") }),
            PolicyOverrides {
                timeout_ms: Some(5_000),
                ..PolicyOverrides::default()
            },
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let call = http_entries(&view)[0].http.clone().unwrap();
    assert_eq!(call.status, None);
    assert!(
        call.error
            .as_deref()
            .unwrap_or("")
            .contains("timed out connecting"),
        "{call:?}"
    );
    drop(listener);
}

/// One tenant's rules never apply to another's runs: the same request that tenant "owner"
/// may send is refused for tenant "stranger", and the provider sees only the owner's.
#[tokio::test]
async fn another_tenants_rules_never_apply() {
    let h = harness(true).await;
    let base = fake_provider().await;
    h.engine.set_egress("owner", rules(&[&base])).await.unwrap();
    let http = h.deploy(guests::HTTP_CLIENT).await;
    let url = format!("{base}/bytes/3");
    let mut views = Vec::new();
    for tenant in ["owner", "stranger"] {
        let run = h
            .engine
            .enqueue(stepwise::NewRun {
                tenant: tenant.into(),
                ..stepwise::NewRun::local(&http, "fetch", json!({ "url": url }).to_string())
            })
            .await
            .unwrap()
            .run
            .id;
        views.push(h.engine.run_to_end(&run).await.unwrap());
    }
    assert_eq!(views[0].run.status, RunStatus::Completed);
    assert_eq!(views[1].run.status, RunStatus::Failed);
    let refused = http_entries(&views[1])[0].http.clone().unwrap();
    assert!(
        refused
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no egress rule of tenant 'stranger'"),
        "{refused:?}"
    );
    assert_eq!(provider_get(&base, "/requests").await["/bytes"], 1);
}
