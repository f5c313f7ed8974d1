//! Bad input gets a clear error naming what was wrong, and leaves stored data intact.

use serde_json::json;
use stepwise::{EngineError, LoadError, NewRun, PolicyOverrides, RunStatus};
use stepwise_tests::guests;

use crate::util::*;

/// Runs and modules stored, to check that refused input stored nothing.
fn stored(h: &Harness) -> usize {
    h.redb.runs().unwrap().len()
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_refused() {
    let h = harness().await;
    let err = h.engine.deploy(b"#!/bin/sh\necho hi\n").await.unwrap_err();
    assert!(
        matches!(err, EngineError::Load(LoadError::NotWasm)),
        "{err}"
    );
    assert!(err.to_string().contains("not a WebAssembly file"));
}

#[tokio::test]
async fn a_core_module_is_refused_with_a_hint() {
    let h = harness().await;
    // The smallest valid core module: magic + version 1.
    let err = h.engine.deploy(b"\0asm\x01\0\0\0").await.unwrap_err();
    assert!(
        matches!(err, EngineError::Load(LoadError::CoreModule)),
        "{err}"
    );
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[tokio::test]
async fn a_truncated_component_is_refused() {
    let h = harness().await;
    let bytes = std::fs::read(guests::TESTBED).unwrap();
    let err = h
        .engine
        .deploy(&bytes[..bytes.len() / 2])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Load(LoadError::Invalid(_))),
        "{err}"
    );
}

#[tokio::test]
async fn a_component_for_another_world_is_refused_naming_the_difference() {
    let h = harness().await;
    let bytes = std::fs::read(guests::WRONG_WORLD).unwrap();
    let err = h.engine.deploy(&bytes).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, EngineError::Load(LoadError::WrongWorld(_))),
        "{text}"
    );
    assert!(text.contains("stepwise:jobs/handler@0.1.2"), "{text}");
    assert!(text.contains("missing exports: run, describe"), "{text}");
    assert!(text.contains("unexpected exports: hello"), "{text}");
}

#[tokio::test]
async fn unknown_job_bad_json_oversize_and_bad_policy_store_nothing() {
    let h = harness().await;
    let module = h.deploy(guests::TESTBED).await;
    h.run(
        guests::TESTBED,
        "echo",
        json!({"message": "x", "count": 1}),
        Default::default(),
    )
    .await;
    let before = stored(&h);
    let new = |job: &str, payload: String, overrides| NewRun {
        overrides,
        ..NewRun::local(&module, job, payload)
    };

    let err = h
        .engine
        .enqueue(new("nope", "{}".into(), Default::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownJob { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("unknown job 'nope'") && text.contains("echo"),
        "{text}"
    );

    let err = h
        .engine
        .enqueue(new("echo", "{not json".into(), Default::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidPayload(_)), "{err}");

    let huge = format!("\"{}\"", "x".repeat(2 << 20));
    let err = h
        .engine
        .enqueue(new("echo", huge, Default::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::PayloadTooLarge { .. }), "{err}");

    let err = h
        .engine
        .enqueue(new(
            "echo",
            "{}".into(),
            PolicyOverrides {
                max_attempts: Some(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");

    let err = h
        .engine
        .enqueue(NewRun {
            module: Some("0".repeat(64)),
            ..new("echo", "{}".into(), Default::default())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownModule(_)), "{err}");

    assert_eq!(stored(&h), before, "refused input stored nothing");
    assert!(matches!(
        h.engine.view("run_missing").await.unwrap_err(),
        EngineError::UnknownRun(_)
    ));
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_fails_the_run_clearly() {
    let h = harness().await;
    let view = h
        .run(
            guests::TESTBED,
            "echo",
            json!({"message": 5}),
            Default::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    assert_eq!(view.run.attempts, 1, "a bad payload is not retried");
    let error = view.run.error.unwrap();
    assert!(
        error.message.contains("invalid payload for job 'echo'"),
        "{}",
        error.message
    );
}
