//! Counters of the engine's work since it opened, for `/metrics`: attempts, live step
//! completions, failures by kind, and the step-to-step latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::FailureKind;
use crate::runtime::AttemptOutcome;

/// Every failure kind, in the order the failure counters are kept.
pub const FAILURE_KINDS: [FailureKind; 7] = [
    FailureKind::Retryable,
    FailureKind::NonRetryable,
    FailureKind::RetryAfter,
    FailureKind::FuelExhausted,
    FailureKind::Timeout,
    FailureKind::MemoryLimit,
    FailureKind::Trap,
];

/// Upper bounds of the step-to-step histogram, in microseconds.
pub const STEP_GAP_BOUNDS_MICROS: [u64; 16] = [
    100, 200, 300, 400, 500, 600, 800, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 50_000, 250_000,
    1_000_000,
];

/// The counters.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    attempts: AtomicU64,
    step_completions: AtomicU64,
    runs_finished: AtomicU64,
    failures: [AtomicU64; FAILURE_KINDS.len()],
    /// Step-to-step gaps by bucket (not cumulative), the last slot above every bound.
    step_gaps: [AtomicU64; STEP_GAP_BOUNDS_MICROS.len() + 1],
    step_gap_micros_sum: AtomicU64,
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
            let slot = STEP_GAP_BOUNDS_MICROS
                .iter()
                .position(|bound| gap <= *bound)
                .unwrap_or(STEP_GAP_BOUNDS_MICROS.len());
            self.step_gaps[slot].fetch_add(1, Ordering::Relaxed);
            self.step_gap_micros_sum.fetch_add(gap, Ordering::Relaxed);
        }
    }

    /// Step-to-step gaps so far, as cumulative counts per bound of [`STEP_GAP_BOUNDS_MICROS`]
    /// then the total (the shape Prometheus histograms take), and their sum in microseconds.
    pub fn step_gaps(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let cumulative = self
            .step_gaps
            .iter()
            .map(|n| {
                total += n.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, self.step_gap_micros_sum.load(Ordering::Relaxed))
    }

    /// The bucket bound under which half the step-to-step gaps fall, in microseconds (`None`
    /// before any gap, or when the median lies above the largest bound).
    pub fn step_gap_p50_bound_micros(&self) -> Option<u64> {
        let (cumulative, _) = self.step_gaps();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        cumulative
            .iter()
            .zip(STEP_GAP_BOUNDS_MICROS)
            .find(|(n, _)| **n * 2 >= total)
            .map(|(_, bound)| bound)
    }

    pub(crate) fn record_finished(&self) {
        self.runs_finished.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::GuestError;

    #[test]
    fn step_gaps_fill_a_histogram_whose_median_bound_is_reported() {
        let m = EngineMetrics::default();
        assert_eq!(m.step_gap_p50_bound_micros(), None);
        m.record_step_gaps(&[90, 250, 260, 2_000_000]);
        let (cumulative, sum) = m.step_gaps();
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[2], 3);
        assert_eq!(*cumulative.last().unwrap(), 4);
        assert_eq!(sum, 90 + 250 + 260 + 2_000_000);
        assert_eq!(m.step_gap_p50_bound_micros(), Some(300));
    }

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
