//! The `stepwise serve` config file (TOML). Every field is optional; the defaults are stated on
//! each field and in README.md. Command-line flags override the file; `STEPWISE_ADMIN_TOKEN`
//! overrides `admin_token` and `STEPWISE_METRICS_TOKEN` overrides `metrics_token`.
//!
//! ```toml
//! listen = "127.0.0.1:7070"
//! data = "./stepwise-data"
//! admin_token = "change-me"
//! metrics_token = "scrape-me"     # /metrics shows per-tenant series only with this token
//! store = "postgres://stepwise@db.internal/stepwise"   # default: the redb file in `data`
//! durability = "immediate"        # or "eventual"
//! store_cache_mb = 64             # most memory the store caches pages in
//! concurrency = 64                # attempts executing at once, all tenants
//! max_module_bytes = 52428800     # 50 MiB
//! max_payload_bytes = 1048576     # 1 MiB
//! idempotency_retention = "24h"   # kept this long after the run ends
//! shutdown_grace = "30s"          # in-flight attempts get this long to finish
//! tenant_concurrency = 32         # slots one tenant may hold (default: half of concurrency)
//! memory_budget_mb = 8192         # sum of running attempts' memory caps (default: half of RAM)
//! module_cache_mb = 512           # compiled modules kept loaded (LRU)
//! compile_cache_mb = 1024         # compiled modules kept on disk
//! # 64 hex digits sealing tenants' secrets; make yours with `stepwise secrets keygen`
//! secrets_key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
//! secrets_previous_keys = []      # keys being rotated out (see README, "Secrets")
//!
//! [limits]                        # what one attempt and one run may write
//! max_output_bytes = 1048576      # a step's or the job's output
//! max_error_bytes = 65536         # an error message
//! max_log_bytes = 262144          # log bytes per attempt
//! max_log_lines = 10000           # log lines per attempt
//! max_steps = 10000               # steps and sleeps per run
//! max_journal_bytes = 67108864    # step outputs per run, all together
//!
//! [tenant_defaults]               # quotas of every tenant
//! max_waiting_runs = 100000       # runs not yet final
//! max_modules = 100
//! max_module_bytes_total = 1073741824
//! max_stored_bytes = 10737418240  # records stored by the tenant's runs
//! enqueue_rate = { max = 1000, per = "1s" }   # enqueue requests; 429 past it (default: none)
//!
//! [egress]                        # outbound HTTP of every tenant's guests
//! allow_private = false           # loopback, private, link-local: refused unless true
//! ca_file = "/etc/stepwise/extra-ca.pem"   # trusted beside the Mozilla roots
//!
//! [egress.caps]                   # no tenant's limits may exceed these (per attempt)
//! max_requests = 1000
//! max_response_bytes = 16777216
//!
//! [events]                        # events sent to waiting runs (POST /v1/events)
//! retention = "24h"               # kept this long; a wait reached later still takes it
//! max_payload_bytes = 262144      # 256 KiB
//! max_per_tenant = 100000         # stored at once
//!
//! [postgres]                      # with `store = "postgres://…"` only
//! pool_size = 16                  # connections this host opens at most
//! host_id = "worker-1"            # default: machine name, process id, random part
//! lease = "30s"                   # a claim lapses unless renewed (every third of it)
//!
//! [dashboard]
//! https_only = true               # served over HTTPS only: `__Host-` Secure session cookie
//!
//! [[tenants]]                     # one tenant's overrides
//! name = "acme"
//! concurrency = 48
//! weight = 2
//!
//! [default_policy]                # under each job's own defaults
//! max_attempts = 5
//! backoff = { initial_ms = 1000, max_ms = 3600000, multiplier = 2.0, jitter = 0.2 }
//!
//! [caps]                          # no job or enqueue may exceed these
//! max_attempts = 100
//! memory_bytes = 536870912
//!
//! [http]                          # what one client may hold of the server
//! header_timeout = "10s"          # to send a request's headers; also how long an idle
//!                                 # keep-alive connection is kept
//! request_timeout = "60s"         # to send the body and get the answer
//! max_connections = 1024          # connections open at once; more wait in the backlog
//!
//! [[queues]]
//! tenant = "acme"
//! queue = "emails"
//! concurrency = 4
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Deserializer};

