//! `stepwise schedules`: create, list, show, pause, resume and remove the tenant's cron
//! schedules on a server. Schedules fire in `stepwise serve` only.

use anyhow::{Context, Result};
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render;
use crate::api::{CreateSchedule, Schedule, ScheduleDeleted, ScheduleList, UpdateSchedule};
use crate::time_fmt;

/// Subcommands of `stepwise schedules`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a schedule: each fire enqueues the job, once per fire time.
    Create(CreateArgs),
    /// List the tenant's schedules with their next fire time.
    List(ClientOnly),
    /// Show a schedule: its next 5 fire times and recent fires with their runs.
    Show(NameArgs),
    /// Stop a schedule firing.
    Pause(NameArgs),
    /// Fire a paused schedule again, from its next matching time on.
    Resume(NameArgs),
    /// Remove a schedule (its runs stay).
    Rm(NameArgs),
}

/// Arguments of `stepwise schedules create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The schedule's name.
    name: String,
    /// 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first).
    #[arg(long)]
    cron: String,
    /// An IANA time zone.
    #[arg(long = "tz", default_value = "UTC")]
    timezone: String,
    /// The job each fire enqueues.
    #[arg(long)]
    job: String,
    /// Its queue.
    #[arg(long)]
    queue: String,
    /// Its payload, as JSON.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// While the previous run has not ended: allow, skip or cancel_previous.
    #[arg(long, default_value = "allow")]
    overlap: String,
    /// Fires missed while the host was down: none, latest or all.
    #[arg(long = "catch-up", default_value = "none")]
    catch_up: String,
    /// Most missed fires `--catch-up all` enqueues (1–100).
    #[arg(long = "catch-up-limit", default_value_t = 10)]
    catch_up_limit: u32,
    /// Attempts per step of each run.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of the commands about one schedule.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The schedule's name.
    name: String,
    #[command(flatten)]
    client: ClientFlags,
}

/// Only the client flags.
#[derive(Debug, clap::Args)]
pub struct ClientOnly {
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::Create(args) => create(args).await,
        Command::List(args) => list(args).await,
        Command::Show(args) => show(args).await,
        Command::Pause(args) => set_paused(args, true).await,
        Command::Resume(args) => set_paused(args, false).await,
        Command::Rm(args) => remove(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<Outcome> {
    let payload: Value = serde_json::from_str(&args.payload)
        .with_context(|| format!("--payload is not JSON: {}", args.payload))?;
    let body = serde_json::json!({
        "name": args.name,
        "cron": args.cron,
        "timezone": args.timezone,
        "job": args.job,
        "queue": args.queue,
        "payload": payload,
        "overlap": args.overlap,
        "catch_up": args.catch_up,
        "catch_up_limit": args.catch_up_limit,
        "max_attempts": args.max_attempts,
        "paused": args.paused,
    });
    // Checked against the request type here too, so a bad flag is named before sending.
    let body: CreateSchedule =
        serde_json::from_value(body).map_err(|e| anyhow::anyhow!("bad schedule options: {e}"))?;
    let client = args.client.client()?;
    let answer: Value = client.post(&["v1", "schedules"], &body).await?;
    reply(answer, args.client.json, |s: Schedule| {
        format!("created schedule {}\n{}", s.name, describe(&s))
    })
}

async fn list(args: ClientOnly) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "schedules"], &[]).await?;
    reply(answer, args.client.json, |list: ScheduleList| {
        if list.schedules.is_empty() {
            return "no schedules".to_owned();
        }
        let rows: Vec<Vec<String>> = list
            .schedules
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.spec.cron.clone(),
                    s.spec.timezone.clone(),
                    s.spec.job.clone(),
                    if s.spec.paused { "paused" } else { "active" }.to_owned(),
                    s.next_fires
                        .first()
                        .map_or("-".to_owned(), |t| time_fmt::rfc3339(*t)),
                    s.fired.to_string(),
                ]
            })
            .collect();
        render::table(
            &["NAME", "CRON", "ZONE", "JOB", "STATE", "NEXT", "FIRED"],
            &rows,
        )
    })
}

async fn show(args: NameArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "schedules", &args.name], &[]).await?;
    reply(answer, args.client.json, |s: Schedule| describe(&s))
}

async fn set_paused(args: NameArgs, paused: bool) -> Result<Outcome> {
    let body = UpdateSchedule {
        paused: Some(paused),
        ..UpdateSchedule::default()
    };
    let client = args.client.client()?;
    let answer: Value = client.put(&["v1", "schedules", &args.name], &body).await?;
    reply(answer, args.client.json, |s: Schedule| {
        format!(
            "{} schedule {}\n{}",
            if paused { "paused" } else { "resumed" },
            s.name,
            describe(&s)
        )
    })
}

async fn remove(args: NameArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.delete(&["v1", "schedules", &args.name]).await?;
    reply(answer, args.client.json, |d: ScheduleDeleted| {
        format!("removed schedule {}", d.deleted)
    })
}

fn describe(s: &Schedule) -> String {
    let mut out = format!(
        "cron '{}' in {}: job {} on queue {} ({}; overlap {:?}, catch-up {:?})\n",
        s.spec.cron,
        s.spec.timezone,
        s.spec.job,
        s.spec.queue,
        if s.spec.paused { "paused" } else { "active" },
        s.spec.overlap,
        s.spec.catch_up,
    );
    out.push_str(&format!("fired {}, skipped {}\n", s.fired, s.skipped));
    if !s.next_fires.is_empty() {
        out.push_str("next fires:\n");
        for t in &s.next_fires {
            out.push_str(&format!("  {}\n", time_fmt::rfc3339(*t)));
        }
    }
    if !s.recent.is_empty() {
        let rows: Vec<Vec<String>> = s
            .recent
            .iter()
            .map(|f| {
                vec![
                    time_fmt::rfc3339(f.at),
                    format!("{:?}", f.outcome).to_lowercase(),
                    f.run
                        .clone()
                        .or_else(|| f.error.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&render::table(&["FIRE", "OUTCOME", "RUN"], &rows));
    }
    out
}
