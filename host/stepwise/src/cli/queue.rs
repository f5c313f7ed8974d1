//! `stepwise queue`: show a queue (its limit, depth and dead letters) and set its concurrency
//! limit.

use anyhow::Result;
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render::table;
use crate::api::PutQueue;
use crate::api::responses::{QueueList, QueueView};

/// Subcommands of `stepwise queue`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set how many of the queue's runs may execute at once.
    Set(SetArgs),
    /// Show the queue's limit, depth and dead letters.
    Show(ShowArgs),
}

/// Arguments of `stepwise queue set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    limit: Limit,
    #[command(flatten)]
    client: ClientFlags,
}

/// The new limit: a number, or none beyond the server's global limit.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Limit {
    /// Attempts of this queue's runs executing at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Remove the queue's own limit (only the server's global limit applies).
    #[arg(long)]
    no_limit: bool,
}

/// Arguments of `stepwise queue show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    client: ClientFlags,
}

fn summary(queue: &QueueView) -> String {
    let limit = match queue.concurrency {
        Some(n) => format!("concurrency {n}"),
        None => "no concurrency limit of its own".to_owned(),
    };
    format!(
        "queue {}: {limit}; {} waiting or executing ({} now); {} dead-lettered",
        queue.queue, queue.depth, queue.running, queue.dead_letters
    )
}

/// Arguments of `stepwise queues`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs `stepwise queues`: every queue of the tenant with its counts.
pub async fn list(args: ListArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "queues"], &[]).await?;
    reply(answer, args.client.json, |list: QueueList| {
        if list.queues.is_empty() {
            return "no queues yet".to_owned();
        }
        let rows: Vec<Vec<String>> = list
            .queues
            .iter()
            .map(|q| {
                vec![
                    q.queue.clone(),
                    q.runs.to_string(),
                    q.depth.to_string(),
                    q.running.to_string(),
                    q.dead_letters.to_string(),
                    q.concurrency
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                ]
            })
            .collect();
        table(
            &[
                "QUEUE",
                "RUNS",
                "DEPTH",
                "RUNNING",
                "DEAD LETTERS",
                "CONCURRENCY",
            ],
            &rows,
        )
    })
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    let (client_flags, answer) = match command {
        Command::Set(args) => {
            let client = args.client.client()?;
            // `--no-limit` sends `null`: only the global limit applies.
            let body = PutQueue {
                concurrency: args.limit.concurrency,
            };
            let answer: Value = client.put(&["v1", "queues", &args.queue], &body).await?;
            (args.client, answer)
        }
        Command::Show(args) => {
            let client = args.client.client()?;
            let answer: Value = client.get(&["v1", "queues", &args.queue], &[]).await?;
            (args.client, answer)
        }
    };
    reply(answer, client_flags.json, |queue: QueueView| {
        summary(&queue)
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
    fn set_needs_exactly_one_of_concurrency_and_no_limit() {
        assert!(Cli::try_parse_from(["queue", "set", "q"]).is_err());
        assert!(
            Cli::try_parse_from(["queue", "set", "q", "--concurrency", "2", "--no-limit"]).is_err()
        );
        let Command::Set(args) = Cli::try_parse_from(["queue", "set", "q", "--no-limit"])
            .unwrap()
            .command
        else {
            panic!("not set")
        };
        assert_eq!(args.limit.concurrency, None);
        assert!(args.limit.no_limit);
    }

    #[test]
    fn summaries_say_when_there_is_no_limit() {
        let q: QueueView = serde_json::from_str(
            r#"{"queue": "emails", "concurrency": null, "runs": 9, "depth": 3, "running": 2, "dead_letters": 1}"#,
        )
        .unwrap();
        assert_eq!(
            summary(&q),
            "queue emails: no concurrency limit of its own; 3 waiting or executing (2 now); \
             1 dead-lettered"
        );
    }
}