use stepwise_core::policy::{Caps, Policy};
use stepwise_core::rate::RateLimit;
use stepwise_engine::journal::JournalLimits;
use stepwise_engine::secrets::{KeyText, SecretsConfig};
use stepwise_engine::{TenantLimits, TenantSettings};
use stepwise_runtime::egress::EgressConfig;
use stepwise_store::Durability;

/// A queue limit set from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimit {
    /// The tenant owning the queue.
    pub tenant: String,
    /// The queue.
    pub queue: String,
    /// Attempts of this queue executing at once.
    pub concurrency: u32,
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on. Default `127.0.0.1:7070` (loopback only).
    pub listen: SocketAddr,
    /// Data dir. Default `./stepwise-data`.
    pub data: PathBuf,
    /// Token that may create tenants. Default: none (tenant creation disabled) unless
    /// `STEPWISE_ADMIN_TOKEN` is set.
    pub admin_token: Option<String>,
    /// Token that `/metrics` needs to show the series labelled by tenant or queue. Default:
    /// none (only host-wide series are shown) unless `STEPWISE_METRICS_TOKEN` is set.
    pub metrics_token: Option<String>,
    /// Where runs and settings are stored. Default: none, the embedded redb file in `data`;
    /// `postgres://user@host[:port]/database`: a PostgreSQL database shared with other hosts.
    /// `STEPWISE_STORE` overrides it (so a password need not be in the file).
    pub store: Option<StoreUrl>,
    /// The PostgreSQL store's settings. Default: see `PostgresSettings`.
    pub postgres: PostgresSettings,
    /// What an acknowledged write promises. Default `immediate` (fsync before acknowledging).
    pub durability: Durability,
    /// Most memory the store may use to cache pages, in MiB. Default 64.
    pub store_cache_mb: usize,
    /// Attempts executing at once, across all tenants and queues. Default 64.
    pub concurrency: usize,
    /// Largest module upload, in bytes. Default 50 MiB.
    pub max_module_bytes: usize,
    /// Largest job payload, in bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// How long an idempotency key is kept after its run ends. Default 24 h.
    #[serde(deserialize_with = "duration")]
    pub idempotency_retention: Duration,
    /// How long in-flight attempts get to finish on SIGINT/SIGTERM. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// The host's default policy, under each job's own defaults. Default: see `Policy`.
    pub default_policy: Policy,
    /// Hard caps on any policy. Default: see `Caps`.
    pub caps: Caps,
    /// Directory of the compiled-component cache. Default `<data>/compile-cache`.
    pub compile_cache: Option<PathBuf>,
    /// Per-queue concurrency limits (the API can change them later).
    pub queues: Vec<QueueLimit>,
    /// Attempt slots one tenant may hold. Default: half of `concurrency`.
    pub tenant_concurrency: Option<usize>,
    /// Most memory the running attempts may have (the sum of their memory caps), in MiB.
    /// Default: half of the machine's memory.
    pub memory_budget_mb: Option<u64>,
    /// Most compiled modules kept loaded in memory, in MiB. Default 512.
    pub module_cache_mb: u64,
    /// Most compiled modules kept in the on-disk compile cache, in MiB. Default 1024.
    pub compile_cache_mb: u64,
    /// What one attempt and one run may write. Default: see `JournalLimits`.
    pub limits: JournalLimits,
    /// Every tenant's quotas. Default: see `TenantQuotas`.
    pub tenant_defaults: TenantQuotas,
    /// Per-tenant overrides of the slot cap, weight and quotas.
    pub tenants: Vec<TenantOverride>,
    /// Outbound HTTP: private addresses, extra CA, per-attempt caps. Default: see
    /// `EgressConfig` (private addresses refused, caps at the ceiling).
    pub egress: EgressConfig,
    /// The key (64 hex digits) that seals tenants' secrets; `STEPWISE_SECRETS_KEY` overrides
    /// it. Default: none (secrets unavailable).
    pub secrets_key: Option<KeyText>,
    /// Keys being rotated out, still accepted for opening; `STEPWISE_SECRETS_PREVIOUS_KEYS`
    /// (comma-separated) overrides it.
    pub secrets_previous_keys: Vec<KeyText>,
    /// What one client may hold of the server. Default: see `HttpLimits`.
    pub http: HttpLimits,
    /// Event retention and limits. Default: see `EventSettings`.
    pub events: EventSettings,
    /// The dashboard's cookies. Default: see `DashboardSettings`.
    pub dashboard: DashboardSettings,
}

