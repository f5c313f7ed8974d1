//! `stepwise bench`: the benchmark workloads of the benchmark contract (see README.md), each in
//! a fresh data dir, printing one JSON line on stdout and progress on stderr.
//!
//! Every workload runs real wasm components built from `examples/bench-jobs` through the same
//! engine, store and scheduler as `stepwise serve`; nothing is simulated.

mod native_jobs;
mod noisy;
mod report;
mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use report::{CONTRACT_FIELDS, Report};

use crate::Durability;
use crate::engine::{Engine, EngineConfig};
use crate::runtime::RuntimeConfig;
use crate::store::RedbStore;
use crate::{SeededJitter, SystemClock};
use stepwise_store::Store;
use stepwise_store_postgres::PgStore;

/// The workloads, by name.
pub const WORKLOADS: [&str; 8] = [
    "noop",
    "steps3",
    "retry10",
    "enqueue_idem",
    "replay1000",
    "instantiate",
    "sleepers",
    "noisy",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// One of [`WORKLOADS`].
    pub workload: String,
    /// Jobs (or iterations) to run.
    pub jobs: usize,
    /// Attempts executing at once.
    pub concurrency: usize,
    /// Commit durability.
    pub durability: Durability,
    /// Store page cache, in MiB.
    pub cache_mb: usize,
    /// Data dir (default: a fresh temporary dir, removed afterwards).
    pub data: Option<PathBuf>,
    /// The bench-jobs component (default: built from `examples/bench-jobs`).
    pub component: Option<PathBuf>,
    /// Run the same job logic as a native handler instead of the component.
    pub native: bool,
    /// A PostgreSQL database (`postgres://…`, empty) instead of the embedded store.
    pub store: Option<String>,
    /// Hosts (engines, each with its own connection pool and host id) sharing the database.
    pub hosts: usize,
}

/// The workloads that run on PostgreSQL.
pub const POSTGRES_WORKLOADS: [&str; 3] = ["noop", "steps3", "retry10"];

/// Builds `examples/bench-jobs` for wasm32-wasip2 with plain cargo; returns the component.
pub fn build_component() -> Result<PathBuf> {
    crate::examples::build("example-bench-jobs")
}

/// A fresh engine on its own data dir, with the bench component deployed.
pub(crate) struct Bench {
    pub(crate) engine: Engine,
    /// The engine's store.
    pub(crate) store: Arc<dyn Store>,
    /// The same store when it is the embedded one, for the workloads that read its file.
    redb: Option<Arc<RedbStore>>,
    /// More hosts on the same PostgreSQL database, each running its own scheduler.
    pub(crate) others: Vec<Engine>,
    pub(crate) module: String,
    pub(crate) options: BenchOptions,
    _dir: Option<tempfile::TempDir>,
}

impl Bench {
    async fn open(options: &BenchOptions) -> Result<Self> {
        let (dir, path) = match &options.data {
            Some(p) => {
                if p.join("stepwise.redb").exists() {
                    bail!(
                        "{} already holds a store; benchmarks need a fresh data dir",
                        p.display()
                    );
                }
                (None, p.clone())
            }
            None => {
                let d = tempfile::Builder::new()
                    .prefix("stepwise-bench-")
                    .tempdir()?;
                let p = d.path().to_owned();
                (Some(d), p)
            }
        };
        let config = EngineConfig {
            concurrency: options.concurrency.max(1),
            runtime: RuntimeConfig {
                compile_cache: Some(path.join("compile-cache")),
                max_instances: (options.concurrency as u32).max(16),
                ..RuntimeConfig::default()
            },
            // One tenant: it may use every slot. `noisy` has two and keeps the default
            // caps (half the slots each), as `stepwise serve` does.
            tenants: crate::engine::TenantLimits {
                concurrency: (options.workload != "noisy").then_some(options.concurrency.max(1)),
                ..Default::default()
            },
            ..EngineConfig::default()
        };
        let (store, redb): (Arc<dyn Store>, _) = match &options.store {
            Some(url) => (Arc::new(open_postgres(url, options).await?), None),
            None => {
                let redb = Arc::new(RedbStore::open_with_cache(
                    &path,
                    options.durability,
                    options.cache_mb << 20,
                )?);
                (redb.clone(), Some(redb))
            }
        };
        let engine = Engine::new(
            store.clone(),
            config.clone(),
            Arc::new(SystemClock),
            Arc::new(SeededJitter::from_entropy()),
        )
        .await?;
        let mut others = Vec::new();
        if let Some(url) = &options.store {
            for _ in 1..options.hosts.max(1) {
                let other = Engine::new(
                    Arc::new(open_postgres(url, options).await?),
                    config.clone(),
                    Arc::new(SystemClock),
                    Arc::new(SeededJitter::from_entropy()),
                )
                .await?;
                others.push(other);
            }
        }
        let module = if options.native {
            engine.register_native("bench-jobs", Arc::new(native_jobs::BenchJobs))
        } else {
            let component = match &options.component {
                Some(c) => c.clone(),
                None => build_component()?,
            };
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            engine.deploy(&bytes).await?.hash.clone()
        };
        Ok(Self {
            engine,
            store,
            redb,
            others,
            module,
            options: options.clone(),
            _dir: dir,
        })
    }
}

