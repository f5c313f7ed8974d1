//! `stepwise retry`: manually retry a failed run — optionally with a fixed component — and
//! execute it to its end. Completed steps are reused; the failed step gets a fresh budget.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Outcome;
use super::common::{open_engine, print_run};

/// Arguments of `stepwise retry`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The failed run's id.
    run: String,
    /// Data dir holding the embedded store.
    #[arg(long)]
    data: PathBuf,
    /// A fixed version of the component to run the retry with.
    #[arg(long)]
    component: Option<PathBuf>,
    /// Print the run record as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let engine = open_engine(&args.data).await?;
    let module = match &args.component {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(engine.deploy(&bytes).await?.hash.clone())
        }
        None => None,
    };
    engine.retry(&args.run, module.as_deref()).await?;
    let view = engine.run_to_end(&args.run).await?;
    print_run(&view, args.json, None)
}
