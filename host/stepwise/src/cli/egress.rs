//! `stepwise egress`: show a tenant's egress rules and limits, allow or deny a host, and set
//! the per-attempt limits. `allow`, `deny` and `limits` read the current settings, change them
//! and write them back whole (`PUT /v1/egress`); the server checks and normalises them.

use anyhow::{Result, bail};
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use crate::api::responses::EgressView;
use crate::egress::{EgressRule, LimitsPatch, RuleSpec, TenantEgress};

/// Subcommands of `stepwise egress`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the tenant's rules, its limits and the operator's policy.
    Show(ShowArgs),
    /// Allow requests to a host: `api.stripe.com`, `*.example.com`, `http://127.0.0.1:8080`.
    Allow(AllowArgs),
    /// Remove the rule for a host (as written to `allow`).
    Deny(DenyArgs),
    /// Set per-attempt limits of outbound HTTP (within the operator's caps).
    Limits(LimitsArgs),
}

/// Arguments of `stepwise egress show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise egress allow`.
#[derive(Debug, clap::Args)]
pub struct AllowArgs {
    /// `[scheme://]host[:port]`; without a scheme HTTPS only, without a port the default one.
    pattern: String,
    /// Allow only this method (repeatable); default any method.
    #[arg(long = "method")]
    methods: Vec<String>,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise egress deny`.
#[derive(Debug, clap::Args)]
pub struct DenyArgs {
    /// The pattern of the rule to remove.
    pattern: String,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise egress limits`.
#[derive(Debug, clap::Args)]
pub struct LimitsArgs {
    /// Requests one attempt may send.
    #[arg(long)]
    max_requests: Option<u32>,
    /// Requests of one attempt in flight at once.
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Bytes of one request body.
    #[arg(long)]
    max_request_bytes: Option<u64>,
    /// Bytes of one response body.
    #[arg(long)]
    max_response_bytes: Option<u64>,
    /// Milliseconds to connect.
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Milliseconds from the request to the response's headers.
    #[arg(long)]
    first_byte_timeout_ms: Option<u64>,
    /// Go back to the defaults.
    #[arg(long, conflicts_with_all = ["max_requests", "max_concurrent", "max_request_bytes",
        "max_response_bytes", "connect_timeout_ms", "first_byte_timeout_ms"])]
    reset: bool,
    #[command(flatten)]
    client: ClientFlags,
}

fn summary(view: &EgressView) -> String {
    let mut out = if view.rules.is_empty() {
        "no egress rules: every outbound request is refused".to_owned()
    } else {
        let mut s = format!("{} egress rule(s):", view.rules.len());
        for r in &view.rules {
            s.push_str(&format!("\n  {}", r.pattern));
            if !r.methods.is_empty() {
                s.push_str(&format!(" ({})", r.methods.join(", ")));
            }
        }
        s
    };
    let l = &view.effective_limits;
    out.push_str(&format!(
        "\nper attempt: {} requests, {} at once, {} B request bodies, {} B responses, \
             connect {} ms, first byte {} ms",
        l.max_requests,
        l.max_concurrent,
        l.max_request_bytes,
        l.max_response_bytes,
        l.connect_timeout_ms,
        l.first_byte_timeout_ms
    ));
    if !view.operator.allow_private {
        out.push_str("\nprivate, loopback and link-local addresses are refused by the operator");
    }
    out
}

/// The normalised form of a pattern, to compare with stored rules.
fn normalised(pattern: &str, methods: Vec<String>) -> Result<RuleSpec> {
    let rule = EgressRule::parse(&RuleSpec {
        pattern: pattern.to_owned(),
        methods,
    })?;
    Ok(rule.spec())
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    let (flags, answer) = match command {
        Command::Show(args) => {
            let client = args.client.client()?;
            let answer: Value = client.get(&["v1", "egress"], &[]).await?;
            (args.client, answer)
        }
        Command::Allow(args) => {
            let client = args.client.client()?;
            let rule = normalised(&args.pattern, args.methods)?;
            let mut settings: TenantEgress = current(&client).await?;
            settings.rules.retain(|r| r.pattern != rule.pattern);
            settings.rules.push(rule);
            let answer: Value = client.put(&["v1", "egress"], &settings).await?;
            (args.client, answer)
        }
        Command::Deny(args) => {
            let client = args.client.client()?;
            let rule = normalised(&args.pattern, Vec::new())?;
            let mut settings: TenantEgress = current(&client).await?;
            let before = settings.rules.len();
            settings.rules.retain(|r| r.pattern != rule.pattern);
            if settings.rules.len() == before {
                bail!(
                    "no egress rule for {} (see `stepwise egress show`)",
                    rule.pattern
                );
            }
            let answer: Value = client.put(&["v1", "egress"], &settings).await?;
            (args.client, answer)
        }
        Command::Limits(args) => {
            let client = args.client.client()?;
            let mut settings: TenantEgress = current(&client).await?;
            settings.limits = if args.reset {
                None
            } else {
                let old = settings.limits.unwrap_or_default();
                Some(LimitsPatch {
                    max_requests: args.max_requests.or(old.max_requests),
                    max_concurrent: args.max_concurrent.or(old.max_concurrent),
                    max_request_bytes: args.max_request_bytes.or(old.max_request_bytes),
                    max_response_bytes: args.max_response_bytes.or(old.max_response_bytes),
                    connect_timeout_ms: args.connect_timeout_ms.or(old.connect_timeout_ms),
                    first_byte_timeout_ms: args.first_byte_timeout_ms.or(old.first_byte_timeout_ms),
                })
            };
            let answer: Value = client.put(&["v1", "egress"], &settings).await?;
            (args.client, answer)
        }
    };
    reply(answer, flags.json, |view: EgressView| summary(&view))
}

/// The stored settings, in the form `PUT` takes back.
async fn current(client: &super::client::Client) -> Result<TenantEgress> {
    let view: EgressView = client.get(&["v1", "egress"], &[]).await?;
    Ok(TenantEgress {
        rules: view.rules,
        limits: (view.limits != LimitsPatch::default()).then_some(view.limits),
    })
}
