// Shared by the `describe-*` test guests (each includes this file): raw WIT bindings, as a
// hostile tenant could write them without the SDK, a `run` that always succeeds, and a
// `describe` that returns the including crate's `specs()`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "handler-core",
});

use stepwise::jobs::types::{Backoff, JobPolicy};

/// A job named `name` with `backoff`; with `limits`, every numeric limit set to it and
/// `u32::MAX` attempts.
#[allow(dead_code, reason = "not every describe-* guest uses every argument")]
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
        specs()
    }
}

export!(Raw);
