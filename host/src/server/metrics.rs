//! `/metrics` in the Prometheus text format: runs by status, queue depth and dead letters,
//! attempts, step completions, failures by kind, commit group sizes and commit (fsync) latency.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::engine::Engine;
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

    header(
        &mut out,
        "stepwise_commit_batch_size",
        "histogram",
        "Caller batches acknowledged per commit (group-commit efficiency).",
    );
    for (bound, slot) in GROUP_SIZE_BOUNDS.iter().zip(&s.group_sizes) {
        let _ = writeln!(
            out,
            "stepwise_commit_batch_size_bucket{{le=\"{bound}\"}} {}",
            load(slot)
        );
    }
    let commits = load(&s.group_sizes[GROUP_SIZE_BOUNDS.len()]);
    let _ = writeln!(
        out,
        "stepwise_commit_batch_size_bucket{{le=\"+Inf\"}} {commits}"
    );
    let _ = writeln!(out, "stepwise_commit_batch_size_sum {}", load(&s.batches));
    let _ = writeln!(out, "stepwise_commit_batch_size_count {commits}");

    header(
        &mut out,
        "stepwise_commit_duration_seconds",
        "histogram",
        "Time to commit a write transaction, fsync included in immediate mode.",
    );
    for (bound, slot) in LATENCY_BOUNDS_MICROS.iter().zip(&s.commit_latency) {
        let _ = writeln!(
            out,
            "stepwise_commit_duration_seconds_bucket{{le=\"{}\"}} {}",
            *bound as f64 / 1e6,
            load(slot)
        );
    }
    let total = load(&s.commit_latency[LATENCY_BOUNDS_MICROS.len()]);
    let _ = writeln!(
        out,
        "stepwise_commit_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(
        out,
        "stepwise_commit_duration_seconds_sum {}",
        load(&s.commit_micros) as f64 / 1e6
    );
    let _ = writeln!(out, "stepwise_commit_duration_seconds_count {total}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
