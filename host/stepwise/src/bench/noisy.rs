//! `noisy`: the noisy-neighbour benchmark. Tenant B runs `steps3` jobs alone, then while
//! tenant A holds hundreds of queued infinite-loop and memory-bomb runs ("hostile"), then alone
//! again, then behind 50,000 of A's queued no-op runs ("backlog"); three rounds, alternating.
//! Reported: B's throughput and p50 in each condition and the contended/solo ratios (target:
//! ≥ 0.8 of solo throughput, p50 within 2× of solo). Between phases A's leftovers are drained,
//! so every solo phase is really alone.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use tokio::task::JoinSet;

use super::report::{Report, round};
use super::workloads::{start_scheduler, stop_scheduler};
use super::{Bench, progress};
use crate::engine::NewRun;
use crate::model::RunStatus;
use crate::policy::PolicyOverrides;

/// The well-behaved tenant.
const B: &str = "b";
/// The noisy one.
const A: &str = "a";
/// Rounds of solo / hostile / solo / backlog.
const ROUNDS: usize = 3;
/// B's jobs per phase from which A's runs are the contract's full numbers.
const FULL_SIZE: usize = 2_000;

/// A's queued infinite loops, and as many memory bombs, in each hostile phase: 150 at the
/// contract's size, scaled down with smaller `--jobs` (the smoke test).
fn hostile_runs(jobs: usize) -> usize {
    if jobs >= FULL_SIZE {
        150
    } else {
        (jobs / 10).max(2)
    }
}

/// A's queued no-op runs in each backlog phase: 50,000 at the contract's size.
fn backlog_runs(jobs: usize) -> usize {
    if jobs >= FULL_SIZE {
        50_000
    } else {
        jobs.saturating_mul(25)
    }
}

/// One phase of B's work: throughput and latency percentiles.
#[derive(Debug, Clone, Copy)]
struct Phase {
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Enqueues `n` runs of `job` for `tenant`, 1000 at a time, each with `overrides`.
async fn enqueue(
    bench: &Bench,
    tenant: &str,
    job: &str,
    n: usize,
    overrides: PolicyOverrides,
) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1_000) {
        let mut set = JoinSet::new();
        for i in start..(start + 1_000).min(n) {
            let engine = bench.engine.clone();
            let req = NewRun {
                tenant: tenant.to_owned(),
                overrides,
                ..NewRun::local(&bench.module, job, json!({ "i": i }).to_string())
            };
            set.spawn(async move { engine.enqueue(req).await });
        }
        while let Some(joined) = set.join_next().await {
            ids.push(joined??.run.id);
        }
    }
    Ok(ids)
}

/// Runs not yet final of `tenant`, from the store's counters.
fn waiting(bench: &Bench, tenant: &str) -> u64 {
    bench
        .redb()
        .and_then(|r| Ok(r.tenant_usage(tenant)?))
        .map_or(u64::MAX, |u| u.waiting_runs)
}

