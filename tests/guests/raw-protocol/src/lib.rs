//! Test guest: a handler written against the raw WIT bindings (no SDK), as a hostile tenant
//! could, that breaks the step protocol in every way the SDK never would. Each job is one
//! violation; the host must fail each run at once as `protocol_violation`.

#![allow(
    unsafe_code,
    reason = "the bindings generated here contain the canonical ABI glue, which is unsafe"
)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "handler-core",
});

use stepwise::jobs::steps;
use stepwise::jobs::types::{ErrorKind, JobPolicy};

/// The jobs, each one violation.
const JOBS: [&str; 6] = [
    "succeed-without-begin",
    "fail-without-begin",
    "begin-twice",
    "sleep-in-step",
    "non-json-step-output",
    "non-json-output",
];

struct Raw;

impl Guest for Raw {
    fn run(ctx: JobContext, _payload: String) -> Result<String, JobError> {
        match ctx.job.as_str() {
            "succeed-without-begin" => steps::succeed("a", "1"),
            "fail-without-begin" => steps::fail(
                "a",
                &JobError {
                    kind: ErrorKind::Retryable,
                    message: "never began".into(),
                },
            ),
            "begin-twice" => {
                steps::begin("a");
                steps::begin("b");
            }
            "sleep-in-step" => {
                steps::begin("a");
                steps::sleep("nap", 10);
            }
            "non-json-step-output" => {
                steps::begin("a");
                steps::succeed("a", "{not json");
            }
            "non-json-output" => return Ok("not json at all".into()),
            other => return Ok(format!("\"unknown job {other}\"")),
        }
        Ok("\"the host let a protocol violation through\"".into())
    }

    fn describe() -> Vec<JobSpec> {
        JOBS.iter()
            .map(|name| JobSpec {
                name: (*name).into(),
                description: String::new(),
                policy: JobPolicy {
                    max_attempts: Some(3),
                    backoff: None,
                    fuel: None,
                    timeout_ms: None,
                    memory_bytes: None,
                },
            })
            .collect()
    }
}

export!(Raw);
