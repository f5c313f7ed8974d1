//! Example handler: sync contacts from an upstream API that rate-limits its callers.
//!
//! The `call-api` step answers "rate limited" with `JobError::retry_after`, the way a client
//! would pass on an HTTP `Retry-After`: the host then waits at least that long before the next
//! attempt, whatever the job's backoff says.

use stepwise_sdk::prelude::*;

/// The payload, every field optional: `{"retry_after_ms":1500,"limited_times":1}`.
#[derive(Deserialize)]
struct SyncRequest {
    /// The delay the simulated upstream asks for.
    #[serde(default = "default_retry_after_ms")]
    retry_after_ms: u64,
    /// How many calls the simulated upstream rejects before answering.
    #[serde(default = "default_limited_times")]
    limited_times: u32,
}

fn default_retry_after_ms() -> u64 {
    1500
}

fn default_limited_times() -> u32 {
    1
}

/// The job's output.
#[derive(Serialize, Deserialize)]
struct SyncResult {
    contacts: Vec<String>,
    stored: usize,
}

/// Sync contacts from a rate-limited upstream API.
#[job(max_attempts = 5)]
fn sync_contacts(ctx: &mut Ctx, input: SyncRequest) -> Result<SyncResult, JobError> {
    let contacts: Vec<String> = ctx.step_attempt("call-api", |attempt| {
        if attempt <= input.limited_times {
            ctx.log_warn(format!(
                "upstream rate limited call {attempt}; retry after {} ms",
                input.retry_after_ms
            ));
            return Err(JobError::retry_after(
                Duration::from_millis(input.retry_after_ms),
                "rate limited",
            ));
        }
        ctx.log_info(format!("upstream answered call {attempt}"));
        Ok(vec![
            "ada@example.com".to_owned(),
            "grace@example.com".to_owned(),
        ])
    })?;

    let stored: usize = ctx.step("store-contacts", || {
        ctx.log_info(format!("storing {} contacts", contacts.len()));
        Ok(contacts.len())
    })?;

    Ok(SyncResult { contacts, stored })
}

export_jobs!(sync_contacts);
