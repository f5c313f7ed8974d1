//! Test guest: a describe() a hostile tenant could write with the raw WIT bindings (no SDK):
//! a job whose backoff multiplier is NaN: the host must refuse the module at deploy, naming the job and the field.

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
}

export!(Raw);
