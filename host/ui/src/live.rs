//! What the live runs and queues pages compare: a fingerprint of the tenant's counters (runs,
//! depth, dead letters and attempts running now per queue, and its runs by status), read
//! from the tenant's own counters without reading a run or another tenant's counters. The
//! page embeds the fingerprint it was rendered with, and the stream (`/ui/live`, served by
//! the server crate) signals `changed` once the tenant's fingerprint differs from it, so
//! nothing between the render and the stream's first look is missed.

use sha2::{Digest, Sha256};
use stepwise_engine::Engine;

/// The fingerprint of `tenant`'s counters now, or `None` when the store cannot say.
pub async fn counts_fingerprint(engine: &Engine, tenant: &str) -> Option<String> {
    let store = engine.store();
    let census = store.tenant_census(tenant).await.ok()?;
    let running = store.occupancy().await.ok()?.running_by_queue;
    let mut digest = Sha256::new();
    // Per queue: runs, depth, dead letters and attempts running; then the tenant's runs by
    // status, so a move between two waiting states (which leaves a queue's depth) shows too.
    for (key, runs) in &census.runs {
        let line = format!(
            "{}\u{0}{runs}:{}:{}:{}\n",
            key.1,
            census.depth.get(key).copied().unwrap_or(0),
            census.dead_letters.get(key).copied().unwrap_or(0),
            running.get(key).copied().unwrap_or(0),
        );
        digest.update(line.as_bytes());
    }
    digest.update(format!("{:?}", census.by_status).as_bytes());
    Some(hex::encode(&digest.finalize()[..12]))
}
