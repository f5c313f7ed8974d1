//! Example handler: charge a payment, provision the account, send a receipt — each a real HTTP
//! call to the payment provider, each a step.
//!
//! - `charge` POSTs to `{provider}/v1/charges` with the step's idempotency key, so a retry after
//!   a lost response is answered with the first charge instead of charging again, and with the
//!   provider's API key as a host-bound secret: the handler writes `{{secret:PAYMENTS_KEY}}`
//!   and never sees the key.
//! - `provision` and `send-receipt` POST to their own endpoints; a `5xx` is retried (only that
//!   step: the charge is answered from the journal).
//!
//! The provider's base URL comes from the payload (`provider_url`) or from the tenant's
//! readable secret `PAYMENTS_URL`. The tenant allows the provider's host
//! (`stepwise egress allow api.payments.example`) and stores the key bound to it
//! (`stepwise secrets set PAYMENTS_KEY --host api.payments.example`). `stepwise demo` runs it
//! against the fake provider (`stepwise dev provider`).

use stepwise_sdk::http::Request;
use stepwise_sdk::prelude::*;

/// The payload: `{"payment_id":"pay_123","amount":1200}`.
#[derive(Deserialize)]
struct Payment {
    payment_id: String,
    /// In the currency's smallest unit.
    #[serde(default = "default_amount")]
    amount: u64,
    /// The provider's base URL; default: the tenant's readable secret `PAYMENTS_URL`.
    #[serde(default)]
    provider_url: Option<String>,
}

fn default_amount() -> u64 {
    1_000
}

/// The job's output.
#[derive(Serialize, Deserialize)]
struct Receipt {
    charge_id: String,
    account_id: String,
    receipt_id: String,
}

/// What the provider answers: an object with an `id`.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// POSTs `body` to `url` with the step's idempotency key; the created object's id.
fn create(ctx: &Ctx, url: &str, body: serde_json::Value) -> Result<String, JobError> {
    let response = Request::post(url)
        .header("Idempotency-Key", &ctx.idempotency_key()?)
        .header("Authorization", "Bearer {{secret:PAYMENTS_KEY}}")
        .json(&body)?
        .send()?
        .error_for_status()?;
    Ok(response.json::<Created>()?.id)
}

/// Charge a payment, provision the account, and send a receipt.
#[job(max_attempts = 5, backoff_initial_ms = 200)]
fn provision_after_payment(ctx: &mut Ctx, input: Payment) -> Result<Receipt, JobError> {
    let base = match &input.provider_url {
        Some(url) => url.clone(),
        None => ctx.secret("PAYMENTS_URL")?,
    };
    let charge_id: String = ctx.step("charge", || {
        ctx.log_info(format!("charging payment {}", input.payment_id));
        create(
            ctx,
            &format!("{base}/v1/charges"),
            serde_json::json!({ "amount": input.amount, "payment_id": input.payment_id }),
        )
    })?;

    let account_id: String = ctx.step_attempt("provision", |attempt| {
        ctx.log_info(format!("provisioning for {charge_id}, attempt {attempt}"));
        create(
            ctx,
            &format!("{base}/v1/accounts"),
            serde_json::json!({ "charge_id": charge_id }),
        )
    })?;

    let receipt_id: String = ctx.step("send-receipt", || {
        ctx.log_info(format!("sending the receipt for {account_id}"));
        create(
            ctx,
            &format!("{base}/v1/receipts"),
            serde_json::json!({ "account_id": account_id }),
        )
    })?;

    ctx.log_info("payment provisioned");
    Ok(Receipt {
        charge_id,
        account_id,
        receipt_id,
    })
}

export_jobs!(provision_after_payment);
