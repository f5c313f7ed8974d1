//! `stepwise serve`: the long-lived host process. An HTTP JSON API (axum) over the engine,
//! tenant-scoped by bearer tokens, with the scheduler running beside it, `/healthz` and
//! `/metrics`, and a graceful shutdown on SIGINT/SIGTERM that lets in-flight attempts finish.
//! The routes are documented in docs/api.md.

mod auth;
pub mod config;
mod error;
mod events;
mod listener;
mod metrics;
mod openapi;
mod routes;
mod schedule_routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

pub use config::ServeConfig;
pub use openapi::document as openapi_document;
pub use routes::ROUTES;

use stepwise_core::{SeededJitter, SystemClock};
use stepwise_engine::secrets::{KeyText, SecretsConfig};
use stepwise_engine::{Engine, EngineConfig};
use stepwise_runtime::RuntimeConfig;
use stepwise_store::QueueSettings;
use stepwise_store_redb::RedbStore;

/// Command-line options of `stepwise serve`; each overrides the config file.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Data dir (default `./stepwise-data`).
    pub data: Option<PathBuf>,
    /// The store's URL (`postgres://…`); the embedded redb file in the data dir when absent.
    pub store: Option<String>,
    /// Address to listen on (default `127.0.0.1:7070`).
    pub listen: Option<SocketAddr>,
    /// TOML config file.
    pub config: Option<PathBuf>,
    /// The clock the engine runs on; the system clock when absent. Tests drive a real server
    /// process with a clock of their own (the tests package's `stepwise-under-test`).
    pub clock: Option<Arc<dyn stepwise_core::Clock>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("data", &self.data)
            .field("store", &self.store.clone().map(config::StoreUrl))
            .field("listen", &self.listen)
            .field("config", &self.config)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish()
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    admin_token: Option<String>,
    metrics_token: Option<String>,
    max_module_bytes: usize,
    shutting_down: Arc<AtomicBool>,
    /// The API's event streams open now.
    followers: Arc<events::Followers>,
    /// The dashboard's live streams open now, counted apart.
    ui_followers: Arc<events::Followers>,
    /// The dashboard's sessions, which its live streams (served here, beside the API's)
    /// authenticate with.
    ui: stepwise_ui::UiState,
}

