//! Example handler: sync contacts from an upstream API that rate-limits its callers.
//!
//! The `call-api` step asks the upstream for the contacts over HTTP. When the upstream answers
//! `429 Too Many Requests` (or `503`) with a `Retry-After` header, seconds or an HTTP date, the
//! SDK turns it into `JobError::retry_after`: the host then waits at least that long before the
//! next attempt, whatever the job's backoff says. Other failures follow the job's policy.
//!
//! The tenant must allow the upstream: `stepwise egress allow api.example.com`.

use stepwise_sdk::http::Request;
use stepwise_sdk::prelude::*;

/// The payload: `{"api_url": "https://api.example.com"}`.
#[derive(Deserialize)]
struct SyncRequest {
    /// The upstream's base URL; contacts are at `{api_url}/v1/contacts`.
    api_url: String,
}

/// The job's output.
#[derive(Serialize, Deserialize)]
struct SyncResult {
    contacts: Vec<String>,
    stored: usize,
}

/// What the upstream answers.
#[derive(Deserialize)]
struct Contacts {
    contacts: Vec<String>,
}

/// Sync contacts from a rate-limited upstream API.
#[job(max_attempts = 5)]
fn sync_contacts(ctx: &mut Ctx, input: SyncRequest) -> Result<SyncResult, JobError> {
    let contacts: Vec<String> = ctx.step_attempt("call-api", |attempt| {
        ctx.log_info(format!(
            "asking the upstream for contacts, attempt {attempt}"
        ));
        let response = Request::get(&format!("{}/v1/contacts", input.api_url))
            .send()?
            .error_for_status()
            .inspect_err(|e| ctx.log_warn(format!("upstream refused: {e}")))?;
        Ok(response.json::<Contacts>()?.contacts)
    })?;

    let stored: usize = ctx.step("store-contacts", || {
        ctx.log_info(format!("storing {} contacts", contacts.len()));
        Ok(contacts.len())
    })?;

    Ok(SyncResult { contacts, stored })
}

export_jobs!(sync_contacts);
