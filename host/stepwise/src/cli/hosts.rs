//! `stepwise hosts`: the hosts sharing a server's store and their leases (admin token). On
//! the embedded store it is the one server itself.

use anyhow::{Context, Result};

use super::Outcome;
use super::client::{Client, DEFAULT_SERVER, non_empty};
use super::common::{write_json, write_stdout};
use super::render;
use crate::api::responses::Hosts;
use crate::time_fmt;

/// Arguments of `stepwise hosts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// URL of the Stepwise server (any of the hosts).
    #[arg(long, env = "STEPWISE_URL", default_value = DEFAULT_SERVER)]
    server: String,
    /// The server's admin token (else `STEPWISE_ADMIN_TOKEN`, else `STEPWISE_TOKEN`).
    #[arg(long, env = "STEPWISE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print exactly one JSON document: the API's answer.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let token = non_empty(args.token)
        .or_else(|| non_empty(std::env::var("STEPWISE_TOKEN").ok()))
        .context("no admin token: pass --token or set STEPWISE_ADMIN_TOKEN")?;
    let client = Client::new(&args.server, token)?;
    let hosts: Hosts = client.get(&["v1", "hosts"], &[]).await?;
    if args.json {
        write_json(&hosts)?;
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = hosts
        .hosts
        .iter()
        .map(|h| {
            let id = if h.id == hosts.this_host {
                format!("{} (answered)", h.id)
            } else {
                h.id.clone()
            };
            vec![
                id,
                h.claims.to_string(),
                time_fmt::rfc3339(h.started_at),
                time_fmt::rfc3339(h.last_seen),
                h.next_lease_expiry
                    .map_or_else(|| "-".to_owned(), time_fmt::rfc3339),
            ]
        })
        .collect();
    let out = render::table(
        &[
            "HOST",
            "CLAIMS",
            "STARTED",
            "LAST SEEN",
            "NEXT LEASE EXPIRY",
        ],
        &rows,
    );
    write_stdout(out.trim_end())?;
    Ok(Outcome::Success)
}
