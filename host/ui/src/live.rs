//! What the live runs and queues pages compare: a fingerprint of the tenant's counters (runs,
//! depth, dead letters and runs by status per queue, and attempts running now), read from
//! the store's counters without reading a run. The page embeds the fingerprint it was
//! rendered with, and the stream (`/ui/live`, served by the server crate) signals `changed`
//! once the tenant's fingerprint differs from it, so nothing between the render and the
//! stream's first look is missed.

use sha2::{Digest, Sha256};
use stepwise_engine::Engine;

/// The fingerprint of `tenant`'s counters now, or `None` when the store cannot say.
pub async fn counts_fingerprint(engine: &Engine, tenant: &str) -> Option<String> {
    let store = engine.store();
    let census = store.census().await.ok()?;
    let running = store.occupancy().await.ok()?.running_by_queue;
    let mut digest = Sha256::new();
    for ((t, queue), runs) in &census.runs {
        if t != tenant {
            continue;
        }
        let key = (t.clone(), queue.clone());
        let by_status = store.queue_census(tenant, queue).await.ok()?.by_status;
        let line = format!(
            "{queue}\u{0}{runs}:{}:{}:{}:{by_status:?}\n",
            census.depth.get(&key).copied().unwrap_or(0),
            census.dead_letters.get(&key).copied().unwrap_or(0),
            running.get(&key).copied().unwrap_or(0),
        );
        digest.update(line.as_bytes());
    }
    Some(hex::encode(&digest.finalize()[..12]))
}
