//! `stepwise enqueue`: create a run of a job on a queue of the server, optionally idempotent,
//! delayed, prioritised or with its own policy.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::Outcome;
use super::client::ClientFlags;
use super::common::{PolicyFlags, parse_duration, write_json, write_stdout};
use crate::api::responses::Enqueued;
use crate::api::{Enqueue, JobName};

/// Arguments of `stepwise enqueue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue to put the run on.
    queue: String,
    /// The job to run, as the deployed module names it.
    job: String,
    /// The job's payload, as JSON (default `{}`).
    #[arg(long)]
    payload: Option<String>,
    /// Makes the enqueue idempotent within the queue: the same key with the same payload
    /// returns the existing run.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Start no earlier than this long from now, e.g. `30s`.
    #[arg(long, value_parser = parse_duration, conflicts_with = "run_at")]
    delay: Option<Duration>,
    /// Start no earlier than this time (RFC 3339, e.g. `2026-11-23T10:00:00Z`).
    #[arg(long)]
    run_at: Option<String>,
    /// Among the tenant's runs due at the same time, higher priorities start first (default 0).
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Makes the run the one pending run of this queue and job with this key.
    #[arg(long, conflicts_with_all = ["idempotency_key", "debounce"])]
    key: Option<String>,
    /// With --key, what a pending run holding the key does: reject, keep or replace.
    #[arg(long, requires = "key", value_parser = ["reject", "keep", "replace"])]
    on_duplicate: Option<String>,
    /// Debounce under this key: the run starts once --debounce-period passed without another
    /// enqueue with it, with the latest payload.
    #[arg(long, requires = "debounce_period", conflicts_with_all = ["idempotency_key", "delay", "run_at"])]
    debounce: Option<String>,
    /// The debounce quiet period, e.g. `1s`.
    #[arg(long, requires = "debounce")]
    debounce_period: Option<String>,
    /// The longest a debounced run waits after its first enqueue, e.g. `1m`.
    #[arg(long, requires = "debounce")]
    max_wait: Option<String>,
    /// The lane of the queue's rate limit the run counts against.
    #[arg(long)]
    rate_key: Option<String>,
    #[command(flatten)]
    policy: PolicyFlags,
    #[command(flatten)]
    client: ClientFlags,
}

impl Args {
    /// The request body these flags describe. The payload is parsed here, so a typo is
    /// reported before anything is sent.
    fn request(&self) -> Result<Enqueue> {
        let payload = match &self.payload {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("--payload is not valid JSON: {text}"))?,
            None => Value::Object(Default::default()),
        };
        let job = JobName::parse(&self.job).map_err(|e| anyhow!("'{}': {e}", self.job))?;
        let overrides = self.policy.overrides();
        Ok(Enqueue {
            idempotency_key: self.idempotency_key.clone(),
            max_attempts: overrides.max_attempts,
            backoff: overrides.backoff,
            timeout_ms: overrides.timeout_ms,
            fuel: overrides.fuel,
            memory_bytes: overrides.memory_bytes,
            // Milliseconds, so the server's duration parser cannot read it differently.
            delay: self.delay.map(|d| format!("{}ms", d.as_millis())),
            run_at: self.run_at.clone(),
            priority: self.priority.unwrap_or(0),
            key: self.key.clone(),
            on_duplicate: self
                .on_duplicate
                .as_deref()
                .map(|o| serde_json::from_value(Value::String(o.to_owned())))
                .transpose()
                .context("--on-duplicate")?,
            debounce: self.debounce.as_ref().map(|key| crate::api::DebounceSpec {
                key: key.clone(),
                period: self.debounce_period.clone().unwrap_or_default(),
                max_wait: self.max_wait.clone(),
            }),
            rate_key: self.rate_key.clone(),
            ..Enqueue::new(job, payload)
        })
    }
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    let request = args.request()?;
    let client = args.client.client()?;
    let enqueued: Enqueued = client
        .post(&["v1", "queues", &args.queue, "jobs"], &request)
        .await?;
    let run = &enqueued.run;
    if args.client.json {
        write_json(&enqueued)?;
    } else if enqueued.deduplicated {
        write_stdout(&format!(
            "{}: existing run {} ({})",
            enqueued.outcome,
            run.id,
            run.status.as_str()
        ))?;
    } else {
        write_stdout(&format!("created {} ({})", run.id, run.status.as_str()))?;
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        let argv = ["enqueue", "emails", "send-welcome"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    fn body(flags: &[&str]) -> Value {
        let args = parse(flags).unwrap();
        serde_json::to_value(args.request().unwrap()).unwrap()
    }

    #[test]
    fn only_the_job_and_payload_are_sent_by_default() {
        assert_eq!(body(&[]), json!({"job": "send-welcome", "payload": {}}));
    }

    #[test]
    fn the_payload_is_sent_as_json_not_as_text() {
        assert_eq!(
            body(&["--payload", r#"{"user": 7, "tags": ["a"]}"#])["payload"],
            json!({"user": 7, "tags": ["a"]})
        );
        let err = parse(&["--payload", "{user: 7}"])
            .unwrap()
            .request()
            .unwrap_err();
        assert!(format!("{err:#}").contains("--payload is not valid JSON"));
    }

    #[test]
    fn every_option_lands_in_its_field() {
        let b = body(&[
            "--idempotency-key",
            "pay_123",
            "--max-attempts",
            "6",
            "--timeout",
            "30s",
            "--delay",
            "1m 30s",
            "--priority",
            "-5",
        ]);
        assert_eq!(
            b,
            json!({
                "job": "send-welcome",
                "payload": {},
                "idempotency_key": "pay_123",
                "max_attempts": 6,
                "timeout_ms": 30_000,
                "delay": "90000ms",
                "priority": -5,
            })
        );
        let b = body(&["--run-at", "2026-11-23T10:00:00Z"]);
        assert_eq!(b["run_at"], "2026-11-23T10:00:00Z");
    }

    #[test]
    fn backoff_fills_in_the_defaults() {
        assert_eq!(
            body(&["--backoff", "500ms"])["backoff"],
            json!({"initial_ms": 500, "max_ms": 3_600_000, "multiplier": 2.0, "jitter": 0.2})
        );
    }

    #[test]
    fn delay_and_run_at_are_exclusive() {
        let err = parse(&["--delay", "30s", "--run-at", "2026-11-23T10:00:00Z"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["--delay", "soon"]).is_err());
    }
}
