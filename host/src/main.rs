//! The `stepwise` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    stepwise_host::cli::main()
}
