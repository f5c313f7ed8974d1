//! The `stepwise` command line, built inside the tests package so the end-to-end tests can run
//! (and kill) it as a real process.

fn main() -> std::process::ExitCode {
    stepwise_host::cli::main()
}
