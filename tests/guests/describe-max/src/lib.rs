//! Test guest: a describe() a hostile tenant could write with the raw WIT bindings (no SDK):
//! a job asking for u64::MAX fuel, time and memory and u32::MAX attempts: the host accepts it with every value clamped to its caps.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "handler",
});

use stepwise::jobs::types::{Backoff, JobPolicy};

fn spec(name: &str, backoff: Option<Backoff>, limits: Option<u64>) -> JobSpec {
    JobSpec {
        name: name.into(),
        description: String::new(),
        policy: JobPolicy {
            max_attempts: limits.map(|_| u32::MAX),
            backoff,
            fuel: limits,
            timeout_ms: limits,
            memory_bytes: limits,
        },
    }
}

struct Raw;

impl Guest for Raw {
    fn run(_ctx: JobContext, _payload: String) -> Result<String, JobError> {
        Ok("\"ran\"".into())
    }

    fn describe() -> Vec<JobSpec> {
        vec![spec("max", None, Some(u64::MAX))]
    }
}

export!(Raw);
