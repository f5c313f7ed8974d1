//! `stepwise demo`: builds the payments example for wasm32-wasip2 and runs its
//! `provision-after-payment` job end to end, with `provision` failing twice before it succeeds,
//! then shows the run: `charge` ran once, `provision` three times, and the timeline says why.

use std::path::PathBuf;

use anyhow::{Context, Result};

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

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    let component = crate::examples::build("example-payments")?;
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
