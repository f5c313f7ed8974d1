//! The workloads. Each measures from the first enqueue to the last completion, and takes the
//! storage figures (commits, rows per commit) as deltas over the workload alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use tokio::task::JoinSet;

use super::report::{Report, round};
use super::{Bench, progress};
use crate::engine::NewRun;
use crate::model::{EventKind, RunStatus};
use crate::runtime::JobContext;

/// Enqueue batches: the contract enqueues in batches of 1000.
const BATCH: usize = 1_000;

/// Starts the scheduler in the background; setting the flag (and waking) stops it.
pub(super) fn start_scheduler(bench: &Bench) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    start_engine(&bench.engine)
}

/// Starts `engine`'s scheduler in the background; setting the flag (and waking) stops it.
fn start_engine(engine: &crate::engine::Engine) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (engine, flag) = (engine.clone(), stop.clone());
    let handle = tokio::spawn(async move {
        if let Err(e) = engine.run_scheduler(flag).await {
            tracing::error!(error = %e, "scheduler failed");
        }
    });
    (stop, handle)
}

pub(super) async fn stop_scheduler(
    bench: &Bench,
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
) {
    stop.store(true, Ordering::SeqCst);
    bench.engine.wake();
    let _ = handle.await;
}

/// Enqueues `n` runs of `job` (payload `{"i": index}`) in concurrent batches of 1000.
async fn enqueue_all(
    bench: &Bench,
    job: &str,
    n: usize,
    payload: impl Fn(usize) -> serde_json::Value,
) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + BATCH).min(n);
        let mut set = JoinSet::new();
        for i in start..end {
            let engine = bench.engine.clone();
            let req = NewRun::local(&bench.module, job, payload(i).to_string());
            set.spawn(async move { (i, engine.enqueue(req).await) });
        }
        let mut batch = vec![String::new(); end - start];
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined?;
            batch[i - start] = result?.run.id;
        }
        ids.extend(batch);
        start = end;
    }
    Ok(ids)
}

/// `noop`, `steps3`, `retry10`: N jobs through the scheduler.
pub(crate) async fn jobs(bench: &Bench, job: &str) -> Result<Report> {
    let engine = &bench.engine;
    let n = bench.options.jobs;
    let schedulers: Vec<_> = bench.engines().map(start_engine).collect();
    let (commits0, rows0) = bench.commit_counts();
    let commit_micros0 = bench.commit_micros();
    let finished = || -> u64 { bench.engines().map(|e| e.metrics().runs_finished()).sum() };
    let finished0 = finished();
    let started = Instant::now();
    let ids = enqueue_all(bench, job, n, |i| json!({"i": i})).await?;
    let label = format!("{job} (c={})", bench.options.concurrency);
    progress(&label, n as u64, || finished() - finished0).await;
    let elapsed = started.elapsed();
    let (commits1, rows1) = bench.commit_counts();
    let commit_micros = bench.commit_micros() - commit_micros0;
    for (engine, (stop, handle)) in bench.engines().zip(schedulers) {
        stop.store(true, Ordering::SeqCst);
        engine.wake();
        let _ = handle.await;
    }

    let mut latencies = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut repeated = 0u64;
    let mut second_step_runs = 0u64;
    for id in &ids {
        let run = bench.store.run(id).await?.context("run vanished")?;
        if run.status != RunStatus::Completed {
            failed += 1;
        }
        latencies.push(
            run.finished_at
                .unwrap_or(run.updated_at)
                .saturating_sub(run.created_at) as f64,
        );
        if job == "retry10" {
            let (logs, _) = bench.store.logs_page(id, 0, usize::MAX).await?;
            let count = |m: &str| logs.iter().filter(|l| l.message == m).count() as u64;
            repeated += count("exec one").saturating_sub(1) + count("exec three").saturating_sub(1);
            second_step_runs += count("exec two");
        }
    }
    ensure!(failed == 0, "{failed} of {n} jobs did not complete");
    let mut report = Report::new(
        job,
        bench.options.durability,
        n as u64,
        bench.options.concurrency,
    )
    .commits(commits1 - commits0, rows1 - rows0)
    .latencies(latencies);
    report.jobs_per_s = round(n as f64 / elapsed.as_secs_f64());
    // Share of the wall time the one writer thread spent committing (fsync included): near
    // 100 %, the writer is the bound.
    // (PostgreSQL commits many transactions at once, so the share has no meaning there.)
    if bench.store.host_id() == "local" {
        report = report.with(
            "writer_busy_pct",
            round(commit_micros as f64 / elapsed.as_micros() as f64 * 100.0),
        );
    }
    if let Some(bound) = engine.metrics().step_gaps().median_bound() {
        // From the engine's histogram: the bucket bound the median gap falls under.
        report = report.with("step_to_step_p50_ms_at_most", bound as f64 / 1e3);
    }
    if job == "retry10" {
        report = report
            .with("completed_steps_run_twice", repeated)
            .with("second_step_executions", second_step_runs)
            .with(
                "expected_second_step_executions",
                (n + n.div_ceil(10)) as u64,
            );
    }
    Ok(report.with("wall_s", round(elapsed.as_secs_f64())))
}

