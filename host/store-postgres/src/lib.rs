//! # stepwise-store-postgres
//!
//! Stepwise's storage on PostgreSQL (14 or later), for teams that run several `stepwise serve`
//! hosts on one database; the embedded redb file stays the zero-setup default.
//!
//! It implements [`stepwise_store::Store`] and passes the same conformance suite as the
//! embedded store. Where each part lives:
//! - `runs.rs`: creating runs (idempotency and pending keys), writing them over their
//!   versions under their claims' leases, waking waits, purging dead letters;
//! - `reads.rs`: records, journal pages, bounded listings, dead letters, keys;
//! - `journal.rs`: the host's ordered queue of journal writes, many per transaction;
//! - `claims.rs`: claims with `FOR UPDATE SKIP LOCKED`, leases and their renewal, hosts;
//! - `events.rs`, `counters.rs` (insert-only deltas), `settings.rs`, `wakeups.rs`
//!   (`LISTEN/NOTIFY` between hosts), `migrate.rs`, `tx.rs` (transactions tried again after
//!   a deadlock or a lost race).
//!
//! **Why these crates.** `tokio-postgres` is the asynchronous driver most Rust services on
//! PostgreSQL use (`sqlx` builds on the same protocol work but adds compile-time checking that
//! needs a database at build time); `deadpool-postgres` pools its connections.
//!
//! **Shape.** Records are stored as `json` documents of the same types the embedded store
//! keeps (one shape for both backends), beside the key columns that queries need; names sort
//! by their bytes, as in the embedded store.

mod appends;
mod backend;
mod cached;
mod claims;
mod counters;
mod events;
mod journal;
pub mod migrate;
mod reads;
mod runs;
mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod tx;
mod wakeups;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use stepwise_store::StoreError;
use tokio_postgres::NoTls;

pub use claims::{DEFAULT_LEASE_MS, RENEW_EVERY_MS};

/// Connections a host opens for its claims, releases and lease renewals, beside its pool.
const SOFT_POOL_SIZE: usize = 2;

/// Most connections a host's pool opens by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How a host uses the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections the host's pool opens.
    pub pool_size: usize,
    /// This host's id, the holder of its claims; unique among the hosts sharing the database.
    pub host_id: String,
    /// How long a claim lasts unless renewed, in milliseconds.
    pub lease_ms: u64,
}

impl PgOptions {
    /// A pool of `pool_size`, a fresh host id, the default lease.
    pub fn new(pool_size: usize) -> Self {
        Self {
            pool_size,
            host_id: claims::fresh_host_id(),
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

/// A PostgreSQL database holding Stepwise's records, as one host uses it.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    shared: std::sync::Arc<claims::Shared>,
    /// The ordered queue of journal writes; `None` in the store the queue's own task uses.
    journal: journal::Queue,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("connections", &status.size)
            .field("max", &status.max_size)
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`)
    /// with a pool of at most `pool_size` connections, and brings its schema to this binary's
    /// version. A database migrated by a newer binary is refused ([`StoreError::Schema`]).
    pub async fn open(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::open_with(url, PgOptions::new(pool_size)).await
    }

    /// [`PgStore::open`] with every option. Starts the host's upkeep (lease renewal every
    /// [`RENEW_EVERY_MS`], counter folding), which stops when the last clone is dropped.
    pub async fn open_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        // Errors name the database without its password, never the text as given.
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: "the PostgreSQL URL".into(),
            message: format!("not a PostgreSQL URL ({e}); expected postgres://user@host/db"),
        })?;
        let name = describe(&config);
        let open_error = |message: String| StoreError::Open {
            path: name.clone().into(),
            message,
        };
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let mut client = pool.get().await.map_err(|e| open_error(e.to_string()))?;
        migrate::migrate(&mut client).await?;
        drop(client);
        // Claims and releases commit without waiting for the disk (see `claims.rs`).
        let mut soft_config = config.clone();
        let given = soft_config.get_options().unwrap_or_default().to_owned();
        soft_config.options(format!("{given} -c synchronous_commit=off").trim());
        let soft = Pool::builder(Manager::from_config(
            soft_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(SOFT_POOL_SIZE)
        .build()
        .map_err(|e| open_error(e.to_string()))?;
        let shared = std::sync::Arc::new(claims::Shared::new(
            options.host_id,
            options.lease_ms,
            config,
            soft,
        ));
        let queues = journal::start_all(&pool, &shared);
        let store = Self {
            pool,
            shared,
            journal: Some(std::sync::Arc::new(queues)),
        };
        store.heartbeat().await?;
        store.start_upkeep();
        store.start_notifier();
        tracing::info!(host = %store.host_id(), database = %name, "PostgreSQL store opened");
        Ok(store)
    }

    /// This host's id: the holder named on its claims.
    pub fn host_id(&self) -> &str {
        &self.shared.holder
    }

    /// Counts a committed write transaction for [`stepwise_store::CommitStats`].
    pub(crate) fn count_commit(&self, started: std::time::Instant, rows: u64, batches: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.shared.stats;
        stats.commits.fetch_add(1, Relaxed);
        stats.rows.fetch_add(rows, Relaxed);
        stats.batches.fetch_add(batches, Relaxed);
        stats
            .commit_latency
            .observe(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        stats.group_sizes.observe(batches);
    }

    /// A connection whose commits do not wait for the disk (claims, releases, renewals).
    async fn soft_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.shared.soft.get().await.map_err(io)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(io)
    }
}

/// The database a connection config names, without its password, for messages and logs:
/// `postgres://user@host:port/database`.
pub fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or_default(),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

/// A database failure as the storage interface reports it: for an error the server sent,
/// its message and detail (the driver's own text is only "db error").
pub(crate) fn io<E: std::fmt::Display + 'static>(e: E) -> StoreError {
    let any: &dyn std::any::Any = &e;
    if let Some(db) = any
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        return StoreError::Io(format!(
            "PostgreSQL: {} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        ));
    }
    StoreError::Io(e.to_string())
}

/// Decodes a stored JSON document, naming `what` when it is not what this binary expects.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        what: what(),
        message: e.to_string(),
    })
}

/// Decodes a stored JSON document read as text, naming `what` when it is not what this
/// binary expects.
pub(crate) fn decode_text<T: serde::de::DeserializeOwned>(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: what(),
        message: e.to_string(),
    })
}

/// Encodes a record as JSON text, to be stored with a `$n::text::json` cast (one encoding,
/// whose length is what the record is charged).
pub(crate) fn encode_text<T: serde::Serialize>(record: &T) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Io(format!("cannot encode: {e}")))
}

/// Encodes a record as a JSON document.
pub(crate) fn encode<T: serde::Serialize>(record: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(record).map_err(|e| StoreError::Io(format!("cannot encode: {e}")))
}

#[cfg(test)]
mod redaction_tests {
    #[test]
    fn databases_are_named_without_their_password() {
        for url in [
            "postgres://app:s3cret@db:5432/stepwise",
            "postgres://app@db:5432/stepwise?password=s3cret",
            "host=db port=5432 user=app password='s3cret' dbname=stepwise",
        ] {
            let config: tokio_postgres::Config = url.parse().unwrap();
            assert_eq!(super::describe(&config), "postgres://app@db:5432/stepwise");
        }
    }
}
