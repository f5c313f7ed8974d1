//! `stepwise show`: print a run recorded in a data dir.

use std::path::PathBuf;

use anyhow::Result;

use super::Outcome;
use super::common::{open_engine, print_run};

/// Arguments of `stepwise show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's id.
    run: String,
    /// Data dir holding the embedded store.
    #[arg(long)]
    data: PathBuf,
    /// Print the run record as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let engine = open_engine(&args.data).await?;
    let view = engine.view(&args.run).await?;
    print_run(&view, args.json, None)
}
