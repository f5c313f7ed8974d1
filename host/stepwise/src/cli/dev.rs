//! `stepwise dev`: development tools. `stepwise dev provider` serves the fake payment
//! provider (see `crate::dev::provider`) until interrupted, printing the address it serves on.

use std::net::SocketAddr;

use anyhow::{Context, Result};

use super::Outcome;

/// Subcommands of `stepwise dev`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the fake payment provider (charges by idempotency key, injectable failures).
    Provider(ProviderArgs),
}

/// Arguments of `stepwise dev provider`.
#[derive(Debug, clap::Args)]
pub struct ProviderArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: SocketAddr,
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::Provider(args) => {
            let addr = crate::dev::provider::spawn(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            // The address goes to stderr: scripts and tests read it from there.
            eprintln!("fake provider listening on http://{addr}");
            tokio::signal::ctrl_c().await?;
            Ok(Outcome::Success)
        }
    }
}