/// `replay1000`: a run with N completed steps is resumed; how long until it is back past them.
pub(crate) async fn replay(bench: &Bench) -> Result<Report> {
    let engine = &bench.engine;
    let steps = bench.options.jobs;
    let (stop, scheduler) = start_scheduler(bench);
    let (commits0, rows0) = bench.redb()?.stats().commit_counts();
    let id = engine
        .enqueue(NewRun::local(
            &bench.module,
            "replay",
            json!({"steps": steps, "pause_ms": 1}).to_string(),
        ))
        .await?
        .run
        .id;
    let finished0 = engine.metrics().runs_finished();
    progress("replay", 1, || engine.metrics().runs_finished() - finished0).await;
    stop_scheduler(bench, stop, scheduler).await;
    let (commits1, rows1) = bench.redb()?.stats().commit_counts();
    let view = engine.view(&id).await?;
    ensure!(
        view.run.status == RunStatus::Completed,
        "the replay run did not complete: {:?}",
        view.run.error
    );
    let started = view
        .timeline
        .iter()
        .find(|t| t.kind == EventKind::AttemptStarted && t.attempt == Some(2))
        .context("no second attempt")?;
    let done = view.timeline.last().context("empty timeline")?;
    let first = view
        .timeline
        .iter()
        .find(|t| t.kind == EventKind::AttemptStarted && t.attempt == Some(1))
        .context("no first attempt")?;
    let replay_ms = done.at.saturating_sub(started.at) as f64;
    let first_ms = started.at.saturating_sub(first.at) as f64;
    Ok(Report::new("replay1000", bench.options.durability, 1, 1)
        .commits(commits1 - commits0, rows1 - rows0)
        .latencies(vec![replay_ms])
        .with("steps", steps as u64)
        .with("replay_ms", replay_ms)
        .with("first_attempt_ms", first_ms)
        .with(
            "note",
            "replay_ms: resumed attempt start to completion, timeline ms resolution",
        ))
}

/// `instantiate`: µs per fresh instance + one call of a trivial job, sequentially.
pub(crate) async fn instantiate(bench: &Bench) -> Result<Report> {
    let engine = &bench.engine;
    let n = bench.options.jobs.max(1);
    let module = engine.module(&bench.module).await?;
    let policy = engine.config().default_policy;
    // Warm up: the first instances fault in the pooling allocator's memory.
    for _ in 0..100 {
        call_noop(engine, &module, &policy).await?;
    }
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call_noop(engine, &module, &policy).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = started.elapsed();
    let us = elapsed.as_secs_f64() * 1e6 / n as f64;
    let mut report =
        Report::new("instantiate", bench.options.durability, n as u64, 1).latencies(latencies);
    report.jobs_per_s = round(n as f64 / elapsed.as_secs_f64());
    Ok(report.with("us_per_instance", round(us)))
}

async fn call_noop(
    engine: &crate::engine::Engine,
    module: &crate::runtime::LoadedModule,
    policy: &crate::policy::Policy,
) -> Result<()> {
    // The run is never stored: the sandbox's fixed cost is measured without the store's reads.
    let journal = engine.empty_journal("bench-instantiate", 1);
    let ctx = JobContext {
        run_id: "bench-instantiate".into(),
        job: "noop".into(),
        attempt: 1,
    };
    let (report, _) = engine
        .runtime()
        .execute(
            module,
            journal,
            policy,
            "bench",
            None,
            ctx,
            "{\"i\":1}".into(),
            crate::runtime::CancelFlag::default(),
        )
        .await;
    match report.outcome {
        crate::runtime::AttemptOutcome::Completed(_) => Ok(()),
        other => bail!("noop did not complete: {other:?}"),
    }
}