/// A store's URL, shown without its password wherever it is printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.parse::<tokio_postgres::Config>() {
            Ok(config) => f.write_str(&stepwise_store_postgres::describe(&config)),
            Err(_) => f.write_str("(not a PostgreSQL URL)"),
        }
    }
}

/// The PostgreSQL store, from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    /// Most connections this host opens. Default 16; 1 to 1024.
    pub pool_size: usize,
    /// This host's id, the holder named on its claims: unique among the hosts sharing the
    /// database, 1 to 128 letters, digits, `.`, `_` or `-`. Default: the machine's name, the
    /// process id and a random part.
    pub host_id: Option<String>,
    /// How long a claim lasts unless renewed; renewed every third of it. A killed host's runs
    /// are taken over within about a lease and a third. Default 30 s; 1 s to 10 min.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            pool_size: stepwise_store_postgres::DEFAULT_POOL_SIZE,
            host_id: None,
            lease: Duration::from_millis(stepwise_store_postgres::DEFAULT_LEASE_MS),
        }
    }
}

impl PostgresSettings {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=1024).contains(&self.pool_size),
            "postgres.pool_size must be between 1 and 1024"
        );
        anyhow::ensure!(
            self.lease >= Duration::from_secs(1) && self.lease <= Duration::from_secs(600),
            "postgres.lease must be between 1s and 10m"
        );
        if let Some(id) = &self.host_id {
            anyhow::ensure!(
                (1..=128).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "postgres.host_id must be 1 to 128 letters, digits, '.', '_' or '-'"
            );
        }
        Ok(())
    }
}

/// The dashboard, from the config file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// The dashboard is only reached over HTTPS (a TLS-terminating proxy in front): its
    /// session cookie is then `Secure` always and named with the `__Host-` prefix, which
    /// browsers refuse unless it is `Secure`, for `Path=/`, from this very host. Default
    /// false: the cookie is `Secure` only on requests whose `X-Forwarded-Proto` is `https`.
    pub https_only: bool,
}

/// Events sent to waiting runs, from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// How long an event is kept (and a wait reached later may still take it). Default 24 h;
    /// 1 minute to 365 days.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// Largest event payload, in bytes. Default 256 KiB.
    pub max_payload_bytes: usize,
    /// Most events one tenant may have stored. Default 100,000.
    pub max_per_tenant: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        let d = stepwise_engine::EventLimits::default();
        Self {
            retention: Duration::from_millis(d.retention_ms),
            max_payload_bytes: d.max_payload_bytes,
            max_per_tenant: d.max_per_tenant,
        }
    }
}

impl EventSettings {
    /// The engine's limits these settings describe.
    pub fn limits(&self) -> stepwise_engine::EventLimits {
        stepwise_engine::EventLimits {
            retention_ms: u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX),
            max_payload_bytes: self.max_payload_bytes,
            max_per_tenant: self.max_per_tenant,
        }
    }
}

/// The HTTP server's defences: no client holds a connection, a request or a task for longer
/// than these allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Time to send a request's headers, from the connection's start or the end of the
    /// previous answer; so also how long an idle keep-alive connection is kept. Default 10 s.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Time from the end of the headers to the end of the answer: reading the body and
    /// handling the request. Past it the answer is `408 request_timeout`. Default 60 s.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog. Default 1024.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Quotas of every tenant, from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuotas {
    /// Runs not yet final. Default 100,000.
    pub max_waiting_runs: u64,
    /// Modules deployed. Default 100.
    pub max_modules: usize,
    /// Bytes of modules deployed, all together. Default 1 GiB.
    pub max_module_bytes_total: u64,
    /// Bytes of records the tenant's runs may store. Default 10 GiB.
    pub max_stored_bytes: u64,
    /// Enqueue requests per window (`{ max = 100, per = "1s" }`); past it `429` with
    /// `Retry-After`. Default: unlimited.
    pub enqueue_rate: Option<RateSetting>,
}

