//! `stepwise tenant`: manage tenants with the admin token. A tenant's token is printed once,
//! when the tenant is created; the server keeps only its hash.

use crate::api::responses::TenantCreated;
use crate::api::{CreateTenant, TenantName};
use anyhow::{Context, Result};

use super::Outcome;
use super::client::{Client, DEFAULT_SERVER, non_empty};
use super::common::{write_json, write_stdout};

/// Subcommands of `stepwise tenant`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a tenant and print its token (shown only this once).
    Create(CreateArgs),
}

/// Arguments of `stepwise tenant create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The tenant's name.
    name: String,
    /// URL of the Stepwise server.
    #[arg(long, env = "STEPWISE_URL", default_value = DEFAULT_SERVER)]
    server: String,
    /// The server's admin token (else `STEPWISE_ADMIN_TOKEN`, else `STEPWISE_TOKEN`).
    #[arg(long, env = "STEPWISE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print exactly one JSON document: `{"tenant": ..., "token": ...}`.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::Create(args) => create(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<Outcome> {
    super::client::json_errors(args.json);
    let token = non_empty(args.token)
        .or_else(|| non_empty(std::env::var("STEPWISE_TOKEN").ok()))
        .context("no admin token: pass --token or set STEPWISE_ADMIN_TOKEN")?;
    let client = Client::new(&args.server, token)?;
    let name =
        TenantName::parse(&args.name).map_err(|e| anyhow::anyhow!("'{}': {e}", args.name))?;
    let created: TenantCreated = client
        .post(&["v1", "tenants"], &CreateTenant { name })
        .await?;
    if args.json {
        write_json(&created)?;
    } else {
        write_stdout(&format!(
            "created tenant {}; its token, shown only this once, is {}\n\
             use it with --token or: export STEPWISE_TOKEN={}",
            created.tenant, created.token, created.token
        ))?;
    }
    Ok(Outcome::Success)
}