impl Bench {
    /// The embedded store, for the workloads that read its file directly.
    pub(crate) fn redb(&self) -> Result<&RedbStore> {
        self.redb
            .as_deref()
            .context("this workload runs on the embedded store only")
    }

    /// Every host's engine: this one and the others on the same database.
    pub(crate) fn engines(&self) -> impl Iterator<Item = &Engine> {
        std::iter::once(&self.engine).chain(&self.others)
    }

    /// (commits, rows) over every host so far.
    pub(crate) fn commit_counts(&self) -> (u64, u64) {
        self.engines()
            .map(|e| e.store().stats().commit_counts())
            .fold((0, 0), |(c, r), (c1, r1)| (c + c1, r + r1))
    }

    /// Microseconds spent in commits over every host so far.
    pub(crate) fn commit_micros(&self) -> u64 {
        self.engines()
            .map(|e| e.store().stats().commit_latency.sum())
            .sum()
    }
}

/// A PostgreSQL store for the bench: an empty database (a benchmark needs a fresh store).
async fn open_postgres(url: &str, options: &BenchOptions) -> Result<PgStore> {
    let store = PgStore::open(url, options.concurrency.clamp(4, 64)).await?;
    let census = Store::census(&store).await?;
    if !census.runs.is_empty() {
        bail!("the database already holds runs; benchmarks need an empty one");
    }
    Ok(store)
}

/// Prints `done/total` on stderr about once a second until `done()` reaches `total`.
pub(crate) async fn progress(label: &str, total: u64, done: impl Fn() -> u64) {
    let started = Instant::now();
    let mut last = Instant::now();
    loop {
        let n = done();
        if n >= total {
            break;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "{label}: {n}/{total} after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs one workload and returns its report.
pub async fn run(options: BenchOptions) -> Result<Report> {
    if !WORKLOADS.contains(&options.workload.as_str()) {
        bail!(
            "unknown workload '{}': use one of {}",
            options.workload,
            WORKLOADS.join(", ")
        );
    }
    if options.native
        && matches!(
            options.workload.as_str(),
            "instantiate" | "enqueue_idem" | "noisy"
        )
    {
        bail!(
            "'{}' has no native variant: it measures the {}",
            options.workload,
            match options.workload.as_str() {
                "instantiate" => "sandbox itself",
                "noisy" => "sandbox's isolation of hostile guests",
                _ => "HTTP API, which only serves components",
            }
        );
    }
    if options.store.is_some() && !POSTGRES_WORKLOADS.contains(&options.workload.as_str()) {
        bail!(
            "'{}' runs on the embedded store only; on PostgreSQL: {}",
            options.workload,
            POSTGRES_WORKLOADS.join(", ")
        );
    }
    if options.hosts > 1 && options.store.is_none() {
        bail!("--hosts needs --store postgres://…: the embedded store has one host");
    }
    let bench = Bench::open(&options).await?;
    let report = match options.workload.as_str() {
        "noop" => workloads::jobs(&bench, "noop").await,
        "steps3" => workloads::jobs(&bench, "steps3").await,
        "retry10" => workloads::jobs(&bench, "retry10").await,
        "enqueue_idem" => workloads::enqueue_idem(&bench).await,
        "replay1000" => workloads::replay(&bench).await,
        "instantiate" => workloads::instantiate(&bench).await,
        "sleepers" => workloads::sleepers(&bench).await,
        "noisy" => noisy::noisy(&bench).await,
        _ => unreachable!("checked above"),
    }?;
    Ok(Report {
        handler: if options.native { "native" } else { "wasm" },
        ..report
    }
    .with("cache_mb", options.cache_mb as u64)
    .with(
        "store",
        if options.store.is_some() {
            "postgres"
        } else {
            "redb"
        },
    )
    .with("hosts", options.hosts.max(1) as u64))
}
