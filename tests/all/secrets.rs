//! Secrets end to end: sealed in the real redb file, filled into headers only for the hosts
//! they are bound to, readable ones returned by `ctx.secret`, and every value masked in what a
//! run records. The fake provider on loopback plays the payment provider.

use std::sync::Arc;

use serde_json::json;
use stepwise::egress::{EgressConfig, RuleSpec};
use stepwise::secrets::{KeyText, NewSecret, SecretKeys, SecretsConfig};
use stepwise::{
    Engine, EngineConfig, ManualClock, PolicyOverrides, RunStatus, RunView, RuntimeConfig,
    SeededJitter,
};
use stepwise_tests::guests;

use crate::util::{Harness, START, compile_cache, harness_with};

const LOCAL: &str = "local";
const VALUE: &str = "sk_test_5fE2a9Qx81";

fn config(key: Option<&str>, previous: &[&str]) -> EngineConfig {
    EngineConfig {
        egress: EgressConfig {
            allow_private: true,
            ..EgressConfig::default()
        },
        secrets: SecretsConfig {
            key: key.map(|k| KeyText(k.to_owned())),
            previous_keys: previous.iter().map(|k| KeyText(k.to_string())).collect(),
        },
        ..EngineConfig::default()
    }
}

fn spec(pattern: &str) -> RuleSpec {
    RuleSpec {
        pattern: pattern.to_owned(),
        methods: vec![],
    }
}

fn secret(value: &str, hosts: &[&str], readable: bool) -> NewSecret {
    NewSecret {
        value: value.to_owned(),
        hosts: hosts.iter().map(|h| spec(h)).collect(),
        readable,
    }
}

/// A provider the local tenant may reach.
async fn allowed_provider(h: &Harness) -> String {
    let base = crate::util::fake_provider().await;
    h.allow(&base).await;
    base
}

async fn charge(h: &Harness, base: &str, auth_secret: &str) -> RunView {
    h.run(
        guests::HTTP_CLIENT,
        "charge",
        json!({ "base_url": base, "amount": 500, "auth_secret": auth_secret }),
        PolicyOverrides {
            max_attempts: Some(1),
            ..PolicyOverrides::default()
        },
    )
    .await
}