impl AppState {
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

fn engine_config(config: &ServeConfig) -> EngineConfig {
    EngineConfig {
        runtime: RuntimeConfig {
            caps: config.caps,
            compile_cache: Some(
                config
                    .compile_cache
                    .clone()
                    .unwrap_or_else(|| config.data.join("compile-cache")),
            ),
            max_instances: u32::try_from(config.concurrency)
                .unwrap_or(u32::MAX)
                .max(16),
            module_cache_bytes: config.module_cache_mb.saturating_mul(1 << 20),
            compile_cache_bytes: config.compile_cache_mb.saturating_mul(1 << 20),
            ..RuntimeConfig::default()
        },
        default_policy: config.default_policy,
        concurrency: config.concurrency.max(1),
        max_payload_bytes: config.max_payload_bytes,
        idempotency_retention_ms: u64::try_from(config.idempotency_retention.as_millis())
            .unwrap_or(u64::MAX),
        journal: config.limits,
        tenants: config.tenant_limits(),
        memory_budget_bytes: config
            .memory_budget_mb
            .map_or_else(stepwise_engine::default_memory_budget, |mb| {
                mb.saturating_mul(1 << 20)
            }),
        egress: config.egress.clone(),
        secrets: SecretsConfig {
            key: config.secrets_key.clone(),
            previous_keys: config.secrets_previous_keys.clone(),
        },
        events: config.events.limits(),
    }
}

/// The API router over `engine`, for running the server inside another program (benchmarks).
pub fn router_for(engine: Engine, admin_token: Option<String>) -> axum::Router {
    routes::router(AppState {
        ui: stepwise_ui::UiState::new(engine.clone(), false),
        engine,
        admin_token,
        metrics_token: None,
        max_module_bytes: ServeConfig::default().max_module_bytes,
        shutting_down: Arc::new(AtomicBool::new(false)),
        followers: Arc::new(events::Followers::new("event streams")),
        ui_followers: Arc::new(events::Followers::new("dashboard live streams")),
    })
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Opens the store the config names: PostgreSQL for a `postgres://` URL, else the embedded
/// redb file in the data dir.
async fn open_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn stepwise_store::Store>> {
    let Some(url) = &config.store else {
        let store = RedbStore::open_with_cache(
            &config.data,
            config.durability,
            config.store_cache_mb << 20,
        )
        .with_context(|| format!("cannot open the data dir {}", config.data.display()))?;
        return Ok(Arc::new(store));
    };
    anyhow::ensure!(
        url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"),
        "store must be a postgres:// URL (or left out for the embedded store), not {url:?}"
    );
    let mut options = stepwise_store_postgres::PgOptions::new(config.postgres.pool_size);
    if let Some(id) = &config.postgres.host_id {
        options.host_id = id.clone();
    }
    options.lease_ms = u64::try_from(config.postgres.lease.as_millis()).unwrap_or(u64::MAX);
    let store = stepwise_store_postgres::PgStore::open_with(&url.0, options)
        .await
        .with_context(|| format!("cannot open the store {url:?}"))?;
    Ok(Arc::new(store))
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let mut config = match &options.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(data) = options.data {
        config.data = data;
    }
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    match (&options.store, std::env::var("STEPWISE_STORE")) {
        (Some(url), _) => config.store = Some(config::StoreUrl(url.clone())),
        (None, Ok(url)) if !url.is_empty() => config.store = Some(config::StoreUrl(url)),
        _ => {}
    }
    if let Ok(token) = std::env::var("STEPWISE_ADMIN_TOKEN")
        && !token.is_empty()
    {
        config.admin_token = Some(token);
    }
    if let Ok(token) = std::env::var("STEPWISE_METRICS_TOKEN")
        && !token.is_empty()
    {
        config.metrics_token = Some(token);
    }
    if let Ok(key) = std::env::var("STEPWISE_SECRETS_KEY")
        && !key.is_empty()
    {
        config.secrets_key = Some(KeyText(key));
    }
    if let Ok(keys) = std::env::var("STEPWISE_SECRETS_PREVIOUS_KEYS")
        && !keys.is_empty()
    {
        config.secrets_previous_keys = keys.split(',').map(|k| KeyText(k.to_owned())).collect();
    }
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("cannot create data dir {}", config.data.display()))?;
    let config_data = std::fs::canonicalize(&config.data)?;
    config.data = config_data;
    let store = open_store(&config).await?;
    let engine = Engine::new(
        store,
        engine_config(&config),
        options
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock)),
        Arc::new(SeededJitter::from_entropy()),
    )
    .await
    .with_context(|| format!("cannot start on the data dir {}", config.data.display()))?;
    engine
        .reseal_secrets()
        .await
        .context("cannot re-seal the stored secrets with the current key")?;
    for q in &config.queues {
        // The file sets the concurrency; a rate limit set over the API stays.
        let settings = QueueSettings {
            concurrency: Some(q.concurrency),
            ..engine.queue_settings(&q.tenant, &q.queue)
        };
        engine.set_queue(&q.tenant, &q.queue, settings).await?;
    }
    // From the counters (no run is read): runs waiting and not claimed by a live host.
    let waiting = engine.store().occupancy().await?.waiting;
    tracing::info!(
        data = %config.data.display(),
        host = %engine.store().host_id(),
        runs_to_resume = waiting,
        "store opened"
    );

    let shutting_down = Arc::new(AtomicBool::new(false));
    let scheduler = {
        let (engine, stop) = (engine.clone(), shutting_down.clone());
        tokio::spawn(async move { engine.run_scheduler(stop).await })
    };
    // Schedules fire here only: `stepwise run` has no schedule loop.
    let schedules = {
        let (engine, stop) = (engine.clone(), shutting_down.clone());
        tokio::spawn(async move { engine.run_schedules(stop).await })
    };
    let sweeper = {
        let (engine, stop) = (engine.clone(), shutting_down.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                match engine.sweep_idempotency().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(keys = n, "expired idempotency keys removed"),
                    Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
                }
                match engine.sweep_events().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "events past their retention removed"),
                    Err(e) => tracing::warn!(error = %e, "event sweep failed"),
                }
            }
        })
    };

    let state = AppState {
        ui: stepwise_ui::UiState::new(engine.clone(), config.dashboard.https_only),
        engine: engine.clone(),
        admin_token: config.admin_token.clone(),
        metrics_token: config.metrics_token.clone(),
        max_module_bytes: config.max_module_bytes,
        shutting_down: shutting_down.clone(),
        followers: Arc::new(events::Followers::new("event streams")),
        ui_followers: Arc::new(events::Followers::new("dashboard live streams")),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.admin_token.is_none() {
        tracing::warn!("no admin token configured: tenants cannot be created");
    }
    tracing::info!("stepwise listening on http://{addr}");

    let on_stop = {
        let (engine, stop) = (engine.clone(), shutting_down.clone());
        async move {
            stop_signal().await;
            tracing::info!("shutting down: finishing in-flight attempts");
            stop.store(true, Ordering::SeqCst);
            engine.wake();
        }
    };
    listener::serve(
        listener,
        routes::router(state),
        config.http,
        on_stop,
        config.shutdown_grace,
    )
    .await;

    sweeper.abort();
    schedules.abort();
    match tokio::time::timeout(config.shutdown_grace, scheduler).await {
        Ok(Ok(Ok(()))) => tracing::info!("all in-flight attempts finished"),
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "scheduler failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "scheduler task panicked"),
        Err(_) => tracing::warn!(
            "in-flight attempts did not finish within the grace period; they resume on restart"
        ),
    }
    drop(engine);
    tracing::info!("stopped");
    Ok(())
}
