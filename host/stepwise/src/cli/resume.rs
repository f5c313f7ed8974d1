//! `stepwise resume`: pick up every unfinished run in a data dir — after a crash, a kill or a
//! stop — and execute them to their end. Completed steps are replayed, not run again.

use std::path::PathBuf;

use anyhow::Result;

use super::Outcome;
use super::common::{open_engine, print_run, write_stdout};

/// Arguments of `stepwise resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data dir holding the embedded store.
    #[arg(long)]
    data: PathBuf,
    /// Print the resumed runs as a JSON array instead of summaries.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let engine = open_engine(&args.data).await?;
    let waiting: Vec<String> = engine
        .store()
        .waiting()
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    tracing::info!(runs = waiting.len(), "resuming unfinished runs");
    engine.drain().await?;
    let mut views = Vec::new();
    for id in &waiting {
        views.push(engine.view(id).await?);
    }
    let all_completed = views
        .iter()
        .all(|v| v.run.status == crate::RunStatus::Completed);
    if args.json {
        let views: Vec<crate::api::RunView> = views
            .iter()
            .map(|v| crate::api::RunView::from_record(v.clone(), false))
            .collect();
        write_stdout(&serde_json::to_string_pretty(&views)?)?;
    } else if views.is_empty() {
        write_stdout("no unfinished runs")?;
    } else {
        for view in &views {
            print_run(view, false, None)?;
            write_stdout("")?;
        }
    }
    Ok(if all_completed {
        Outcome::Success
    } else {
        Outcome::RunNotCompleted
    })
}
