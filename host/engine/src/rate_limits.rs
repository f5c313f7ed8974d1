//! Rate limits the engine applies: a queue's starts per window (per `rate_key`), checked when
//! an attempt is about to start, and a tenant's enqueue requests per window, checked before
//! an enqueue from the API does anything.
//!
//! A start over its queue's limit is not dropped: the attempt hands its claim back with a
//! hold until the lane has room (see [`stepwise_core::rate`]), the run shows why it waits
//! ([`Engine::rate_hold`]), and when it finally starts its timeline says how long it waited.
//! The windows and holds live in memory: after a restart each lane starts empty and every
//! held run is due at its stored time, so a window that spans a restart may see up to twice
//! its limit. A cancelled run gives its turn back; a change of a queue's limit lifts the
//! holds of its runs, which are then counted under the new limit.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Engine, EngineError};
use stepwise_core::clock::Millis;
use stepwise_core::model::RunRecord;
use stepwise_core::rate::{Admission, RateLimit, RateLimiter};

/// Runs held back at once that are remembered; past it some hold is forgotten (its run still
/// waits for its turn, but its view no longer says why and it queues again when it comes
/// back).
const MAX_HOLDS: usize = 100_000;

/// A rate-limit lane: (tenant, queue, rate_key or "").
type Lane = (String, String, String);

/// Why a due run waits: its queue's rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHold {
    /// When it was first held back.
    pub since: Millis,
    /// When it is tried again.
    pub until: Millis,
    /// The queue's limit.
    pub limit: RateLimit,
    /// The lane it counts against.
    pub rate_key: Option<String>,
    /// Its tenant and queue.
    lane: Lane,
}

impl RateHold {
    /// One line for views and timelines.
    pub fn describe(&self, queue: &str) -> String {
        match &self.rate_key {
            Some(key) => format!(
                "queue '{queue}' allows {} for rate_key '{}'",
                self.limit.describe(),
                stepwise_core::text::prefix(key, 64)
            ),
            None => format!("queue '{queue}' allows {}", self.limit.describe()),
        }
    }
}

/// The limiters and what they hold back.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    /// Starts by lane.
    starts: Mutex<RateLimiter<Lane>>,
    /// Runs held back now, by id.
    holds: Mutex<HashMap<String, RateHold>>,
    /// Enqueue requests by tenant.
    enqueues: Mutex<RateLimiter<String>>,
}

/// How a start went past the limiter.
pub(crate) enum StartAdmission {
    /// Go ahead; `waited` is the hold it had, if it was held back.
    Go { waited: Option<RateHold> },
    /// Not now: hand the claim back until this time.
    HoldUntil(Millis),
}

impl Engine {
    /// Whether `run` may start now under its queue's rate limit.
    pub(crate) fn admit_start(&self, run: &RunRecord) -> StartAdmission {
        let inner = &self.inner;
        let Some(limit) = self.queue_settings(&run.tenant, &run.queue).rate_limit else {
            let waited = lock(&inner.rate_limits.holds).remove(&run.id);
            return StartAdmission::Go { waited };
        };
        let now = inner.clock.now();
        let lane = (
            run.tenant.clone(),
            run.queue.clone(),
            run.rate_key.clone().unwrap_or_default(),
        );
        let mut holds = lock(&inner.rate_limits.holds);
        let waited = holds.contains_key(&run.id);
        let admission = lock(&inner.rate_limits.starts).admit(&lane, limit, now, waited);
        match admission {
            Admission::Admitted => StartAdmission::Go {
                waited: holds.remove(&run.id),
            },
            Admission::Retry(until) => {
                inner.metrics.record_rate_limited_wait();
                if holds.len() >= MAX_HOLDS
                    && !holds.contains_key(&run.id)
                    && let Some(any) = holds.keys().next().cloned()
                {
                    holds.remove(&any);
                }
                let hold = holds.entry(run.id.clone()).or_insert(RateHold {
                    since: now,
                    until,
                    limit,
                    rate_key: run.rate_key.clone(),
                    lane: lane.clone(),
                });
                hold.until = until;
                StartAdmission::HoldUntil(until)
            }
        }
    }

    /// Forgets `run`'s hold (it was cancelled): its turn goes to the runs behind it.
    pub(crate) fn drop_hold(&self, run: &str) {
        let inner = &self.inner;
        if let Some(hold) = lock(&inner.rate_limits.holds).remove(run) {
            lock(&inner.rate_limits.starts).forget_turn(&hold.lane);
        }
    }

    /// After `queue`'s rate limit changed: its lanes start afresh and its held runs are due
    /// at their stored times again, to be counted under the new limit.
    pub(crate) async fn lift_holds(&self, tenant: &str, queue: &str) {
        let inner = &self.inner;
        let of_queue = |lane: &Lane| lane.0 == tenant && lane.1 == queue;
        let lifted: Vec<String> = {
            let mut holds = lock(&inner.rate_limits.holds);
            let ids: Vec<String> = holds
                .iter()
                .filter(|(_, h)| of_queue(&h.lane))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                holds.remove(id);
            }
            ids
        };
        lock(&inner.rate_limits.starts).reset(|lane| !of_queue(lane));
        for id in lifted {
            if let Err(e) = inner.store.lift_hold(&id).await {
                tracing::warn!(run = %id, error = %e, "a rate-limit hold could not be lifted");
            }
        }
        inner.wake.notify_one();
    }

    /// Why due run `run` waits, when its queue's rate limit holds it back.
    pub fn rate_hold(&self, run: &str) -> Option<RateHold> {
        lock(&self.inner.rate_limits.holds).get(run).cloned()
    }

    /// Counts an enqueue request of `tenant` against the operator's limit for it, refusing
    /// it when over.
    pub fn admit_enqueue(&self, tenant: &str) -> Result<(), EngineError> {
        let inner = &self.inner;
        let Some(limit) = inner.config.tenants.enqueue_rate_of(tenant) else {
            return Ok(());
        };
        let now = inner.clock.now();
        match lock(&inner.rate_limits.enqueues).try_admit(&tenant.to_owned(), limit, now) {
            Ok(()) => Ok(()),
            Err(free) => {
                inner.metrics.record_enqueue_refused();
                Err(EngineError::RateLimited {
                    tenant: tenant.to_owned(),
                    limit: limit.describe(),
                    retry_after_ms: free.saturating_sub(now).max(1),
                })
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
