//! `stepwise events`: send an event to the tenant's waiting runs, list the events received.

use anyhow::{Context, Result};
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render;
use crate::api::{EventPage, EventSent, SendEvent};
use crate::time_fmt;

/// Subcommands of `stepwise events`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send an event: every run waiting on its name and correlation key resumes, and a run
    /// that reaches such a wait later takes it then.
    Send(SendArgs),
    /// List the events received, newest first, with the runs each resumed.
    List(ListArgs),
}

/// Arguments of `stepwise events send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The event's name (`payment.succeeded`).
    name: String,
    /// The correlation key; a wait matches only events with exactly its key.
    #[arg(long)]
    key: Option<String>,
    /// The payload, as JSON (default `{}`).
    #[arg(long, default_value = "{}")]
    payload: String,
    /// An id that makes the send idempotent: sending it again with the same body answers the
    /// first event.
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise events list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only events with this name.
    #[arg(long)]
    name: Option<String>,
    /// Only events with this correlation key (with --name).
    #[arg(long, requires = "name")]
    key: Option<String>,
    /// Events per page, 1–1000 (default 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Only events numbered below this (the `next` of the previous page).
    #[arg(long)]
    before: Option<u64>,
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::Send(args) => send(args).await,
        Command::List(args) => list(args).await,
    }
}

async fn send(args: SendArgs) -> Result<Outcome> {
    let payload: Value = serde_json::from_str(&args.payload)
        .with_context(|| format!("--payload is not JSON: {}", args.payload))?;
    let body = SendEvent {
        name: args.name.clone(),
        correlation_key: args.key.clone(),
        payload,
        id: args.id.clone(),
    };
    let client = args.client.client()?;
    let answer: Value = client.post(&["v1", "events"], &body).await?;
    reply(answer, args.client.json, |sent: EventSent| {
        if sent.repeated {
            format!(
                "event {} was sent before (seq {}); nothing new stored",
                sent.event.id, sent.event.seq
            )
        } else {
            format!(
                "sent event {} (seq {}); {} waiting run(s) resumed",
                sent.event.id, sent.event.seq, sent.woken
            )
        }
    })
}

async fn list(args: ListArgs) -> Result<Outcome> {
    let query: Vec<(&str, String)> = [
        ("name", args.name.clone()),
        ("correlation_key", args.key.clone()),
        ("limit", args.limit.map(|n| n.to_string())),
        ("before", args.before.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "events"], &query).await?;
    reply(answer, args.client.json, |page: EventPage| {
        if page.events.is_empty() {
            return "no events".to_owned();
        }
        let rows: Vec<Vec<String>> = page
            .events
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    e.id.clone(),
                    e.name.clone(),
                    e.correlation_key.clone().unwrap_or_else(|| "-".into()),
                    time_fmt::rfc3339(e.received_at),
                    e.resumed.len().to_string(),
                ]
            })
            .collect();
        let mut text = render::table(&["SEQ", "ID", "NAME", "KEY", "RECEIVED", "RESUMED"], &rows);
        if let Some(next) = page.next {
            text.push_str(&format!("\nmore events follow: add --before {next}"));
        }
        text
    })
}
