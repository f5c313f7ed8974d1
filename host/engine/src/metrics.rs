//! Counters of the engine's work since it opened, for `/metrics`: attempts, live step
//! completions, failures by kind, and the step-to-step latency histogram.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use stepwise_core::histogram::Histogram;
use stepwise_core::model::FailureKind;
use stepwise_runtime::AttemptOutcome;

/// Every failure kind, in the order the failure counters are kept.
pub const FAILURE_KINDS: [FailureKind; 10] = [
    FailureKind::Retryable,
    FailureKind::NonRetryable,
    FailureKind::RetryAfter,
    FailureKind::FuelExhausted,
    FailureKind::Timeout,
    FailureKind::MemoryLimit,
    FailureKind::Trap,
    FailureKind::ProtocolViolation,
    FailureKind::LimitExceeded,
    FailureKind::HostError,
];

/// Upper bounds of the step-to-step histogram, in microseconds.
pub const STEP_GAP_BOUNDS_MICROS: [u64; 16] = [
    100, 200, 300, 400, 500, 600, 800, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 50_000, 250_000,
    1_000_000,
];

/// The counters.
#[derive(Debug)]
pub struct EngineMetrics {
    attempts: AtomicU64,
    step_completions: AtomicU64,
    runs_finished: AtomicU64,
    host_panics: AtomicU64,
    host_faults: AtomicU64,
    /// Schedule fires by outcome: fired, skipped (overlap), skipped (missed), failed.
    schedule_fires: [AtomicU64; 4],
    failures: [AtomicU64; FAILURE_KINDS.len()],
    /// Step-to-step gaps, in microseconds.
    step_gaps: Histogram,
    /// What each tenant's attempts used, for fairness to be measured and not only claimed.
    tenants: Mutex<BTreeMap<String, TenantUse>>,
    /// Keyed and debounced enqueues by outcome (`created`, `kept`, `replaced`, `debounced`,
    /// `rejected`).
    keyed_enqueues: Mutex<BTreeMap<&'static str, u64>>,
    /// Due runs held back by their queue's rate limit.
    rate_limited_waits: AtomicU64,
    /// Enqueue requests refused by the tenant's enqueue rate limit.
    enqueues_refused: AtomicU64,
}

/// What one tenant's attempts used since the engine opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUse {
    /// Attempts executed.
    pub attempts: u64,
    /// Fuel (wasm operators) their guests burned: the CPU they computed with.
    pub fuel: u64,
    /// Wall time they held a slot, in microseconds.
    pub busy_micros: u64,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            attempts: AtomicU64::new(0),
            step_completions: AtomicU64::new(0),
            runs_finished: AtomicU64::new(0),
            host_panics: AtomicU64::new(0),
            host_faults: AtomicU64::new(0),
            schedule_fires: Default::default(),
            failures: Default::default(),
            step_gaps: Histogram::new(&STEP_GAP_BOUNDS_MICROS),
            tenants: Mutex::default(),
            keyed_enqueues: Mutex::default(),
            rate_limited_waits: AtomicU64::new(0),
            enqueues_refused: AtomicU64::new(0),
        }
    }
}

