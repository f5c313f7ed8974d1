//! `stepwise dlq`: a queue's dead letters — the runs that failed for good — listed, retried
//! all at once, or purged.

use anyhow::Result;
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render::{describe_error, table};
use crate::api::responses::{Purged, Retried};
use crate::api::run::RunPage;
use crate::time_fmt;

/// Subcommands of `stepwise dlq`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List a queue's dead-lettered runs.
    List(QueueArgs),
    /// Retry every dead-lettered run of a queue.
    Retry(QueueArgs),
    /// Delete every dead-lettered run of a queue.
    Purge(QueueArgs),
}

/// Arguments of the `dlq` subcommands.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::List(args) => list(args).await,
        Command::Retry(args) => retry(args).await,
        Command::Purge(args) => purge(args).await,
    }
}

fn path(queue: &str) -> [&str; 4] {
    ["v1", "queues", queue, "dead-letters"]
}

async fn list(args: QueueArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&path(&args.queue), &[]).await?;
    reply(answer, args.client.json, |letters: RunPage| {
        if letters.runs.is_empty() {
            return format!("no dead-lettered runs in queue {}", args.queue);
        }
        let rows: Vec<Vec<String>> = letters
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.job.clone(),
                    r.attempts.to_string(),
                    r.finished_at.map(time_fmt::rfc3339).unwrap_or_default(),
                    r.error.as_ref().map(describe_error).unwrap_or_default(),
                ]
            })
            .collect();
        table(&["ID", "JOB", "ATTEMPTS", "FAILED", "ERROR"], &rows)
    })
}

async fn retry(args: QueueArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client
        .post_empty(&["v1", "queues", &args.queue, "dead-letters", "retry"])
        .await?;
    reply(answer, args.client.json, |retried: Retried| {
        let mut text = format!(
            "retried {} dead-lettered {} of queue {}",
            retried.retried.len(),
            runs(retried.retried.len() as u64),
            args.queue
        );
        for id in &retried.retried {
            text.push_str(&format!("\n  {id}"));
        }
        text
    })
}

async fn purge(args: QueueArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.delete(&path(&args.queue)).await?;
    reply(answer, args.client.json, |purged: Purged| {
        format!(
            "purged {} dead-lettered {} from queue {}",
            purged.purged,
            runs(purged.purged),
            args.queue
        )
    })
}

fn runs(n: u64) -> &'static str {
    if n == 1 { "run" } else { "runs" }
}
