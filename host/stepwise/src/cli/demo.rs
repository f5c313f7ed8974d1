//! `stepwise demo`: builds the payments example for wasm32-wasip2 and runs its
//! `provision-after-payment` job end to end against the fake payment provider, started
//! in-process on loopback, whose accounts endpoint fails twice before it succeeds. The run
//! shows the real HTTP calls on its timeline: `charge` sent once, `provision` three times.
//!
//! The demo's engine allows loopback egress for its own tenant, and seals the demo's API key
//! with a key made for this process only (a demo data dir's secrets do not outlive it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::Outcome;
use super::common::{data_dir, open_engine_with, print_run};
use crate::NewRun;
use crate::egress::{EgressConfig, RuleSpec, TenantEgress};
use crate::engine::EngineConfig;
use crate::model::LOCAL_TENANT;
use crate::secrets::{KeyText, NewSecret, SecretKeys, SecretsConfig};

/// Arguments of `stepwise demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data dir holding the embedded store (default: a fresh temporary dir, kept afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The payload to run with (the fake provider's URL is added as `provider_url`).
    #[arg(long, default_value = r#"{"payment_id":"pay_123","amount":1200}"#)]
    payload: String,
    /// How many times the provider's accounts endpoint fails before it answers.
    #[arg(long, default_value_t = 2)]
    fail_provision_times: u32,
    /// Print the run record as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    let component = crate::examples::build("example-payments")?;
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let addr = crate::dev::provider::spawn("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the fake provider")?;
    let base = format!("http://{addr}");
    crate::dev::provider::set_control(
        &base,
        crate::dev::provider::Control {
            fail_accounts_next: args.fail_provision_times,
            ..Default::default()
        },
    )
    .await?;
    let data = data_dir(args.data)?;
    let engine = open_engine_with(
        &data,
        EngineConfig {
            egress: EgressConfig {
                allow_private: true,
                ..EgressConfig::default()
            },
            secrets: SecretsConfig {
                key: Some(KeyText(SecretKeys::generate())),
                previous_keys: Vec::new(),
            },
            ..EngineConfig::default()
        },
    )
    .await?;
    let rule = RuleSpec {
        pattern: base.clone(),
        methods: Vec::new(),
    };
    engine
        .set_egress(
            LOCAL_TENANT,
            TenantEgress {
                rules: vec![rule.clone()],
                limits: None,
            },
        )
        .await?;
    engine
        .set_secret(
            LOCAL_TENANT,
            "PAYMENTS_KEY",
            NewSecret {
                value: "sk_test_demo_key".into(),
                hosts: vec![rule],
                readable: false,
            },
        )
        .await?;
    let mut payload: Value =
        serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    if let Some(map) = payload.as_object_mut() {
        map.entry("provider_url").or_insert(Value::String(base));
    }
    let module = engine.deploy(&bytes).await?;
    let run = engine
        .enqueue(NewRun {
            queue: "payments".into(),
            ..NewRun::local(&module.hash, "provision-after-payment", payload.to_string())
        })
        .await?
        .run;
    let view = engine.run_to_end(&run.id).await?;
    print_run(&view, args.json, Some(&data))
}
