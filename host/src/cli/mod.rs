//! The `stepwise` command line: argument parsing and one module per subcommand. `main.rs` only
//! calls [`main`].

mod common;
mod demo;
mod render;
mod resume;
mod retry;
mod run;
mod show;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stepwise: durable jobs whose handlers are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "stepwise", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one job to its end on the embedded store, honouring backoff delays and sleeps.
    Run(run::Args),
    /// Build the payments example and run it end to end, showing its run.
    Demo(demo::Args),
    /// Resume every unfinished run in a data dir (after a crash or a stop) and run them to the end.
    Resume(resume::Args),
    /// Show a run recorded in a data dir.
    Show(show::Args),
    /// Retry a failed (dead-lettered) run: the failed step gets a fresh attempt budget.
    Retry(retry::Args),
}

/// How a command ended, for the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for completed.
    Success,
    /// The command worked, but the run it reports did not complete.
    RunNotCompleted,
}

/// Parses the arguments, runs the command and maps the result to an exit code: 0 when the run
/// completed, 1 when it did not, 2 for bad input or any other error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    common::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::execute(args).await,
            Command::Demo(args) => demo::execute(args).await,
            Command::Resume(args) => resume::execute(args).await,
            Command::Show(args) => show::execute(args).await,
            Command::Retry(args) => retry::execute(args).await,
        }
    });
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::RunNotCompleted) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
