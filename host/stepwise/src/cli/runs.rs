//! `stepwise runs`: list, inspect, follow and manually retry the tenant's runs on the server.
//! Inspections exit 0 whatever state the run is in; `show --follow` exits by how the run
//! ended.

use anyhow::Result;
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render;
use crate::api::run::RunPage;
use crate::api::{Run, RunView};
use crate::time_fmt;

/// Subcommands of `stepwise runs`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List runs, oldest first (newest first with --reverse), a page at a time.
    List(ListArgs),
    /// Show a run: its steps, timeline and the tail of its log; with --follow, its state and
    /// new timeline entries as they happen, until it ends.
    Show(ShowArgs),
    /// Retry a failed (dead-lettered) run: the failed step gets a fresh attempt budget.
    Retry(IdArgs),
    /// Cancel a run that has not ended (an attempt executing now is stopped), or every run
    /// matching --queue, --job and --status.
    Cancel(CancelArgs),
}

/// Arguments of `stepwise runs list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only runs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only runs of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only runs with this status (queued, running, retrying, sleeping, waiting, completed,
    /// failed, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// Only the child runs this run's steps started.
    #[arg(long)]
    parent: Option<String>,
    /// Only runs created at or after this RFC 3339 time (2026-12-07T10:00:00Z).
    #[arg(long)]
    created_from: Option<String>,
    /// Only runs created before this RFC 3339 time.
    #[arg(long)]
    created_before: Option<String>,
    /// Runs per page, 1–1000 (default 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Start after this run id (the `next` cursor of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Newest first.
    #[arg(long)]
    reverse: bool,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise runs show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The run's id (`run_…`).
    id: String,
    /// Stream the run's state and new timeline entries until it ends (exit 0 when it
    /// completed, 1 when it failed; with --json one JSON object per event and line).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise runs cancel`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["id", "queue", "job", "status"])))]
pub struct CancelArgs {
    /// The run's id (`run_…`); without it, every run matching the filters.
    #[arg(conflicts_with_all = ["queue", "job", "status"])]
    id: Option<String>,
    /// Only runs of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only runs of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only runs in this state (queued, retrying, sleeping, waiting, running).
    #[arg(long)]
    status: Option<String>,
    /// Why, for the runs' timelines.
    #[arg(long)]
    reason: Option<String>,
    /// Leave the run's child runs alone (by default those not yet ended are cancelled too).
    #[arg(long, requires = "id")]
    keep_children: bool,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of the commands about one run.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The run's id (`run_…`).
    id: String,
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::List(args) => list(args).await,
        Command::Show(args) => show(args).await,
        Command::Retry(args) => retry(args).await,
        Command::Cancel(args) => cancel(args).await,
    }
}

impl ListArgs {
    /// The query parameters of `GET /v1/runs` these flags set.
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("queue", self.queue.clone()),
            ("job", self.job.clone()),
            ("status", self.status.clone()),
            ("parent", self.parent.clone()),
            ("created_from", self.created_from.clone()),
            ("created_before", self.created_before.clone()),
            ("limit", self.limit.map(|n| n.to_string())),
            ("after", self.after.clone()),
            ("order", self.reverse.then(|| "newest".to_owned())),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

async fn list(args: ListArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "runs"], &args.query()).await?;
    reply(answer, args.client.json, |page: RunPage| {
        let mut text = if page.runs.is_empty() {
            "no runs".to_owned()
        } else {
            let rows: Vec<Vec<String>> = page
                .runs
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.job.clone(),
                        r.queue.clone(),
                        r.status.as_str().to_owned(),
                        r.attempts.to_string(),
                        time_fmt::rfc3339(r.created_at),
                    ]
                })
                .collect();
            render::table(
                &["ID", "JOB", "QUEUE", "STATUS", "ATTEMPTS", "CREATED"],
                &rows,
            )
        };
        if let Some(next) = &page.next {
            text.push_str(&format!("\nmore runs follow: add --after {next}"));
        }
        text
    })
}

async fn show(args: ShowArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    if args.follow {
        return super::follow::follow(&client, &args.id, args.client.json).await;
    }
    let answer: Value = client.get(&["v1", "runs", &args.id], &[]).await?;
    reply(answer, args.client.json, |view: RunView| render::run(&view))
}

async fn cancel(args: CancelArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    if let Some(id) = &args.id {
        let body = crate::api::CancelRun {
            reason: args.reason.clone(),
            children: args.keep_children.then_some(false),
        };
        let answer: Value = client.post(&["v1", "runs", id, "cancel"], &body).await?;
        return reply(answer, args.client.json, |run: Run| {
            format!("cancelled {} ({})", run.id, run.status.as_str())
        });
    }
    let body = crate::api::CancelMatching {
        queue: flag("queue", args.queue.as_deref())?,
        job: flag("job", args.job.as_deref())?,
        status: flag("status", args.status.as_deref())?,
        reason: args.reason.clone(),
    };
    let answer: Value = client.post(&["v1", "runs", "cancel"], &body).await?;
    reply(
        answer,
        args.client.json,
        |done: crate::api::responses::CancelledRuns| {
            let mut text = format!("cancelled {} runs", done.cancelled.len());
            for id in &done.cancelled {
                text.push_str(&format!("\n  {id}"));
            }
            if done.more {
                text.push_str("\nmore match: run the command again");
            }
            text
        },
    )
}

/// The value of flag `--what`, parsed, or an error naming the flag.
fn flag<T: std::str::FromStr>(what: &str, value: Option<&str>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    value
        .map(str::parse::<T>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

async fn retry(args: IdArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client
        .post_empty(&["v1", "runs", &args.id, "retry"])
        .await?;
    reply(answer, args.client.json, |run: Run| {
        format!("retried {} ({})", run.id, run.status.as_str())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn list_sends_only_the_filters_given() {
        let cli = Cli::try_parse_from([
            "runs",
            "list",
            "--status",
            "failed",
            "--limit",
            "10",
            "--after",
            "run_1",
            "--reverse",
        ])
        .unwrap();
        let Command::List(args) = cli.command else {
            panic!("not list")
        };
        assert_eq!(
            args.query(),
            vec![
                ("status", "failed".to_owned()),
                ("limit", "10".to_owned()),
                ("after", "run_1".to_owned()),
                ("order", "newest".to_owned()),
            ]
        );
        assert!(Cli::try_parse_from(["runs", "list", "--limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["runs", "list", "--limit", "1001"]).is_err());
    }
}
