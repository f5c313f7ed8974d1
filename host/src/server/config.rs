//! The `stepwise serve` config file (TOML). Every field is optional; the defaults are stated on
//! each field and in README.md. Command-line flags override the file; `STEPWISE_ADMIN_TOKEN`
//! overrides `admin_token`.
//!
//! ```toml
//! listen = "127.0.0.1:7070"
//! data = "./stepwise-data"
//! admin_token = "change-me"
//! durability = "immediate"        # or "eventual"
//! store_cache_mb = 64             # most memory the store caches pages in
//! concurrency = 64                # attempts executing at once, all tenants
//! max_module_bytes = 52428800     # 50 MiB
//! max_payload_bytes = 1048576     # 1 MiB
//! idempotency_retention = "24h"   # kept this long after the run ends
//! shutdown_grace = "30s"          # in-flight attempts get this long to finish
//!
//! [default_policy]                # under each job's own defaults
//! max_attempts = 5
//! backoff = { initial_ms = 1000, max_ms = 3600000, multiplier = 2.0, jitter = 0.2 }
//!
//! [caps]                          # no job or enqueue may exceed these
//! max_attempts = 100
//! memory_bytes = 536870912
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

use crate::policy::{Caps, Policy};
use crate::store::Durability;

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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data: PathBuf::from("./stepwise-data"),
            admin_token: None,
            durability: Durability::Immediate,
            store_cache_mb: crate::store::DEFAULT_CACHE_BYTES >> 20,
            concurrency: 64,
            max_module_bytes: 50 << 20,
            max_payload_bytes: 1 << 20,
            idempotency_retention: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(30),
            default_policy: Policy::default(),
            caps: Caps::default(),
            compile_cache: None,
            queues: Vec::new(),
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
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
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
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors() {
        assert!(toml::from_str::<ServeConfig>("concurency = 3").is_err());
        let e = toml::from_str::<ServeConfig>("shutdown_grace = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }
}
