//! `stepwise bench`: runs one benchmark workload in a fresh data dir and prints its JSON line.

use std::path::PathBuf;

use anyhow::Result;

use super::Outcome;
use super::common::write_stdout;
use crate::bench::{BenchOptions, WORKLOADS};
use crate::store::Durability;

/// Arguments of `stepwise bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workload: noop, steps3, retry10, enqueue_idem, replay1000, instantiate, sleepers or
    /// noisy.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(WORKLOADS))]
    workload: String,
    /// Jobs to run (replay1000: steps to replay; instantiate: instances). Default: 20000;
    /// sleepers 100000; replay1000 1000; instantiate 10000; noisy 2000 (tenant B's jobs per
    /// phase).
    #[arg(long)]
    jobs: Option<usize>,
    /// Attempts executing at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// `immediate` (fsync before every acknowledgement) or `eventual`.
    #[arg(long, default_value = "immediate", value_parser = parse_durability)]
    durability: Durability,
    /// Most memory the store may cache pages in, in MiB (the server's `store_cache_mb`).
    #[arg(long, default_value_t = crate::store::DEFAULT_CACHE_BYTES >> 20)]
    cache_mb: usize,
    /// Data dir; must not hold a store (default: a fresh temporary dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The bench-jobs component (default: built from examples/bench-jobs).
    #[arg(long)]
    component: Option<PathBuf>,
    /// Run the same job logic as a native Rust handler through the same engine (the baseline).
    #[arg(long)]
    native: bool,
    /// Run on an empty PostgreSQL database (`postgres://…`) instead of the embedded store
    /// (noop, steps3 and retry10).
    #[arg(long)]
    store: Option<String>,
    /// Hosts sharing the PostgreSQL database, each an engine with its own pool and scheduler
    /// in this process (the jobs are enqueued through the first).
    #[arg(long, default_value_t = 1)]
    hosts: usize,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "immediate" => Ok(Durability::Immediate),
        "eventual" => Ok(Durability::Eventual),
        other => Err(format!("'{other}' is not immediate or eventual")),
    }
}

/// Runs the command.
pub async fn execute(args: Args) -> Result<Outcome> {
    let jobs = args.jobs.unwrap_or(match args.workload.as_str() {
        "sleepers" => 100_000,
        "replay1000" => 1_000,
        "instantiate" => 10_000,
        "noisy" => 2_000,
        _ => 20_000,
    });
    let report = crate::bench::run(BenchOptions {
        workload: args.workload,
        jobs,
        concurrency: args.concurrency,
        durability: args.durability,
        cache_mb: args.cache_mb,
        data: args.data,
        component: args.component,
        native: args.native,
        store: args.store,
        hosts: args.hosts,
    })
    .await?;
    write_stdout(&serde_json::to_string(&report)?)?;
    Ok(Outcome::Success)
}
