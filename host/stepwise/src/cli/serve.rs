//! `stepwise serve`: run the HTTP API (see `docs/api.md`) over a data dir until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::Outcome;
use crate::Clock;
use crate::server::{ServeOptions, serve};

/// Arguments of `stepwise serve`; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data dir holding the embedded store (default `./stepwise-data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Store shared by several hosts: `postgres://user[:password]@host[:port]/database`
    /// (default: the embedded file in the data dir). Also `STEPWISE_STORE`.
    #[arg(long)]
    store: Option<String>,
    /// Address to listen on (default `127.0.0.1:7070`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs the command.
pub async fn execute(args: Args, clock: Option<Arc<dyn Clock>>) -> Result<Outcome> {
    serve(ServeOptions {
        data: args.data,
        store: args.store,
        listen: args.listen,
        config: args.config,
        clock,
    })
    .await?;
    Ok(Outcome::Success)
}
