//! Runs that complete: the examples end to end, replay of completed steps, logs and captured
//! output.

use serde_json::json;
use stepwise::{RunStatus, StepStatus};
use stepwise_tests::guests;

use crate::util::*;

#[tokio::test]
async fn payments_example_retries_provision_and_charges_once() {
    let h = harness_with(http_config()).await;
    let base = fake_provider().await;
    h.allow_payments(&base).await;
    provider_control(&base, json!({ "fail_accounts_next": 2 })).await;
    let view = h
        .run(
            guests::PAYMENTS,
            "provision-after-payment",
            json!({"payment_id": "pay_123", "provider_url": base}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    assert_eq!(step_attempts(&view, "charge"), 1);
    assert_eq!(step_attempts(&view, "provision"), 3);
    assert_eq!(step_attempts(&view, "send-receipt"), 1);
    assert_eq!(view.run.attempts, 3);
    let names: Vec<&str> = view.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["charge", "provision", "send-receipt"]);
    assert!(view.steps.iter().all(|s| s.status == StepStatus::Completed));
    let charges = provider_get(&base, "/v1/charges").await;
    assert_eq!(charges["count"], 1, "charged once: {charges}");
    let charge = &charges["charges"][0];
    assert_eq!(charge["payment_id"], "pay_123");
    assert_eq!(charge["authorized"], format!("Bearer {PAYMENTS_KEY}"));
    let output = view.run.output.as_ref().expect("output");
    assert_eq!(output["charge_id"], charge["id"], "{output}");
    let seen = provider_get(&base, "/requests").await;
    assert_eq!(
        seen["/v1/accounts"], 3,
        "provision was tried three times: {seen}"
    );
    assert_eq!(seen["/v1/receipts"], 1, "{seen}");
    let calls = view.timeline.iter().filter(|t| t.http.is_some()).count();
    assert_eq!(calls, 5, "every call is on the timeline");
    assert!(!view.dead_lettered);
    let kinds = timeline_kinds(&view);
    assert_eq!(kinds.first().map(String::as_str), Some("created"));
    assert_eq!(kinds.last().map(String::as_str), Some("completed"));
    assert_eq!(kinds.iter().filter(|k| *k == "retry_scheduled").count(), 2);
}

#[tokio::test]
async fn digest_example_completes_for_a_known_user() {
    let h = harness().await;
    let view = h
        .run(
            guests::DIGEST,
            "weekly-digest",
            json!({"user_id": "u_1"}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:#?}");
    let names: Vec<&str> = view.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["load-user", "collect-items", "render", "send"]);
}

#[tokio::test]
async fn typed_payload_round_trips() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "echo",
            json!({"message": "hi", "count": 3}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed);
    assert_eq!(view.run.output, Some(json!({"message": "hi", "count": 3})));
}

#[tokio::test]
async fn repeated_step_names_get_stable_suffixes() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "many-steps",
            json!({"n": 3}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed);
    let names: Vec<&str> = view.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s", "s#2", "s#3"]);
}

#[tokio::test]
async fn guest_output_is_captured_and_bounded() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "chatty",
            json!({"lines": 100_000}),
            Default::default(),
        )
        .await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    let stdout: Vec<_> = view
        .logs
        .iter()
        .filter(|l| l.source == stepwise::model::LogSource::Stdout)
        .collect();
    assert!(!stdout.is_empty());
    assert!(
        stdout
            .iter()
            .any(|l| l.message.contains("more bytes of output dropped")),
        "the excess is reported, not silently lost"
    );
    let kept: usize = stdout.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 70 << 10, "capture is bounded, kept {kept} bytes");
    assert!(
        view.logs
            .iter()
            .any(|l| l.source == stepwise::model::LogSource::Stderr)
    );
}

#[tokio::test]
async fn many_concurrent_runs_complete_with_grouped_commits() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            h.enqueue(
                guests::TESTBED,
                "flaky",
                json!({"steps": ["a", "b", "c"], "fail": {}, "i": i}),
                Default::default(),
            )
            .await,
        );
    }
    let before = h.redb.stats();
    let batches_before = before.batches.load(std::sync::atomic::Ordering::Relaxed);
    let commits_before = before.commits.load(std::sync::atomic::Ordering::Relaxed);
    h.engine.drain().await.unwrap();
    for id in &ids {
        let view = h.engine.view(id).await.unwrap();
        assert_eq!(view.run.status, RunStatus::Completed);
        assert_eq!(executions(&view, "b"), 1);
    }
    let stats = h.redb.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed) - batches_before;
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed) - commits_before;
    // 40 runs × (the attempt's start + 3 step completions + 1 settlement) = 200 batches.
    assert_eq!(batches, 200);
    assert!(
        commits <= batches,
        "{commits} commits for {batches} batches"
    );
}