impl EngineMetrics {
    pub(crate) fn record_attempt(&self, outcome: &AttemptOutcome, steps_completed: u32) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.step_completions
            .fetch_add(u64::from(steps_completed), Ordering::Relaxed);
        let kind = match outcome {
            AttemptOutcome::Failed(e) => Some(e.kind),
            AttemptOutcome::Trapped { kind, .. } => Some(*kind),
            _ => None,
        };
        if let Some(kind) = kind
            && let Some(i) = FAILURE_KINDS.iter().position(|k| *k == kind)
        {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the gaps between consecutive durable step completions of one attempt.
    pub(crate) fn record_step_gaps(&self, gaps_micros: &[u64]) {
        for &gap in gaps_micros {
            self.step_gaps.observe(gap);
        }
    }

    /// Gaps between consecutive durable step completions of one attempt, in microseconds.
    pub fn step_gaps(&self) -> &Histogram {
        &self.step_gaps
    }

    pub(crate) fn record_finished(&self) {
        self.runs_finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one attempt of `tenant` that burned `fuel` and held its slot for `elapsed`.
    pub(crate) fn record_tenant(&self, tenant: &str, fuel: u64, elapsed: std::time::Duration) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match tenants.get_mut(tenant) {
            Some(entry) => entry,
            None => tenants.entry(tenant.to_owned()).or_default(),
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.fuel = entry.fuel.saturating_add(fuel);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        entry.busy_micros = entry.busy_micros.saturating_add(micros);
    }

    /// What each tenant's attempts used, by tenant.
    pub fn tenant_use(&self) -> BTreeMap<String, TenantUse> {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn record_keyed_enqueue(&self, outcome: &'static str) {
        let mut counts = self
            .keyed_enqueues
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *counts.entry(outcome).or_default() += 1;
    }

    /// Keyed and debounced enqueues since the engine opened, by outcome.
    pub fn keyed_enqueues(&self) -> BTreeMap<&'static str, u64> {
        self.keyed_enqueues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn record_rate_limited_wait(&self) {
        self.rate_limited_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Times a due run was held back by its queue's rate limit.
    pub fn rate_limited_waits(&self) -> u64 {
        self.rate_limited_waits.load(Ordering::Relaxed)
    }

    pub(crate) fn record_enqueue_refused(&self) {
        self.enqueues_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Enqueue requests refused by a tenant's enqueue rate limit.
    pub fn enqueues_refused(&self) -> u64 {
        self.enqueues_refused.load(Ordering::Relaxed)
    }

    pub(crate) fn record_schedule(&self, outcome: stepwise_core::schedule::FireOutcome) {
        self.schedule_fires[fire_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// Schedule fires with `outcome` since the engine opened.
    pub fn schedule_fires(&self, outcome: stepwise_core::schedule::FireOutcome) -> u64 {
        self.schedule_fires[fire_index(outcome)].load(Ordering::Relaxed)
    }

    pub(crate) fn record_host_fault(&self) {
        self.host_faults.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts the host could not record (storage failed under them): each was dropped
    /// uncharged and its run tried again later.
    pub fn host_faults(&self) -> u64 {
        self.host_faults.load(Ordering::Relaxed)
    }

    pub(crate) fn record_host_panic(&self) {
        self.host_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts that panicked the host (caught at the attempt boundary).
    pub fn host_panics(&self) -> u64 {
        self.host_panics.load(Ordering::Relaxed)
    }

    /// Runs that reached a final state (completed or failed) since the engine opened.
    pub fn runs_finished(&self) -> u64 {
        self.runs_finished.load(Ordering::Relaxed)
    }

    /// Attempts executed.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Steps completed live (replays not counted).
    pub fn step_completions(&self) -> u64 {
        self.step_completions.load(Ordering::Relaxed)
    }

    /// Failed attempts by kind.
    pub fn failures(&self) -> Vec<(FailureKind, u64)> {
        FAILURE_KINDS
            .iter()
            .zip(&self.failures)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .collect()
    }
}

fn fire_index(outcome: stepwise_core::schedule::FireOutcome) -> usize {
    use stepwise_core::schedule::FireOutcome as F;
    match outcome {
        F::Fired => 0,
        F::SkippedOverlap => 1,
        F::SkippedMissed => 2,
        F::Failed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepwise_runtime::GuestError;

    #[test]
    fn attempts_steps_and_failure_kinds_are_counted() {
        let m = EngineMetrics::default();
        m.record_attempt(&AttemptOutcome::Completed("1".into()), 3);
        m.record_attempt(
            &AttemptOutcome::Trapped {
                kind: FailureKind::Timeout,
                message: String::new(),
            },
            1,
        );
        m.record_attempt(
            &AttemptOutcome::Failed(GuestError {
                kind: FailureKind::Retryable,
                message: String::new(),
                retry_after_ms: None,
            }),
            0,
        );
        assert_eq!(m.attempts(), 3);
        assert_eq!(m.step_completions(), 4);
        let f: std::collections::HashMap<_, _> = m.failures().into_iter().collect();
        assert_eq!(f[&FailureKind::Timeout], 1);
        assert_eq!(f[&FailureKind::Retryable], 1);
        assert_eq!(f[&FailureKind::Trap], 0);
    }
}
