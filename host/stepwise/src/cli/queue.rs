//! `stepwise queue`: show a queue (its limits, depth and dead letters) and set its
//! concurrency and rate limits.

use anyhow::Result;
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render::table;
use crate::api::responses::{QueueList, QueueView};
use crate::api::{PutQueue, RateLimitSpec};

/// Subcommands of `stepwise queue`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set how many of the queue's runs may execute at once, and how many may start per
    /// window; a limit not named stays as it is.
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
    rate: Rate,
    #[command(flatten)]
    client: ClientFlags,
}

/// The new concurrency limit: a number, or none beyond the server's global limit.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
struct Limit {
    /// Attempts of this queue's runs executing at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Remove the queue's own limit (only the server's global limit applies).
    #[arg(long)]
    no_limit: bool,
}

/// The new rate limit.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
struct Rate {
    /// Starts per sliding window, as `N/WINDOW` (`5/1s`, `100/1m`), counted per `rate_key`.
    #[arg(long, value_parser = parse_rate)]
    rate_limit: Option<RateLimitSpec>,
    /// Remove the queue's rate limit.
    #[arg(long)]
    no_rate_limit: bool,
}

/// `5/1s` → at most 5 per 1 s.
fn parse_rate(text: &str) -> Result<RateLimitSpec, String> {
    let (max, per) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}' is not N/WINDOW, like 5/1s"))?;
    let max = max
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("'{max}' is not a count: {e}"))?;
    super::common::parse_duration(per.trim())?;
    Ok(RateLimitSpec {
        max,
        per: per.trim().to_owned(),
    })
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
    let mut limit = match queue.concurrency {
        Some(n) => format!("concurrency {n}"),
        None => "no concurrency limit of its own".to_owned(),
    };
    if let Some(rate) = &queue.rate_limit {
        limit.push_str(&format!(", at most {} starts", rate.describe()));
    }
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
            anyhow::ensure!(
                args.limit.concurrency.is_some()
                    || args.limit.no_limit
                    || args.rate.rate_limit.is_some()
                    || args.rate.no_rate_limit,
                "say what to set: --concurrency, --no-limit, --rate-limit or --no-rate-limit"
            );
            let client = args.client.client()?;
            // The PUT sets both limits: the one not named is sent as it is now.
            let now: QueueView = client.get(&["v1", "queues", &args.queue], &[]).await?;
            let concurrency = match (args.limit.concurrency, args.limit.no_limit) {
                (Some(n), _) => Some(n),
                (None, true) => None,
                (None, false) => now.concurrency,
            };
            let rate_limit = match (args.rate.rate_limit, args.rate.no_rate_limit) {
                (Some(spec), _) => Some(spec),
                (None, true) => None,
                (None, false) => now.rate_limit.map(|r| RateLimitSpec {
                    max: r.max,
                    per: format!("{}ms", r.per_ms),
                }),
            };
            let body = PutQueue {
                concurrency,
                rate_limit,
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
    fn rates_are_a_count_over_a_window() {
        assert_eq!(
            parse_rate("5/1s").unwrap(),
            RateLimitSpec {
                max: 5,
                per: "1s".into()
            }
        );
        for bad in ["5", "x/1s", "5/soon", "-1/1s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(
            Cli::try_parse_from([
                "queue",
                "set",
                "q",
                "--rate-limit",
                "5/1s",
                "--no-rate-limit"
            ])
            .is_err()
        );
    }

    #[test]
    fn set_takes_at_most_one_of_concurrency_and_no_limit() {
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
