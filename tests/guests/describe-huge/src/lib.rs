//! Test guest (raw WIT bindings, no SDK; see `../../raw_describe.rs`): a `describe` listing
//! 100,003 jobs. The host must refuse the module at deploy instead of storing them all.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

include!("../../raw_describe.rs");

fn specs() -> Vec<JobSpec> {
    (0..100_003)
        .map(|i| spec(&format!("job-{i}"), None, None))
        .collect()
}
