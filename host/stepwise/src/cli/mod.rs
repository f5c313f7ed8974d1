//! The `stepwise` command line: argument parsing and one module per subcommand (or group of
//! subcommands). `main.rs` only calls [`main`].
//!
//! `run`, `demo`, `resume`, `show` and `retry` work on a local data dir; `serve` runs the HTTP
//! API; the rest are clients of that API (`client` holds their HTTP plumbing).

mod bench;
mod client;
mod common;
mod demo;
mod dev;
mod dlq;
mod egress;
mod enqueue;
mod events;
mod follow;
mod hosts;
mod modules;
mod queue;
mod render;
mod resume;
mod retry;
mod run;
mod runs;
mod schedules;
mod secrets;
mod serve;
mod show;
mod tenant;

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
    /// Run one job to its end on the embedded store, honouring backoff delays and sleeps (no
    /// schedules fire here: they fire in `stepwise serve`).
    Run(run::Args),
    /// Build the payments example and run it end to end, showing its run.
    Demo(demo::Args),
    /// Resume every unfinished run in a data dir (after a crash or a stop) and run them to the end.
    Resume(resume::Args),
    /// Show a run recorded in a data dir.
    Show(show::Args),
    /// Retry a failed (dead-lettered) run: the failed step gets a fresh attempt budget.
    Retry(retry::Args),
    /// Run the HTTP API server over a data dir.
    Serve(serve::Args),
    /// Run a benchmark workload and print one JSON line (see README.md, "Benchmarks").
    Bench(bench::Args),
    /// Manage tenants on a server (admin token).
    #[command(subcommand)]
    Tenant(tenant::Command),
    /// List the hosts sharing a server's store, with their claims and leases (admin token).
    Hosts(hosts::Args),
    /// Upload a handler component to a server.
    Deploy(modules::DeployArgs),
    /// List the modules deployed on a server.
    Modules(modules::ListArgs),
    /// Create a run of a job on a server's queue.
    Enqueue(enqueue::Args),
    /// List, show and retry runs on a server.
    #[command(subcommand)]
    Runs(runs::Command),
    /// List, retry or purge a queue's dead letters on a server.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Create, list, show, pause, resume and remove cron schedules on a server.
    #[command(subcommand)]
    Schedules(schedules::Command),
    /// Send events to waiting runs and list the events received.
    #[command(subcommand)]
    Events(events::Command),
    /// List the tenant's queues with their depth, running attempts and dead letters.
    Queues(queue::ListArgs),
    /// Show a queue on a server or set its concurrency limit.
    #[command(subcommand)]
    Queue(queue::Command),
    /// Show or change which hosts the tenant's handlers may send HTTP requests to.
    #[command(subcommand)]
    Egress(egress::Command),
    /// Store, list and remove the tenant's secrets on a server; make a sealing key.
    #[command(subcommand)]
    Secrets(secrets::Command),
    /// Print the HTTP API's OpenAPI 3.1 document (also served at GET /v1/openapi.json).
    Openapi,
    /// Development tools (the fake payment provider).
    #[command(subcommand)]
    Dev(dev::Command),
}

/// How a command ended, for the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for completed.
    Success,
    /// The command worked, but the run it reports did not complete.
    RunNotCompleted,
}

/// Parses the arguments, runs the command and maps the result to an exit code: 0 when it
/// worked (and the run it reports completed), 1 when the run did not complete, 2 for bad
/// input, 3 not found, 4 a conflict or quota, 5 unauthorized, 6 the server unreachable or
/// failing (README, "Exit codes"). With `--json`, an error is printed as JSON on stdout.
pub fn main() -> ExitCode {
    main_with_clock(None)
}

/// [`main`], with `stepwise serve` running on `clock` when given instead of the system clock:
/// how the end-to-end tests drive a real server process through time.
pub fn main_with_clock(clock: Option<std::sync::Arc<dyn crate::Clock>>) -> ExitCode {
    let cli = Cli::parse();
    // A benchmark logs warnings only: a line per attempt would be part of what it measures.
    common::init_tracing(match cli.command {
        Command::Bench(_) => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    });
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
            Command::Serve(args) => serve::execute(args, clock).await,
            Command::Bench(args) => bench::execute(args).await,
            Command::Tenant(command) => tenant::execute(command).await,
            Command::Hosts(args) => hosts::execute(args).await,
            Command::Deploy(args) => modules::deploy(args).await,
            Command::Modules(args) => modules::list(args).await,
            Command::Enqueue(args) => enqueue::execute(args).await,
            Command::Runs(command) => runs::execute(command).await,
            Command::Dlq(command) => dlq::execute(command).await,
            Command::Events(command) => events::execute(command).await,
            Command::Schedules(command) => schedules::execute(command).await,
            Command::Queues(args) => queue::list(args).await,
            Command::Queue(command) => queue::execute(command).await,
            Command::Egress(command) => egress::execute(command).await,
            Command::Dev(command) => dev::execute(command).await,
            Command::Openapi => common::write_stdout(crate::server::openapi_document().trim_end())
                .map(|()| Outcome::Success),
            Command::Secrets(command) => secrets::execute(command).await,
        }
    });
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::RunNotCompleted) => ExitCode::from(1),
        Err(e) => {
            let failure = e.downcast_ref::<client::Failure>();
            if client::errors_as_json() {
                let json = match failure {
                    Some(f) => f.to_json(),
                    None => serde_json::json!({
                        "error": {"code": "invalid_input", "message": format!("{e:#}")}
                    }),
                };
                if common::write_json(&json).is_err() {
                    eprintln!("error: {e:#}");
                }
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(failure.map_or(client::Class::BadInput, |f| f.class) as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