/// Every byte of the store file, to look for a value in clear.
fn store_bytes(h: &Harness) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(h._dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_bound_secret_reaches_its_host_and_appears_nowhere_else() {
    let key = SecretKeys::generate();
    let h = harness_with(config(Some(&key), &[])).await;
    let base = allowed_provider(&h).await;
    let info = h
        .engine
        .set_secret(LOCAL, "PAYMENTS_KEY", secret(VALUE, &[&base], false))
        .await
        .unwrap();
    assert_eq!(info.hosts[0].pattern, base);
    let view = charge(&h, &base, "PAYMENTS_KEY").await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    let charges = crate::util::provider_get(&base, "/v1/charges").await;
    assert_eq!(
        charges["charges"][0]["authorized"],
        json!(format!("Bearer {VALUE}")),
        "the provider got the value"
    );
    // The provider echoes the Authorization header into the charge, so the job's output
    // carries the value: the host masks it there too.
    let recorded = serde_json::to_string(&view).unwrap();
    assert!(
        !recorded.contains(VALUE),
        "the run view holds the value: {recorded}"
    );
    assert!(recorded.contains("[secret:PAYMENTS_KEY]"), "{recorded}");
    let listing = serde_json::to_string(&h.engine.list_secrets(LOCAL).await.unwrap()).unwrap();
    assert!(!listing.contains(VALUE));
    assert!(
        !contains(&store_bytes(&h), VALUE),
        "the store file holds the value in clear"
    );
}

#[tokio::test]
async fn a_bound_secret_sent_to_another_host_is_refused() {
    let key = SecretKeys::generate();
    let h = harness_with(config(Some(&key), &[])).await;
    let base = allowed_provider(&h).await;
    h.engine
        .set_secret(
            LOCAL,
            "PAYMENTS_KEY",
            secret(VALUE, &["api.stripe.com"], false),
        )
        .await
        .unwrap();
    let view = charge(&h, &base, "PAYMENTS_KEY").await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let call = view.timeline.iter().find_map(|t| t.http.clone()).unwrap();
    assert!(call.error.unwrap().contains("not bound"));
    let seen = crate::util::provider_get(&base, "/requests").await;
    assert_eq!(seen, json!({}), "nothing reached the provider");
    let unknown = charge(&h, &base, "NO_SUCH").await;
    let call = unknown
        .timeline
        .iter()
        .find_map(|t| t.http.clone())
        .unwrap();
    assert!(call.error.unwrap().contains("has not set"));
}

#[tokio::test]
async fn a_readable_secret_is_returned_and_masked_in_everything_recorded() {
    let key = SecretKeys::generate();
    let h = harness_with(config(Some(&key), &[])).await;
    h.engine
        .set_secret(LOCAL, "SIGNING", secret(VALUE, &[], true))
        .await
        .unwrap();
    h.engine
        .set_secret(
            LOCAL,
            "BOUND",
            secret("bound-value-1", &["api.stripe.com"], false),
        )
        .await
        .unwrap();
    let view = h
        .run(
            guests::HTTP_CLIENT,
            "reveal",
            json!("SIGNING"),
            PolicyOverrides::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let recorded = serde_json::to_string(&view).unwrap();
    assert!(!recorded.contains(VALUE), "{recorded}");
    for place in ["the value is", "stdout has", "stderr has"] {
        assert!(
            view.logs
                .iter()
                .any(|l| l.message == format!("{place} [secret:SIGNING]")),
            "{place}: {:?}",
            view.logs
        );
    }
    assert_eq!(view.steps[0].output, Some(json!("kept [secret:SIGNING]")));
    assert!(
        view.run
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("[secret:SIGNING]")
    );
    assert!(!contains(&store_bytes(&h), VALUE));

    let bound = h
        .run(
            guests::HTTP_CLIENT,
            "reveal",
            json!("BOUND"),
            PolicyOverrides::default(),
        )
        .await;
    assert!(bound.run.error.unwrap().message.contains("not readable"));
}

#[tokio::test]
async fn without_a_key_secrets_are_refused_clearly() {
    let h = harness_with(config(None, &[])).await;
    let e = h
        .engine
        .set_secret(LOCAL, "K", secret("value", &[], true))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no secrets key"), "{e}");
    let key = SecretKeys::generate();
    let h = harness_with(config(Some(&key), &[])).await;
    for (name, s, says) in [
        ("bad name", secret("v", &[], true), "letters"),
        ("K", secret("v", &[], false), "nothing could use it"),
        ("K", secret("v", &["*.com"], false), "top-level"),
    ] {
        let e = h.engine.set_secret(LOCAL, name, s).await.unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
    assert!(
        h.engine.list_secrets(LOCAL).await.unwrap().is_empty(),
        "nothing stored"
    );
    let e = h.engine.delete_secret(LOCAL, "K").await.unwrap_err();
    assert!(e.to_string().contains("unknown secret"));
}

async fn reopen(dir: &std::path::Path, config: EngineConfig) -> Engine {
    let mut config = config;
    config.runtime = RuntimeConfig {
        compile_cache: Some(compile_cache()),
        max_instances: 8,
        ..config.runtime
    };
    stepwise::open_engine(
        dir,
        stepwise::store::RedbOptions::default(),
        config,
        Arc::new(ManualClock::new(START)),
        Arc::new(SeededJitter::new(1)),
    )
    .await
    .expect("engine opens")
}

#[tokio::test]
async fn a_rotated_key_reseals_every_value_and_the_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (SecretKeys::generate(), SecretKeys::generate());
    {
        let engine = reopen(dir.path(), config(Some(&old), &[])).await;
        engine
            .set_secret(LOCAL, "SIGNING", secret(VALUE, &[], true))
            .await
            .unwrap();
    }
    {
        let engine = reopen(dir.path(), config(Some(&new), &[&old])).await;
        assert_eq!(engine.reseal_secrets().await.unwrap(), 1);
        assert_eq!(
            engine.reseal_secrets().await.unwrap(),
            0,
            "nothing left to re-seal"
        );
    }
    let engine = reopen(dir.path(), config(Some(&new), &[])).await;
    let view = {
        let bytes = std::fs::read(guests::HTTP_CLIENT).unwrap();
        let module = engine.deploy(&bytes).await.unwrap().hash.clone();
        let id = engine
            .enqueue(stepwise::NewRun::local(&module, "reveal", "\"SIGNING\""))
            .await
            .unwrap()
            .run
            .id;
        engine.run_to_end(&id).await.unwrap()
    };
    // Read with the new key alone: the guest got the value (masked in its log line).
    assert!(
        view.logs
            .iter()
            .any(|l| l.message == "the value is [secret:SIGNING]"),
        "{:?}",
        view.logs
    );
}
