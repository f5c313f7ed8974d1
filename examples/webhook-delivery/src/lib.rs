//! Example handler: deliver a webhook to a subscriber's endpoint, for real, over HTTP.
//!
//! The delivery is one step, retried with exponential backoff for hours (12 attempts, from one
//! minute doubling up to six hours). A `429` or `503` with `Retry-After` waits exactly as long
//! as the endpoint asked; `410 Gone` means the subscriber unsubscribed, so the run fails at once
//! instead of retrying; other `4xx` are final too, `5xx` and timeouts are retried. Every
//! attempt sends the same `Webhook-Id`, so the subscriber can drop duplicates.
//!
//! The tenant must allow the endpoint's host: `stepwise egress allow hooks.example.com`.

use std::time::Duration;

use stepwise_sdk::http::{HttpError, Request};
use stepwise_sdk::prelude::*;

/// The payload: `{"url": "https://hooks.example.com/in", "event": {...}}`.
#[derive(Deserialize)]
struct Delivery {
    url: String,
    event: serde_json::Value,
}

/// What a delivery returns.
#[derive(Serialize, Deserialize)]
struct Delivered {
    status: u16,
    webhook_id: String,
}

/// Deliver one event to one endpoint.
#[job(
    max_attempts = 12,
    backoff_initial_ms = 60_000,
    backoff_multiplier = 2.0,
    backoff_max_ms = 21_600_000
)]
fn deliver_webhook(ctx: &mut Ctx, input: Delivery) -> Result<Delivered, JobError> {
    ctx.step_attempt("deliver", |attempt| {
        let webhook_id = ctx.idempotency_key()?;
        ctx.log_info(format!("delivering {webhook_id}, attempt {attempt}"));
        let response = Request::post(&input.url)
            .header("Webhook-Id", &webhook_id)
            .timeout(Duration::from_secs(10))
            .json(&input.event)?
            .send()?;
        match response.error_for_status() {
            Ok(r) => Ok(Delivered {
                status: r.status,
                webhook_id,
            }),
            Err(HttpError::Status { status: 410, .. }) => Err(JobError::non_retryable(
                "the endpoint answered 410 Gone: the subscription is over",
            )),
            Err(e) => Err(e.into()),
        }
    })
}

export_jobs!(deliver_webhook);
