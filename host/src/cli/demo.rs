//! `stepwise demo`: builds the payments example for wasm32-wasip2 and runs its
//! `provision-after-payment` job end to end, with `provision` failing twice before it succeeds,
//! then shows the run: `charge` ran once, `provision` three times, and the timeline says why.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Outcome;
use super::common::{data_dir, open_engine, print_run};
use crate::NewRun;

/// Arguments of `stepwise demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data dir holding the embedded store (default: a fresh temporary dir, kept afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The payload to run with.
    #[arg(
        long,
        default_value = r#"{"payment_id":"pay_123","fail_provision_times":2}"#
    )]
    payload: String,
    /// Print the run record as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// The workspace this binary was built from.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf()
}

/// Builds `examples/payments` with plain cargo and returns the component's path.
fn build_payments() -> Result<PathBuf> {
    let ws = workspace();
    let target = ws.join("target").join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tracing::info!("building examples/payments for wasm32-wasip2");
    let status = std::process::Command::new(cargo)
        .current_dir(&ws)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "example-payments",
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("cannot run cargo to build the payments example")?;
    if !status.success() {
        bail!(
            "building the payments example failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
    }
    Ok(target
        .join("wasm32-wasip2")
        .join("release")
        .join("example_payments.wasm"))
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    let component = build_payments()?;
    let bytes = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let data = data_dir(args.data)?;
    let engine = open_engine(&data)?;
    let module = engine.deploy(&bytes).await?;
    let run = engine
        .enqueue(NewRun {
            queue: "payments".into(),
            ..NewRun::local(&module.hash, "provision-after-payment", args.payload)
        })
        .await?
        .run;
    let view = engine.run_to_end(&run.id).await?;
    print_run(&view, args.json, Some(&data))
}
