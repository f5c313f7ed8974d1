//! Test guest (raw WIT bindings, no SDK; see `../../raw_describe.rs`): a `describe` asking for
//! `u64::MAX` fuel, time and memory and `u32::MAX` attempts. The host accepts it with every
//! value clamped to its caps.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

include!("../../raw_describe.rs");

fn specs() -> Vec<JobSpec> {
    vec![spec("max", None, Some(u64::MAX))]
}
