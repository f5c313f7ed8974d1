//! The `stepwise` command line, built inside the tests package so the end-to-end tests can run
//! (and kill) it as a real process.

// Many small allocations per job on several threads; mimalloc's per-thread heaps serve them
// faster than glibc malloc (measured with `stepwise bench`, see README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `STEPWISE_TEST_CLOCK_FILE` set, `serve` runs on the time in that file (see
/// `stepwise_tests::file_clock`); otherwise this is the plain CLI.
fn main() -> std::process::ExitCode {
    let clock = match std::env::var_os(stepwise_tests::file_clock::CLOCK_FILE_ENV) {
        Some(path) => match stepwise_tests::file_clock::FileClock::new(path) {
            Ok(clock) => Some(std::sync::Arc::new(clock) as std::sync::Arc<dyn stepwise::Clock>),
            Err(e) => {
                eprintln!("error: cannot read the test clock file: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => None,
    };
    stepwise::cli::main_with_clock(clock)
}
