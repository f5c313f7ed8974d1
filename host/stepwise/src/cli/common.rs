//! What the subcommands share: opening an engine on a data dir, policy and duration flags,
//! printing a run or a JSON document.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Outcome;
use crate::api::RunState;
use crate::model::RunView;
use crate::policy::{Backoff, PolicyOverrides};
use crate::{Engine, EngineConfig, RuntimeConfig, SeededJitter, SystemClock};

/// Logs go to stderr (stdout is for results); `STEPWISE_LOG` or `RUST_LOG` set the filter,
/// `default` applies otherwise.
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = std::env::var("STEPWISE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Where compiled components are cached between invocations: `STEPWISE_CACHE_DIR`, else
/// `$HOME/.cache/stepwise/wasmtime`, else none.
fn compile_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STEPWISE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    home.is_absolute()
        .then(|| home.join(".cache").join("stepwise").join("wasmtime"))
}

/// Opens the engine on `data` with the real clock and OS-seeded jitter.
pub async fn open_engine(data: &Path) -> Result<Engine> {
    open_engine_with(data, EngineConfig::default()).await
}

/// [`open_engine`] with `base`'s egress and secrets settings.
pub async fn open_engine_with(data: &Path, base: EngineConfig) -> Result<Engine> {
    let config = EngineConfig {
        runtime: RuntimeConfig {
            compile_cache: compile_cache(),
            ..RuntimeConfig::default()
        },
        // Local runs have one tenant: it may use every slot.
        tenants: crate::engine::TenantLimits {
            concurrency: Some(EngineConfig::default().concurrency),
            ..Default::default()
        },
        ..base
    };
    crate::open_engine(
        data,
        crate::store::RedbOptions::default(),
        config,
        Arc::new(SystemClock),
        Arc::new(SeededJitter::from_entropy()),
    )
    .await
    .with_context(|| format!("cannot open the data dir {}", data.display()))
}

/// The data dir to use: the one given, or a fresh one that is kept for inspection.
pub fn data_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => Ok(tempfile::Builder::new()
            .prefix("stepwise-run-")
            .tempdir()
            .context("cannot create a temporary data dir")?
            .keep()),
    }
}

/// Parses a duration flag such as `500ms`, `30s` or `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration like 500ms or 30s: {e}"))
}

/// Per-run policy overrides, shared by every command that creates a run.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyFlags {
    /// Attempts per step, counting the first (default: the job's, else 5).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// First backoff delay, e.g. `500ms`, doubling up to `--backoff-max` (default: the job's, else 1s).
    #[arg(long, value_parser = parse_duration)]
    pub backoff: Option<Duration>,
    /// Longest backoff delay (default 1h).
    #[arg(long, value_parser = parse_duration)]
    pub backoff_max: Option<Duration>,
    /// Fraction of each delay that is randomised, 0.0–1.0 (default 0.2).
    #[arg(long)]
    pub jitter: Option<f64>,
    /// Wall-clock limit of one attempt, e.g. `30s`.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Fuel (instructions, roughly) one attempt may use.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory one attempt may use, in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
}

impl PolicyFlags {
    /// The overrides these flags set.
    pub fn overrides(&self) -> PolicyOverrides {
        let backoff = (self.backoff.is_some()
            || self.backoff_max.is_some()
            || self.jitter.is_some())
        .then(|| {
            let d = Backoff::default();
            Backoff {
                initial_ms: self.backoff.map_or(d.initial_ms, millis),
                max_ms: self.backoff_max.map_or(d.max_ms, millis),
                multiplier: d.multiplier,
                jitter: self.jitter.unwrap_or(d.jitter),
            }
        });
        PolicyOverrides {
            max_attempts: self.max_attempts,
            backoff,
            fuel: self.fuel,
            timeout_ms: self.timeout.map(millis),
            memory_bytes: self.memory_mib.map(|m| m.saturating_mul(1 << 20)),
        }
    }
}

/// Whole milliseconds of `d`, saturating (the server then refuses what is out of range).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Prints a run (JSON or readable) and maps its status to the command's outcome.
pub fn print_run(view: &RunView, json: bool, data: Option<&Path>) -> Result<Outcome> {
    // A local run has no attempt executing once the command reports it.
    let view = crate::api::RunView::from_record(view.clone(), false);
    if json {
        write_json(&view)?;
    } else {
        let mut text = super::render::run(&view);
        if let Some(dir) = data {
            text.push_str(&format!("\ndata dir: {}\n", dir.display()));
        }
        write_stdout(text.trim_end())?;
    }
    Ok(if view.run.status == RunState::Completed {
        Outcome::Success
    } else {
        Outcome::RunNotCompleted
    })
}

/// Writes `value` to stdout as one JSON document.
pub fn write_json(value: &impl serde::Serialize) -> Result<()> {
    write_stdout(&serde_json::to_string_pretty(value)?)
}

/// Writes a result to stdout (the CLI's only use of stdout).
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}