/// Resident memory of this process, from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `sleepers`: N runs each sleeping durably; memory and disk while they wait, and how late
/// they wake.
pub(crate) async fn sleepers(bench: &Bench) -> Result<Report> {
    let engine = &bench.engine;
    let n = bench.options.jobs;
    // Long enough that every run is asleep before the first wakes, even one at a time.
    let sleep_ms = 5_000 + n as u64;
    let rss0 = rss_bytes().unwrap_or(0);
    let (stop, scheduler) = start_scheduler(bench);
    let (commits0, rows0) = bench.redb()?.stats().commit_counts();
    let started = Instant::now();
    let attempts0 = engine.metrics().attempts();
    // Counted from before the first enqueue: an early run may wake before the last one sleeps.
    let finished0 = engine.metrics().runs_finished();
    let ids = enqueue_all(bench, "sleeper", n, |_| json!({"ms": sleep_ms})).await?;
    progress("sleepers asleep", n as u64, || {
        engine.metrics().attempts() - attempts0
    })
    .await;
    let asleep_after = started.elapsed();
    let rss_sleeping = rss_bytes().unwrap_or(0);
    let disk = std::fs::metadata(bench.redb()?.path())
        .map(|m| m.len())
        .unwrap_or(0);
    let sleeping_now = AtomicU64::new(0);
    for id in &ids {
        if bench
            .redb()?
            .run(id)?
            .is_some_and(|r| r.status == RunStatus::Sleeping)
        {
            sleeping_now.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress("sleepers woken", n as u64, || {
        engine.metrics().runs_finished() - finished0
    })
    .await;
    let elapsed = started.elapsed();
    let (commits1, rows1) = bench.redb()?.stats().commit_counts();
    stop_scheduler(bench, stop, scheduler).await;

    let mut lateness = Vec::with_capacity(n);
    for id in &ids {
        let run = bench.redb()?.run(id)?.context("run vanished")?;
        ensure!(
            run.status == RunStatus::Completed,
            "run {id} did not complete"
        );
        let wake_at = bench
            .redb()?
            .steps(id)?
            .into_iter()
            .find_map(|s| s.wake_at)
            .context("no timer recorded")?;
        lateness.push(run.finished_at.unwrap_or(0).saturating_sub(wake_at) as f64);
    }
    let mut sorted = lateness.clone();
    sorted.sort_by(f64::total_cmp);
    let max_late = sorted.last().copied().unwrap_or(0.0);
    let mut report = Report::new(
        "sleepers",
        bench.options.durability,
        n as u64,
        bench.options.concurrency,
    )
    .commits(commits1 - commits0, rows1 - rows0)
    .latencies(lateness);
    report.jobs_per_s = round(n as f64 / elapsed.as_secs_f64());
    Ok(report
        .with("sleep_ms", sleep_ms)
        .with("all_asleep_after_s", round(asleep_after.as_secs_f64()))
        .with(
            "sleeping_at_measurement",
            sleeping_now.load(Ordering::Relaxed),
        )
        .with(
            "rss_bytes_per_sleeper",
            round(rss_sleeping.saturating_sub(rss0) as f64 / n as f64),
        )
        .with("disk_bytes_per_sleeper", round(disk as f64 / n as f64))
        .with("max_wake_lateness_ms", max_late)
        .with(
            "note",
            "p50_ms/p99_ms: wake lateness (completion minus timer due time)",
        ))
}

/// `enqueue_idem`: N enqueues one at a time through the HTTP API on loopback, each with an
/// idempotency key; then the same N again, which must create nothing.
pub(crate) async fn enqueue_idem(bench: &Bench) -> Result<Report> {
    let engine = &bench.engine;
    let n = bench.options.jobs;
    let tenant = engine.create_tenant("bench").await?;
    let bytes_path = match &bench.options.component {
        Some(c) => c.clone(),
        None => super::build_component()?,
    };
    engine
        .deploy_for("bench", &std::fs::read(bytes_path)?)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = crate::server::router_for(engine.clone(), None);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let (commits0, rows0) = bench.redb()?.stats().commit_counts();

    let mut passes = Vec::new();
    let mut latencies = Vec::with_capacity(n);
    for pass in 0..2 {
        let started = Instant::now();
        let mut created = 0u64;
        for i in 0..n {
            let t = Instant::now();
            let answer = client
                .post(format!("{url}/v1/queues/bench/jobs"))
                .bearer_auth(&tenant.token)
                .json(&json!({"job": "noop", "payload": {"i": i}, "idempotency_key": format!("k{i}")}))
                .send()
                .await?;
            let status = answer.status().as_u16();
            ensure!(status == 200 || status == 201, "enqueue answered {status}");
            created += u64::from(status == 201);
            if pass == 0 {
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            if i % 1000 == 999 {
                eprintln!("enqueue_idem pass {}: {}/{n}", pass + 1, i + 1);
            }
        }
        passes.push((n as f64 / started.elapsed().as_secs_f64(), created));
    }
    server.abort();
    let (commits1, rows1) = bench.redb()?.stats().commit_counts();
    ensure!(
        passes[1].1 == 0,
        "the second pass created {} runs",
        passes[1].1
    );
    let mut report = Report::new("enqueue_idem", bench.options.durability, n as u64, 1)
        .commits(commits1 - commits0, rows1 - rows0)
        .latencies(latencies);
    report.jobs_per_s = round(passes[0].0);
    Ok(report
        .with("first_pass_enqueues_per_s", round(passes[0].0))
        .with("second_pass_enqueues_per_s", round(passes[1].0))
        .with("created_first_pass", passes[0].1)
        .with("created_second_pass", passes[1].1)
        .with(
            "note",
            "the scheduler is not running: this measures enqueue alone",
        ))
}
