//! Test guest: a step that sends its request with `wstd` (its own `wasi:http` bindings, an
//! async client driven by `wstd::runtime::block_on`) instead of the SDK's client, to show that
//! a standard wasip2 HTTP crate works under the host's egress rules.

use stepwise_sdk::prelude::*;
use wstd::http::{Body, Client, Request};

/// What `get` returns.
#[derive(Serialize, Deserialize)]
struct Got {
    status: u16,
    body: String,
}

/// GETs the payload's URL in one step.
#[job(max_attempts = 1)]
fn get(ctx: &mut Ctx, url: String) -> Result<Got, JobError> {
    ctx.step("call", || {
        wstd::runtime::block_on(async {
            let request = Request::get(url.as_str())
                .body(Body::empty())
                .map_err(|e| JobError::non_retryable(e.to_string()))?;
            let response = Client::new()
                .send(request)
                .await
                .map_err(|e| JobError::non_retryable(format!("wstd: {e:?}")))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let text = body
                .str_contents()
                .await
                .map_err(|e| JobError::retryable(format!("{e:?}")))?
                .to_owned();
            Ok(Got { status, body: text })
        })
    })
}

export_jobs!(get);
