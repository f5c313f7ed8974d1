//! The `stepwise` binary: everything lives in the library's `cli` module.

// Many small allocations per job on several threads; mimalloc's per-thread heaps serve them
// faster than glibc malloc (measured with `stepwise bench`, see README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stepwise::cli::main()
}
