//! `/metrics` in the Prometheus text format: runs by status, attempts, step completions,
//! failures by kind, commit group sizes and commit (fsync) latency for anyone; queue depth,
//! dead letters and each tenant's use only for the holder of the metrics token, since their
//! labels name tenants and queues.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use stepwise_core::histogram::Histogram;
use stepwise_engine::Engine;
use stepwise_store::StoreError;

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

/// Writes `h` as a Prometheus histogram, its bounds and sum divided by `scale` (1e6 turns
/// microseconds into seconds).
fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram, scale: f64) {
    header(out, name, "histogram", help);
    let cumulative = h.cumulative();
    let count = cumulative.last().copied().unwrap_or(0);
    for (bound, n) in h.bounds().iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", *bound as f64 / scale);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", h.sum() as f64 / scale);
    let _ = writeln!(out, "{name}_count {count}");
}

/// Writes a gauge with one sample per (tenant, queue).
fn per_queue_gauge<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a (String, String), &'a u64)>,
) {
    header(out, name, "gauge", help);
    for ((tenant, queue), n) in samples {
        let _ = writeln!(
            out,
            "{name}{{tenant=\"{}\",queue=\"{}\"}} {n}",
            label(tenant),
            label(queue)
        );
    }
}

/// Renders the host-wide metrics, and with `per_tenant` those labelled by tenant or queue.
pub async fn render(engine: &Engine, per_tenant: bool) -> Result<String, StoreError> {
    let mut out = String::new();
    let census = engine.store().census().await?;

    header(&mut out, "stepwise_runs", "gauge", "Stored runs by status.");
    for status in [
        "queued",
        "retrying",
        "sleeping",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    ] {
        let n = census
            .by_status
            .iter()
            .find(|(s, _)| s.as_str() == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "stepwise_runs{{status=\"{status}\"}} {n}");
    }
    let occupancy = engine.store().occupancy().await?;
    if per_tenant {
        per_queue_gauge(
            &mut out,
            "stepwise_queue_depth",
            "Runs not yet final, by queue.",
            &census.depth,
        );
        per_queue_gauge(
            &mut out,
            "stepwise_dead_letters",
            "Dead-lettered runs, by queue.",
            &census.dead_letters,
        );

        let running_by_queue: Vec<_> = occupancy
            .running_by_queue
            .iter()
            .map(|(k, n)| (k, *n as u64))
            .collect();
        per_queue_gauge(
            &mut out,
            "stepwise_queue_running",
            "Attempts executing now, by queue.",
            running_by_queue.iter().map(|(k, n)| (*k, n)),
        );
        header(
            &mut out,
            "stepwise_tenant_running",
            "gauge",
            "Attempts executing now, by tenant.",
        );
        for (tenant, n) in &occupancy.running_by_tenant {
            let _ = writeln!(
                out,
                "stepwise_tenant_running{{tenant=\"{}\"}} {n}",
                label(tenant)
            );
        }
        header(
            &mut out,
            "stepwise_tenant_stored_bytes",
            "gauge",
            "Bytes of records each tenant's runs stored (counted against its quota).",
        );
        for (tenant, n) in &census.stored_bytes {
            let _ = writeln!(
                out,
                "stepwise_tenant_stored_bytes{{tenant=\"{}\"}} {n}",
                label(tenant)
            );
        }
    }
    header(
        &mut out,
        "stepwise_memory_reserved_bytes",
        "gauge",
        "Memory caps of the attempts executing now, summed (bounded by the memory budget).",
    );
    let _ = writeln!(
        out,
        "stepwise_memory_reserved_bytes {}",
        occupancy.memory_in_use
    );
    header(
        &mut out,
        "stepwise_unreadable_runs",
        "gauge",
        "Runs set aside because their stored record cannot be decoded.",
    );
    let _ = writeln!(
        out,
        "stepwise_unreadable_runs {}",
        engine.store().unreadable_runs().await?.len()
    );

    let m = engine.metrics();
    if per_tenant {
        let tenant_use = m.tenant_use();
        for (name, help, value) in [
            (
                "stepwise_tenant_attempts_total",
                "Attempts executed, by tenant.",
                (|u: &stepwise_engine::TenantUse| u.attempts as f64) as fn(&_) -> f64,
            ),
            (
                "stepwise_tenant_fuel_total",
                "Fuel (wasm operators) burned by each tenant's guests: their compute.",
                |u| u.fuel as f64,
            ),
            (
                "stepwise_tenant_attempt_seconds_total",
                "Wall time each tenant's attempts held a slot.",
                |u| u.busy_micros as f64 / 1e6,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (tenant, u) in &tenant_use {
                let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(tenant), value(u));
            }
        }
        header(
            &mut out,
            "stepwise_outbound_requests_total",
            "counter",
            "Guests' outbound HTTP requests by tenant and outcome: 1xx-5xx (status class), error \
             (failed after it was allowed) or denied (refused by egress rules or limits).",
        );
        for (tenant, class, n) in engine.egress().stats().snapshot() {
            let _ = writeln!(
                out,
                "stepwise_outbound_requests_total{{tenant=\"{}\",outcome=\"{class}\"}} {n}",
                label(&tenant)
            );
        }
    }
    header(
        &mut out,
        "stepwise_throughput_untracked_total",
        "counter",
        "Final runs left off the dashboard's throughput charts: every chart's ring was live.",
    );
    let _ = writeln!(
        out,
        "stepwise_throughput_untracked_total {}",
        engine.throughput_untracked()
    );
    let store = engine.store();
    header(
        &mut out,
        "stepwise_host_info",
        "gauge",
        "This host: its id, the holder named on its claims (1).",
    );
    let _ = writeln!(
        out,
        "stepwise_host_info{{host=\"{}\"}} 1",
        label(store.host_id())
    );
    let leases = store.lease_stats();
    for (name, help, n) in [
        (
            "stepwise_lease_writes_refused_total",
            "Writes refused because their claim's lease no longer held the run (another host took it over).",
            leases.writes_refused,
        ),
        (
            "stepwise_leases_lost_total",
            "Claims this host found taken over by another host when renewing its leases.",
            leases.leases_lost,
        ),
        (
            "stepwise_lease_takeovers_total",
            "Runs this host claimed from a host whose lease had lapsed.",
            leases.takeovers,
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }
    header(
        &mut out,
        "stepwise_host_panics_total",
        "counter",
        "Attempts that panicked the host, caught at the attempt boundary.",
    );
    let _ = writeln!(out, "stepwise_host_panics_total {}", m.host_panics());
    header(
        &mut out,
        "stepwise_host_faults_total",
        "counter",
        "Attempts the host could not record (storage failed); run again later, not charged.",
    );
    let _ = writeln!(out, "stepwise_host_faults_total {}", m.host_faults());
    header(
        &mut out,
        "stepwise_schedule_fires_total",
        "counter",
        "Schedule fires since start, by outcome: fired, skipped_overlap, skipped_missed, failed.",
    );
    {
        use stepwise_core::schedule::FireOutcome as F;
        for (label, outcome) in [
            ("fired", F::Fired),
            ("skipped_overlap", F::SkippedOverlap),
            ("skipped_missed", F::SkippedMissed),
            ("failed", F::Failed),
        ] {
            let n = m.schedule_fires(outcome);
            let _ = writeln!(
                out,
                "stepwise_schedule_fires_total{{outcome=\"{label}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "stepwise_keyed_enqueues_total",
        "counter",
        "Enqueues with a key or debounce, by outcome: created, kept, replaced, debounced, rejected.",
    );
    {
        let counts = m.keyed_enqueues();
        for label in ["created", "kept", "replaced", "debounced", "rejected"] {
            let n = counts.get(label).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "stepwise_keyed_enqueues_total{{outcome=\"{label}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "stepwise_rate_limited_waits_total",
        "counter",
        "Times a due run was held back by its queue's rate limit.",
    );
    let _ = writeln!(
        out,
        "stepwise_rate_limited_waits_total {}",
        m.rate_limited_waits()
    );
    header(
        &mut out,
        "stepwise_enqueues_refused_total",
        "counter",
        "Enqueue requests refused (429) by the tenant's enqueue rate limit.",
    );
    let _ = writeln!(
        out,
        "stepwise_enqueues_refused_total {}",
        m.enqueues_refused()
    );
    header(
        &mut out,
        "stepwise_module_compilations_total",
        "counter",
        "Components compiled since start; concurrent loads of one module share one.",
    );
    let _ = writeln!(
        out,
        "stepwise_module_compilations_total {}",
        engine.runtime().compilations()
    );
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
        &s.group_sizes,
        1.0,
    );
    histogram(
        &mut out,
        "stepwise_commit_duration_seconds",
        "Time to commit a write transaction, fsync included in immediate mode.",
        &s.commit_latency,
        1e6,
    );
    histogram(
        &mut out,
        "stepwise_step_to_step_seconds",
        "Time between consecutive durable step completions of one attempt: the guest's work \
         between them plus one commit.",
        engine.metrics().step_gaps(),
        1e6,
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
