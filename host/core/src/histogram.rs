//! A fixed-bucket histogram of `u64` observations (latencies, sizes), updated lock-free from
//! any thread and read in the shape Prometheus histograms take: cumulative counts per bound,
//! then the total, and the sum.

use std::sync::atomic::{AtomicU64, Ordering};

/// Observations counted by the first bound they do not exceed.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, then one for everything above the last bound (not cumulative: an
    /// observation touches one slot; reads add them up).
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds`, which must be ascending.
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value`.
    pub fn observe(&self, value: u64) {
        let slot = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The upper bounds.
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// Counts at or under each bound (cumulative), then the count of every observation.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.buckets
            .iter()
            .map(|n| {
                total += n.load(Ordering::Relaxed);
                total
            })
            .collect()
    }

    /// The sum of every observation.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// The smallest bound under which at least half the observations fall: `None` before any
    /// observation, or when the median lies above the last bound.
    pub fn median_bound(&self) -> Option<u64> {
        let cumulative = self.cumulative();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        cumulative
            .iter()
            .zip(self.bounds)
            .find(|(n, _)| **n * 2 >= total)
            .map(|(_, bound)| *bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_first_bound_not_exceeded_and_reads_cumulatively() {
        let h = Histogram::new(&[100, 200, 300]);
        assert_eq!(h.median_bound(), None);
        for value in [90, 100, 250, 260, 2_000_000] {
            h.observe(value);
        }
        assert_eq!(h.cumulative(), vec![2, 2, 4, 5]);
        assert_eq!(h.sum(), 90 + 100 + 250 + 260 + 2_000_000);
        assert_eq!(h.median_bound(), Some(300));
    }

    #[test]
    fn a_median_above_every_bound_has_no_bound() {
        let h = Histogram::new(&[10]);
        h.observe(11);
        assert_eq!(h.cumulative(), vec![0, 1]);
        assert_eq!(h.median_bound(), None);
    }
}
