//! `stepwise queue`: show a queue (its limit, depth and dead letters) and set its concurrency
//! limit.

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Outcome;
use super::client::{ClientFlags, reply};

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

/// A queue, as the server describes it.
#[derive(Debug, Deserialize)]
struct Queue {
    queue: String,
    #[serde(default)]
    concurrency: Option<u32>,
    depth: u64,
    dead_letters: u64,
}

impl Queue {
    fn summary(&self) -> String {
        let limit = match self.concurrency {
            Some(n) => format!("concurrency {n}"),
            None => "no concurrency limit of its own".to_owned(),
        };
        format!(
            "queue {}: {limit}; {} waiting or executing; {} dead-lettered",
            self.queue, self.depth, self.dead_letters
        )
    }
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    let (client_flags, answer) = match command {
        Command::Set(args) => {
            let client = args.client.client()?;
            // `--no-limit` sends `null`: only the global limit applies.
            let body = json!({ "concurrency": args.limit.concurrency });
            let answer: Value = client.put(&["v1", "queues", &args.queue], &body).await?;
            (args.client, answer)
        }
        Command::Show(args) => {
            let client = args.client.client()?;
            let answer: Value = client.get(&["v1", "queues", &args.queue], &[]).await?;
            (args.client, answer)
        }
    };
    reply(answer, client_flags.json, |queue: Queue| queue.summary())
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
        let q: Queue = serde_json::from_str(
            r#"{"queue": "emails", "concurrency": null, "depth": 3, "dead_letters": 1}"#,
        )
        .unwrap();
        assert_eq!(
            q.summary(),
            "queue emails: no concurrency limit of its own; 3 waiting or executing; 1 dead-lettered"
        );
    }
}
