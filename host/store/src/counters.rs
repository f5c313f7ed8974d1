//! The counters every backend keeps with its writes, by (tenant, queue, counter): runs by
//! status (the counter is the status's name), dead letters, and per tenant (under the queue
//! `""`) stored bytes and events. One vocabulary, and one reading of it into a [`Census`] or
//! a [`TenantUsage`], so every backend counts alike.

use crate::{Census, TenantUsage};

/// Dead-lettered runs of a queue.
pub const DEAD_LETTERS: &str = "dead_letters";
/// Bytes of records a tenant's runs and events stored (kept under the queue `""`).
pub const STORED_BYTES: &str = "stored_bytes";
/// Events a tenant stored (kept under the queue `""`).
pub const EVENTS: &str = "events";

/// Adds counter `counter` of (`tenant`, `queue`), worth `n`, to `census`; counters it does
/// not know are skipped.
pub fn add_to_census(census: &mut Census, tenant: &str, queue: &str, counter: &str, n: u64) {
    let key = || (tenant.to_owned(), queue.to_owned());
    if counter == STORED_BYTES {
        *census.stored_bytes.entry(tenant.to_owned()).or_default() += n;
        return;
    }
    if counter == DEAD_LETTERS {
        *census.dead_letters.entry(key()).or_default() += n;
        return;
    }
    let Ok(status) = counter.parse::<stepwise_core::model::RunStatus>() else {
        return;
    };
    *census.by_status.entry(status).or_default() += n;
    *census.runs.entry(key()).or_default() += n;
    if !status.is_final() {
        *census.depth.entry(key()).or_default() += n;
    }
}

/// Adds one of a tenant's counters, worth `n`, to its `usage`.
pub fn add_to_usage(usage: &mut TenantUsage, counter: &str, n: u64) {
    match counter {
        "queued" | "retrying" | "sleeping" | "waiting" => {
            usage.waiting_runs = usage.waiting_runs.saturating_add(n);
        }
        STORED_BYTES => usage.stored_bytes = n,
        EVENTS => usage.events = n,
        _ => {}
    }
}
