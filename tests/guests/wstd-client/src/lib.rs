//! Test guest: a step that sends its request with `wstd` (its own `wasi:http` bindings, an
//! async client driven by `wstd::runtime::block_on`) instead of the SDK's client, to show that
//! a standard wasip2 HTTP crate works under the host's egress rules, and (`fan_out`) to send
//! several requests at once, which the SDK's blocking client never does.

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
    ctx.step("call", || wstd::runtime::block_on(send(url)))
}

/// GETs every URL of the payload at once in one step, answering in the payload's order.
#[job(max_attempts = 1)]
fn fan_out(ctx: &mut Ctx, urls: Vec<String>) -> Result<Vec<Got>, JobError> {
    ctx.step("calls", || {
        wstd::runtime::block_on(async {
            let tasks: Vec<_> = urls
                .into_iter()
                .map(|u| wstd::runtime::spawn(send(u)))
                .collect();
            let mut got = Vec::with_capacity(tasks.len());
            for task in tasks {
                got.push(task.await?);
            }
            Ok(got)
        })
    })
}

async fn send(url: String) -> Result<Got, JobError> {
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
}

export_jobs!(get, fan_out);
