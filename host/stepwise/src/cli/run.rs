//! `stepwise run`: deploy a component into a data dir, create one run and execute it to its end.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Outcome;
use super::common::{PolicyFlags, data_dir, open_engine, print_run};
use crate::NewRun;

/// Arguments of `stepwise run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The handler component (`.wasm`, built for wasm32-wasip2).
    component: PathBuf,
    /// The job to run, as the component names it.
    job: String,
    /// The job's payload, as JSON.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Data dir holding the embedded store (default: a fresh temporary dir, kept afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Queue the run belongs to.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Print the run record as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    policy: PolicyFlags,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let data = data_dir(args.data)?;
    let engine = open_engine(&data).await?;
    let module = engine
        .deploy(&bytes)
        .await
        .with_context(|| format!("cannot load {}", args.component.display()))?;
    let run = engine
        .enqueue(NewRun {
            queue: args.queue,
            overrides: args.policy.overrides(),
            ..NewRun::local(&module.hash, &args.job, args.payload)
        })
        .await?
        .run;
    let view = engine.run_to_end(&run.id).await?;
    print_run(&view, args.json, Some(&data))
}
