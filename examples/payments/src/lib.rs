//! Example handler: charge a payment, provision the account, send a receipt.
//!
//! Provisioning is flaky on purpose: the payload's `fail_provision_times` makes the
//! `provision` step fail (retryably) on its first attempts, to show that a retry runs only the
//! failed step while `charge` is answered from the journal and never charged twice.

use stepwise_sdk::prelude::*;

/// The payload: `{"payment_id":"pay_123","fail_provision_times":2}`.
#[derive(Deserialize)]
struct Payment {
    payment_id: String,
    /// How many attempts of `provision` fail before it succeeds; 0 in real life.
    #[serde(default)]
    fail_provision_times: u32,
}

/// The job's output.
#[derive(Serialize, Deserialize)]
struct Receipt {
    charge_id: String,
    account_id: String,
    receipt_id: String,
}

/// Charge a payment, provision the account, and send a receipt.
#[job(max_attempts = 5, backoff_initial_ms = 200)]
fn provision_after_payment(ctx: &mut Ctx, input: Payment) -> Result<Receipt, JobError> {
    let charge_id: String = ctx.step("charge", || {
        ctx.log_info(format!("charging payment {}", input.payment_id));
        Ok(format!("ch_{}", input.payment_id))
    })?;

    let account_id: String = ctx.step_attempt("provision", |attempt| {
        ctx.log_info(format!("provisioning for {charge_id}, attempt {attempt}"));
        if attempt <= input.fail_provision_times {
            return Err(JobError::retryable("provisioning backend unavailable"));
        }
        Ok(format!("acct_{}", input.payment_id))
    })?;

    let receipt_id: String = ctx.step("send-receipt", || {
        ctx.log_info(format!("sending the receipt for {account_id}"));
        Ok(format!("rcpt_{}", input.payment_id))
    })?;

    ctx.log_info("payment provisioned");
    Ok(Receipt {
        charge_id,
        account_id,
        receipt_id,
    })
}

export_jobs!(provision_after_payment);
