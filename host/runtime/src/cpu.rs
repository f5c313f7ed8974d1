//! Fair CPU for compute-bound guests: an attempt that made no host call during a whole epoch
//! tick, or burned more than a threshold of fuel within one, is "hot", and a hot attempt runs
//! only while it holds one of its
//! tenant's CPU permits and one of the host's. Each tick a hot attempt gives its permits back
//! and queues for them again (tokio's semaphores are FIFO), so hot attempts take turns: within
//! a tenant, and across tenants, since a tenant has one attempt at a time in the host's queue.
//!
//! The host has one permit fewer than it has cores (at least one), so spinning guests never
//! hold every worker thread: the writer, the API and short attempts always find a core. An
//! attempt that mostly waits on its host calls (commits) is never hot and never waits here.
//! Written by hand: no crate gates wasmtime's epoch yields.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Fuel burned within one epoch tick (5 ms) above which an attempt counts as hot: a tight
/// loop burns ~5·10⁷ per tick, an attempt waiting on commits a few thousand.
pub(crate) const HOT_FUEL_PER_TICK: u64 = 1_000_000;

/// Permits each tenant's hot attempts share.
const TENANT_PERMITS: usize = 1;

/// The host's CPU permits and each tenant's.
pub(crate) struct CpuGate {
    host: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl CpuGate {
    /// A gate with one permit fewer than the machine's cores, at least one.
    pub(crate) fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            host: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            tenants: Mutex::default(),
        }
    }

    /// A ticket for one attempt of `tenant`.
    pub(crate) fn ticket(&self, tenant: &str) -> CpuTicket {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let own = tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(TENANT_PERMITS)))
            .clone();
        CpuTicket {
            own,
            host: self.host.clone(),
            held: Arc::default(),
        }
    }
}

type Held = Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>;

/// One attempt's place in the gate. Its permits are returned when it is dropped.
pub(crate) struct CpuTicket {
    own: Arc<Semaphore>,
    host: Arc<Semaphore>,
    held: Arc<Mutex<Held>>,
}

impl CpuTicket {
    /// Gives back any permits (the attempt is not hot now).
    pub(crate) fn cool(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The wait of a hot attempt for its next turn: permits given back, then taken again
    /// behind whoever queued meanwhile. The wait ends at `deadline` in any case, so the
    /// attempt's own deadline check (the next tick) ends it on time rather than a queue.
    pub(crate) fn next_turn(
        &self,
        deadline: std::time::Instant,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.cool();
        let (own, host, held) = (self.own.clone(), self.host.clone(), self.held.clone());
        Box::pin(async move {
            let take = async {
                // Neither semaphore is ever closed; a failed acquire runs the guest ungated.
                let mine = own.acquire_owned().await.ok()?;
                let shared = host.acquire_owned().await.ok()?;
                Some((mine, shared))
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            if let Ok(Some(permits)) = tokio::time::timeout_at(deadline, take).await {
                *held.lock().unwrap_or_else(|e| e.into_inner()) = Some(permits);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hot_attempts_of_one_tenant_take_turns_and_another_tenant_gets_its_own() {
        let gate = CpuGate {
            host: Arc::new(Semaphore::new(2)),
            tenants: Mutex::default(),
        };
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3_600);
        let (a1, a2, b) = (gate.ticket("a"), gate.ticket("a"), gate.ticket("b"));
        a1.next_turn(far).await;
        // a2 waits for a1's tenant permit; b does not.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), a2.next_turn(far));
        assert!(waiting.await.is_err());
        b.next_turn(far).await;
        // A wait never outlasts the attempt's deadline.
        a2.next_turn(std::time::Instant::now()).await;
        assert!(a2.held.lock().unwrap().is_none());
        a1.cool();
        tokio::time::timeout(std::time::Duration::from_secs(5), a2.next_turn(far))
            .await
            .expect("a2 gets the permit a1 gave back");
        drop(a2);
        a1.next_turn(far).await;
    }
}