/// B's `steps3` jobs from first enqueue to last completion.
async fn b_phase(bench: &Bench, label: &str) -> Result<Phase> {
    let n = bench.options.jobs;
    let started = Instant::now();
    let ids = enqueue(bench, B, "steps3", n, PolicyOverrides::default()).await?;
    let total = n as u64;
    progress(label, total, || total.saturating_sub(waiting(bench, B))).await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(n);
    for id in &ids {
        let run = bench.redb()?.run(id)?.context("run vanished")?;
        ensure!(
            run.status == RunStatus::Completed,
            "B's run {id} did not complete"
        );
        latencies.push(
            run.finished_at
                .unwrap_or(run.updated_at)
                .saturating_sub(run.created_at),
        );
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(0) as f64
    };
    Ok(Phase {
        jobs_per_s: n as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

/// `component` with a custom section appended: the same handler under a new hash, so the host
/// validates, compiles and describes it again as for a new deployment.
fn fresh_copy(component: &[u8], n: u64) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"stepwise-bench";
    let payload = n.to_le_bytes();
    let mut section = Vec::new();
    leb(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0);
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

/// Milliseconds to deploy a never-seen copy of the bench component (compile + describe).
async fn deploy_ms(bench: &Bench, component: &[u8], n: u64) -> Result<f64> {
    let bytes = fresh_copy(component, n);
    let started = Instant::now();
    bench.engine.deploy(&bytes).await?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Waits until A has nothing left, so the next phase starts clean.
async fn drain_a(bench: &Bench) {
    let started = Instant::now();
    while waiting(bench, A) > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            tracing::warn!("tenant A's runs did not drain within 10 minutes");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mean(phases: &[Phase], f: impl Fn(&Phase) -> f64) -> f64 {
    phases.iter().map(f).sum::<f64>() / phases.len().max(1) as f64
}

pub(crate) async fn noisy(bench: &Bench) -> Result<Report> {
    let (stop, scheduler) = start_scheduler(bench);
    let (commits0, rows0) = bench.redb()?.stats().commit_counts();
    let hog = PolicyOverrides {
        // A few seconds of spinning per attempt, the most memory a bomb may reach.
        fuel: Some(1_000_000_000_000),
        timeout_ms: Some(2_000),
        memory_bytes: Some(128 << 20),
        ..PolicyOverrides::default()
    };
    let (mut solo, mut hostile, mut backlog) = (Vec::new(), Vec::new(), Vec::new());
    // The control path: a deploy alone and with every one of A's slots spinning.
    let component = bench
        .redb()?
        .module(&bench.module)?
        .context("the bench component is stored")?;
    let (mut deploy_solo, mut deploy_hostile) = (Vec::new(), Vec::new());
    let (hogs, idle) = (
        hostile_runs(bench.options.jobs),
        backlog_runs(bench.options.jobs),
    );
    // Warm-up: the first phase compiles nothing but faults in the pool and the caches.
    b_phase(bench, "warm-up").await?;
    for round in 1..=ROUNDS {
        solo.push(b_phase(bench, &format!("round {round}: B alone")).await?);
        deploy_solo.push(deploy_ms(bench, &component, round as u64 * 2).await?);

        enqueue(bench, A, "spin", hogs, hog).await?;
        enqueue(bench, A, "bomb", hogs, hog).await?;
        hostile.push(b_phase(bench, &format!("round {round}: B beside A's hogs")).await?);
        deploy_hostile.push(deploy_ms(bench, &component, round as u64 * 2 + 1).await?);
        drain_a(bench).await;

        solo.push(b_phase(bench, &format!("round {round}: B alone")).await?);

        enqueue(bench, A, "noop", idle, PolicyOverrides::default()).await?;
        backlog.push(b_phase(bench, &format!("round {round}: B behind A's backlog")).await?);
        drain_a(bench).await;
    }
    stop_scheduler(bench, stop, scheduler).await;
    let (commits1, rows1) = bench.redb()?.stats().commit_counts();

    let solo_tps = mean(&solo, |p| p.jobs_per_s);
    let solo_p50 = mean(&solo, |p| p.p50_ms);
    let hostile_tps = mean(&hostile, |p| p.jobs_per_s);
    let backlog_tps = mean(&backlog, |p| p.jobs_per_s);
    let series = |phases: &[Phase], f: fn(&Phase) -> f64| -> Vec<f64> {
        phases.iter().map(|p| round(f(p))).collect()
    };
    let worst = hostile_tps.min(backlog_tps);
    let mut report = Report::new(
        "noisy",
        bench.options.durability,
        bench.options.jobs as u64,
        bench.options.concurrency,
    )
    .commits(commits1 - commits0, rows1 - rows0);
    // The contract's fields carry the worse contended condition.
    report.jobs_per_s = round(worst);
    report.p50_ms = round(mean(&hostile, |p| p.p50_ms).max(mean(&backlog, |p| p.p50_ms)));
    report.p99_ms = round(mean(&hostile, |p| p.p99_ms).max(mean(&backlog, |p| p.p99_ms)));
    let ratio = |x: f64| (x / solo_tps * 100.0).round() / 100.0;
    Ok(report
        .with("solo_jobs_per_s", round(solo_tps))
        .with("hostile_jobs_per_s", round(hostile_tps))
        .with("backlog_jobs_per_s", round(backlog_tps))
        .with("hostile_ratio", ratio(hostile_tps))
        .with("backlog_ratio", ratio(backlog_tps))
        .with("solo_p99_ms", round(mean(&solo, |p| p.p99_ms)))
        .with("solo_p50_ms", round(solo_p50))
        .with("hostile_p50_ms", round(mean(&hostile, |p| p.p50_ms)))
        .with("backlog_p50_ms", round(mean(&backlog, |p| p.p50_ms)))
        .with("solo_series", series(&solo, |p| p.jobs_per_s))
        .with("hostile_series", series(&hostile, |p| p.jobs_per_s))
        .with("backlog_series", series(&backlog, |p| p.jobs_per_s))
        .with(
            "deploy_ms_solo",
            round(deploy_solo.iter().sum::<f64>() / ROUNDS as f64),
        )
        .with(
            "deploy_ms_beside_hogs",
            round(deploy_hostile.iter().sum::<f64>() / ROUNDS as f64),
        )
        .with("hostile_runs_per_phase", (2 * hogs) as u64)
        .with("backlog_runs_per_phase", idle as u64))
}
