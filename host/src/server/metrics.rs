//! `/metrics` in the Prometheus text format: runs by status, queue depth and dead letters,
//! attempts, step completions, failures by kind, commit group sizes and commit (fsync) latency.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Engine;
use crate::engine::STEP_GAP_BOUNDS_MICROS;
use crate::store::{GROUP_SIZE_BOUNDS, LATENCY_BOUNDS_MICROS, StoreError};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values are quoted; backslash, quote and newline must be escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a histogram from cumulative `slots` (one per bound, then the total count).
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: impl Iterator<Item = String>,
    slots: &[u64],
    sum: String,
) {
    header(out, name, "histogram", help);
    let count = slots.last().copied().unwrap_or(0);
    // `bounds` has one entry fewer than `slots`: the last slot is `+Inf`, the total count.
    for (bound, slot) in bounds.zip(slots) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {slot}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

fn loads(slots: &[AtomicU64]) -> Vec<u64> {
    slots.iter().map(|s| s.load(Ordering::Relaxed)).collect()
}

/// Renders every metric.
pub fn render(engine: &Engine) -> Result<String, StoreError> {
    let mut out = String::new();
    let census = engine.store().census()?;

    header(&mut out, "stepwise_runs", "gauge", "Stored runs by status.");
    for status in ["queued", "retrying", "sleeping", "completed", "failed"] {
        let n = census
            .by_status
            .iter()
            .find(|(s, _)| s.as_str() == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "stepwise_runs{{status=\"{status}\"}} {n}");
    }
    header(
        &mut out,
        "stepwise_queue_depth",
        "gauge",
        "Runs not yet final, by queue.",
    );
    for ((tenant, queue), n) in &census.depth {
        let _ = writeln!(
            out,
            "stepwise_queue_depth{{tenant=\"{}\",queue=\"{}\"}} {n}",
            label(tenant),
            label(queue)
        );
    }
    header(
        &mut out,
        "stepwise_dead_letters",
        "gauge",
        "Dead-lettered runs, by queue.",
    );
    for ((tenant, queue), n) in &census.dead_letters {
        let _ = writeln!(
            out,
            "stepwise_dead_letters{{tenant=\"{}\",queue=\"{}\"}} {n}",
            label(tenant),
            label(queue)
        );
    }

    let m = engine.metrics();
    header(
        &mut out,
        "stepwise_attempts_total",
        "counter",
        "Attempts executed.",
    );
    let _ = writeln!(out, "stepwise_attempts_total {}", m.attempts());
    header(
        &mut out,
        "stepwise_step_completions_total",
        "counter",
        "Steps completed live (replays not counted).",
    );
    let _ = writeln!(
        out,
        "stepwise_step_completions_total {}",
        m.step_completions()
    );
    header(
        &mut out,
        "stepwise_failures_total",
        "counter",
        "Failed attempts by kind.",
    );
    for (kind, n) in m.failures() {
        let _ = writeln!(
            out,
            "stepwise_failures_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }

    let s = engine.store().stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    header(
        &mut out,
        "stepwise_commits_total",
        "counter",
        "Storage write transactions.",
    );
    let _ = writeln!(out, "stepwise_commits_total {}", load(&s.commits));
    header(
        &mut out,
        "stepwise_commit_rows_total",
        "counter",
        "Mutations committed.",
    );
    let _ = writeln!(out, "stepwise_commit_rows_total {}", load(&s.rows));

    histogram(
        &mut out,
        "stepwise_commit_batch_size",
        "Caller batches acknowledged per commit (group-commit efficiency).",
        GROUP_SIZE_BOUNDS.iter().map(|b| b.to_string()),
        &loads(&s.group_sizes),
        load(&s.batches).to_string(),
    );
    histogram(
        &mut out,
        "stepwise_commit_duration_seconds",
        "Time to commit a write transaction, fsync included in immediate mode.",
        LATENCY_BOUNDS_MICROS
            .iter()
            .map(|b| (*b as f64 / 1e6).to_string()),
        &loads(&s.commit_latency),
        (load(&s.commit_micros) as f64 / 1e6).to_string(),
    );
    let (gaps, gap_micros) = engine.metrics().step_gaps();
    histogram(
        &mut out,
        "stepwise_step_to_step_seconds",
        "Time between consecutive durable step completions of one attempt: the guest's work \
         between them plus one commit.",
        STEP_GAP_BOUNDS_MICROS
            .iter()
            .map(|b| (*b as f64 / 1e6).to_string()),
        &gaps,
        (gap_micros as f64 / 1e6).to_string(),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
