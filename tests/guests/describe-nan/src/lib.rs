//! Test guest (raw WIT bindings, no SDK; see `../../raw_describe.rs`): a `describe` listing a
//! job whose backoff multiplier is NaN. The host must refuse the module at deploy, naming the
//! job and the field.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

include!("../../raw_describe.rs");

fn specs() -> Vec<JobSpec> {
    vec![spec(
        "nan",
        Some(Backoff {
            initial_ms: 10,
            max_ms: 1_000,
            multiplier: f64::NAN,
            jitter: 0.1,
        }),
        None,
    )]
}
