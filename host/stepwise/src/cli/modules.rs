//! `stepwise deploy` and `stepwise modules`: upload a handler component to the server and list
//! the tenant's deployed modules.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use super::render::table;
use crate::api::responses::{Deployed, ModuleList};
use crate::time_fmt;

/// Characters of a module hash shown in tables; `--json` has the whole hash.
const SHORT_HASH: usize = 12;

/// Arguments of `stepwise deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The handler component (`.wasm`, built for wasm32-wasip2).
    component: PathBuf,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise modules`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Runs `stepwise deploy`.
pub async fn deploy(args: DeployArgs) -> Result<Outcome> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let client = args.client.client()?;
    let answer: Value = client
        .post_bytes(&["v1", "modules"], "application/wasm", bytes)
        .await
        .with_context(|| format!("cannot deploy {}", args.component.display()))?;
    reply(answer, args.client.json, |deployed: Deployed| {
        let module = &deployed.module;
        let rows: Vec<Vec<String>> = module
            .jobs
            .iter()
            .map(|j| {
                vec![
                    j.name.clone(),
                    j.description.clone(),
                    j.policy
                        .max_attempts
                        .map_or_else(|| "default".to_owned(), |n| n.to_string()),
                ]
            })
            .collect();
        let mut text = format!(
            "deployed module {} ({} bytes)\n\n{}",
            module.hash,
            module.size,
            table(&["JOB", "DESCRIPTION", "MAX ATTEMPTS"], &rows)
        );
        for w in &deployed.warnings {
            text.push_str(&format!("\nwarning: {w}"));
        }
        text
    })
}

/// Runs `stepwise modules`.
pub async fn list(args: ListArgs) -> Result<Outcome> {
    let client = args.client.client()?;
    let answer: Value = client.get(&["v1", "modules"], &[]).await?;
    reply(answer, args.client.json, |list: ModuleList| {
        if list.modules.is_empty() {
            return "no modules deployed yet (stepwise deploy FILE.wasm)".to_owned();
        }
        let rows: Vec<Vec<String>> = list
            .modules
            .iter()
            .map(|m| {
                let jobs: Vec<&str> = m.jobs.iter().map(|j| j.name.as_str()).collect();
                vec![
                    m.hash.chars().take(SHORT_HASH).collect(),
                    m.size.to_string(),
                    jobs.join(", "),
                    time_fmt::rfc3339(m.deployed_at),
                ]
            })
            .collect();
        table(&["HASH", "SIZE", "JOBS", "DEPLOYED"], &rows)
    })
}
