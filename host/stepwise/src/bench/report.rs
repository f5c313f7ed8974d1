//! The one JSON line a workload prints: the contract's fields (never renamed) plus extras.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::Durability;

/// The fields `../shared/bench.md` names: every report has them, under these names.
pub const CONTRACT_FIELDS: [&str; 10] = [
    "system",
    "workload",
    "durability",
    "jobs",
    "concurrency",
    "jobs_per_s",
    "p50_ms",
    "p99_ms",
    "commits",
    "rows_per_commit",
];

/// A workload's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `stepwise`.
    pub system: &'static str,
    /// The workload's name.
    pub workload: String,
    /// `immediate` or `eventual`.
    pub durability: Durability,
    /// Jobs run.
    pub jobs: u64,
    /// Attempts executing at once.
    pub concurrency: usize,
    /// Completed jobs per wall second, first enqueue to last completion.
    pub jobs_per_s: f64,
    /// Median enqueue → completion latency.
    pub p50_ms: f64,
    /// 99th-percentile enqueue → completion latency.
    pub p99_ms: f64,
    /// Storage write transactions during the workload.
    pub commits: u64,
    /// Mutations per transaction.
    pub rows_per_commit: f64,
    /// `wasm` or `native` (the baseline: the same job logic without the sandbox).
    pub handler: &'static str,
    /// Workload-specific figures.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Report {
    /// A report with the contract's fields set and no extras.
    pub fn new(workload: &str, durability: Durability, jobs: u64, concurrency: usize) -> Self {
        Self {
            system: "stepwise",
            workload: workload.to_owned(),
            durability,
            jobs,
            concurrency,
            jobs_per_s: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            commits: 0,
            rows_per_commit: 0.0,
            handler: "wasm",
            extra: Map::new(),
        }
    }

    /// Sets the commit figures from (commits, rows) deltas.
    pub fn commits(mut self, commits: u64, rows: u64) -> Self {
        self.commits = commits;
        self.rows_per_commit = if commits == 0 {
            0.0
        } else {
            round(rows as f64 / commits as f64)
        };
        self
    }

    /// Sets p50/p99 from latencies in milliseconds.
    pub fn latencies(mut self, mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        self.p50_ms = round(percentile(&ms, 0.50));
        self.p99_ms = round(percentile(&ms, 0.99));
        self
    }

    /// Adds a workload-specific field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// Rounds to 0.1 for readable output.
pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_contract_fields_are_present() {
        let r = Report::new("steps3", Durability::Immediate, 10, 50)
            .commits(4, 150)
            .latencies(vec![1.0, 2.0, 3.0])
            .with("extra", 1);
        let v = serde_json::to_value(&r).unwrap();
        for key in CONTRACT_FIELDS {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["rows_per_commit"], 37.5);
        assert_eq!(v["durability"], "immediate");
        assert_eq!(v["extra"], 1);
    }
}