/// A rate limit in the config file: at most `max` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSetting {
    /// Requests per window, 1 to 100,000.
    pub max: u32,
    /// The sliding window, 1 ms to 24 h.
    #[serde(deserialize_with = "duration")]
    pub per: Duration,
}

impl RateSetting {
    fn limit(self) -> RateLimit {
        RateLimit {
            max: self.max,
            per_ms: u64::try_from(self.per.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Default for TenantQuotas {
    fn default() -> Self {
        let d = TenantLimits::default();
        Self {
            max_waiting_runs: d.max_waiting_runs,
            max_modules: d.max_modules,
            max_module_bytes_total: d.max_module_bytes_total,
            max_stored_bytes: d.max_stored_bytes,
            enqueue_rate: None,
        }
    }
}

/// One tenant's overrides, from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverride {
    /// The tenant.
    pub name: String,
    /// Attempt slots it may hold.
    pub concurrency: Option<usize>,
    /// Its share weight (1-1000; default 1).
    pub weight: Option<u64>,
    /// See [`TenantQuotas::max_waiting_runs`].
    pub max_waiting_runs: Option<u64>,
    /// See [`TenantQuotas::max_modules`].
    pub max_modules: Option<usize>,
    /// See [`TenantQuotas::max_module_bytes_total`].
    pub max_module_bytes_total: Option<u64>,
    /// See [`TenantQuotas::max_stored_bytes`].
    pub max_stored_bytes: Option<u64>,
    /// See [`TenantQuotas::enqueue_rate`].
    pub enqueue_rate: Option<RateSetting>,
}

impl ServeConfig {
    /// The per-tenant limits these settings describe.
    pub fn tenant_limits(&self) -> TenantLimits {
        let d = &self.tenant_defaults;
        TenantLimits {
            concurrency: self.tenant_concurrency,
            max_waiting_runs: d.max_waiting_runs,
            max_modules: d.max_modules,
            max_module_bytes_total: d.max_module_bytes_total,
            max_stored_bytes: d.max_stored_bytes,
            enqueue_rate: d.enqueue_rate.map(RateSetting::limit),
            overrides: self
                .tenants
                .iter()
                .map(|t| {
                    let settings = TenantSettings {
                        concurrency: t.concurrency,
                        weight: t.weight,
                        max_waiting_runs: t.max_waiting_runs,
                        max_modules: t.max_modules,
                        max_module_bytes_total: t.max_module_bytes_total,
                        max_stored_bytes: t.max_stored_bytes,
                        enqueue_rate: t.enqueue_rate.map(RateSetting::limit),
                    };
                    (t.name.clone(), settings)
                })
                .collect(),
        }
    }

    /// Refuses settings no host could run with, naming the key.
    fn check(&self) -> anyhow::Result<()> {
        self.default_policy
            .backoff
            .check()
            .context("default_policy")?;
        anyhow::ensure!(self.concurrency >= 1, "concurrency must be at least 1");
        self.postgres.check()?;
        let rates = std::iter::once(("tenant_defaults", self.tenant_defaults.enqueue_rate)).chain(
            self.tenants
                .iter()
                .map(|t| (t.name.as_str(), t.enqueue_rate)),
        );
        for (whose, rate) in rates {
            if let Some(rate) = rate {
                rate.limit()
                    .validate()
                    .map_err(|e| anyhow::anyhow!("enqueue_rate of {whose}: {e}"))?;
            }
        }
        self.egress.check().map_err(anyhow::Error::msg)?;
        SecretsConfig {
            key: self.secrets_key.clone(),
            previous_keys: self.secrets_previous_keys.clone(),
        }
        .keys()?;
        anyhow::ensure!(
            self.tenant_concurrency != Some(0),
            "tenant_concurrency must be at least 1"
        );
        for t in &self.tenants {
            anyhow::ensure!(
                t.concurrency != Some(0),
                "tenants.{}: concurrency must be at least 1",
                t.name
            );
            anyhow::ensure!(
                t.weight.is_none_or(|w| (1..=1_000).contains(&w)),
                "tenants.{}: weight must be between 1 and 1000",
                t.name
            );
        }
        let http = &self.http;
        for (name, d) in [
            ("http.header_timeout", http.header_timeout),
            ("http.request_timeout", http.request_timeout),
        ] {
            anyhow::ensure!(
                d >= Duration::from_millis(100) && d <= Duration::from_secs(3600),
                "{name} must be between 100ms and 1h"
            );
        }
        anyhow::ensure!(
            (1..=1_000_000).contains(&http.max_connections),
            "http.max_connections must be between 1 and 1000000"
        );
        let events = &self.events;
        anyhow::ensure!(
            events.retention >= Duration::from_secs(60)
                && events.retention <= Duration::from_millis(stepwise_core::policy::MAX_DELAY_MS),
            "events.retention must be between 1m and 365 days"
        );
        anyhow::ensure!(
            (1..=16 << 20).contains(&events.max_payload_bytes),
            "events.max_payload_bytes must be between 1 and 16777216"
        );
        Ok(())
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data: PathBuf::from("./stepwise-data"),
            admin_token: None,
            metrics_token: None,
            store: None,
            postgres: PostgresSettings::default(),
            durability: Durability::Immediate,
            store_cache_mb: stepwise_store_redb::DEFAULT_CACHE_BYTES >> 20,
            concurrency: 64,
            max_module_bytes: 50 << 20,
            max_payload_bytes: 1 << 20,
            idempotency_retention: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(30),
            default_policy: Policy::default(),
            caps: Caps::default(),
            compile_cache: None,
            queues: Vec::new(),
            tenant_concurrency: None,
            memory_budget_mb: None,
            module_cache_mb: 512,
            compile_cache_mb: 1024,
            limits: JournalLimits::default(),
            tenant_defaults: TenantQuotas::default(),
            tenants: Vec::new(),
            egress: EgressConfig::default(),
            secrets_key: None,
            secrets_previous_keys: Vec::new(),
            http: HttpLimits::default(),
            events: EventSettings::default(),
            dashboard: DashboardSettings::default(),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a duration: {e}")))
}

impl ServeConfig {
    /// Reads a config file; unknown keys are errors, so a typo never goes unnoticed.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c: ServeConfig = toml::from_str("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.idempotency_retention, Duration::from_secs(86_400));
        assert_eq!(c.durability, Durability::Immediate);
        assert_eq!(c.default_policy, Policy::default());
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let c: ServeConfig = toml::from_str(&example).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("change-me"));
        assert_eq!(c.default_policy.backoff.initial_ms, 1000);
        assert_eq!(c.caps.max_attempts, 100);
        assert_eq!(c.queues[0].concurrency, 4);
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.limits.max_log_lines, 10_000);
        let limits = c.tenant_limits();
        assert_eq!(limits.concurrency_of("acme", 64), 48);
        assert_eq!(limits.weight_of("acme"), 2);
        assert_eq!(limits.concurrency_of("other", 64), 32);
        assert!(c.check().is_ok());
    }

    #[test]
    fn nan_backoffs_and_zero_caps_are_refused() {
        let c: ServeConfig = toml::from_str("[default_policy.backoff]\nmultiplier = nan").unwrap();
        let e = format!("{:#}", c.check().unwrap_err());
        assert!(e.contains("backoff.multiplier"), "{e}");
        let c: ServeConfig = toml::from_str("[[tenants]]\nname = \"a\"\nweight = 0").unwrap();
        assert!(c.check().is_err());
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors() {
        assert!(toml::from_str::<ServeConfig>("concurency = 3").is_err());
        let e = toml::from_str::<ServeConfig>("shutdown_grace = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }
}
