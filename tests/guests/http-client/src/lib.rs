//! Test guest for outbound HTTP: `fetch` sends requests where the payload says, `charge`
//! charges the fake provider with the step's idempotency key.

use std::time::Duration;

use stepwise_sdk::http::Request;
use stepwise_sdk::prelude::*;

/// `fetch`'s payload.
#[derive(Deserialize)]
struct Fetch {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body: String,
    /// Requests to send, one after the other (the last one's answer is returned).
    #[serde(default = "one")]
    times: u32,
}

fn get() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

/// What `fetch` returns.
#[derive(Serialize, Deserialize)]
struct Fetched {
    status: u16,
    bytes: usize,
}

/// Sends the request(s) in one step; an HTTP failure ends the run with the SDK's mapping.
#[job(max_attempts = 1)]
fn fetch(ctx: &mut Ctx, input: Fetch) -> Result<Fetched, JobError> {
    ctx.step("call", || {
        let mut last = None;
        for _ in 0..input.times {
            let response = Request::new(&input.method, &input.url)
                .body(input.body.clone())
                .send()?;
            last = Some(Fetched {
                status: response.status,
                bytes: response.bytes().len(),
            });
        }
        last.ok_or_else(|| JobError::non_retryable("times must be at least 1"))
    })
}

/// `charge`'s payload.
#[derive(Deserialize)]
struct Charge {
    base_url: String,
    amount: u64,
    /// A host-bound secret sent as `Authorization: Bearer {{secret:NAME}}`.
    #[serde(default)]
    auth_secret: Option<String>,
    /// How long to wait for the provider's answer.
    #[serde(default = "second")]
    timeout_ms: u64,
}

fn second() -> u64 {
    1_000
}

/// Charges once per run, however many attempts it takes: the key is the step's.
#[job(
    max_attempts = 5,
    backoff_initial_ms = 50,
    backoff_max_ms = 200,
    hosts = "api.payments.example, http://127.0.0.1:*"
)]
fn charge(ctx: &mut Ctx, input: Charge) -> Result<serde_json::Value, JobError> {
    let charge: serde_json::Value = ctx.step("charge", || {
        let mut request = Request::post(&format!("{}/v1/charges", input.base_url))
            .header("Idempotency-Key", &ctx.idempotency_key()?);
        if let Some(name) = &input.auth_secret {
            request = request.header("Authorization", &format!("Bearer {{{{secret:{name}}}}}"));
        }
        let response = request
            .timeout(Duration::from_millis(input.timeout_ms))
            .json(&serde_json::json!({ "amount": input.amount }))?
            .send()?
            .error_for_status()?;
        Ok(response.json()?)
    })?;
    Ok(charge)
}

/// Reads a readable secret and tries to leak it everywhere a run records text.
#[job(max_attempts = 1)]
#[allow(
    clippy::print_stdout,
    reason = "captured output is one of the places it must be masked"
)]
fn reveal(ctx: &mut Ctx, name: String) -> Result<(), JobError> {
    let value = ctx.secret(&name)?;
    ctx.log_info(format!("the value is {value}"));
    println!("stdout has {value}");
    eprintln!("stderr has {value}");
    let kept: String = ctx.step("keep", || Ok(format!("kept {value}")))?;
    Err(JobError::non_retryable(format!("failing with {kept}")))
}

export_jobs!(fetch, charge, reveal);
