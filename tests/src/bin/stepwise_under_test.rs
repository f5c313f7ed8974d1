//! The `stepwise` command line, built inside the tests package so the end-to-end tests can run
//! (and kill) it as a real process.

// Many small allocations per job on several threads; mimalloc's per-thread heaps serve them
// faster than glibc malloc (measured with `stepwise bench`, see README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stepwise::cli::main()
}
