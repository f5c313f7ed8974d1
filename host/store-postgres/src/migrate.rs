//! Versioned schema migrations, applied when a host opens the database.
//!
//! Each migration is an SQL file compiled into the binary, numbered from 1. Opening applies
//! the ones the database lacks, in order, in one transaction holding an advisory lock, so
//! hosts starting together apply each exactly once and a failed migration leaves nothing
//! behind. A database migrated by a newer binary (a version this one does not know) is
//! refused with [`StoreError::Schema`] naming both versions: running old code over a newer
//! schema could write what the newer code does not expect.
//!
//! Written by hand rather than with a migration crate: the list is a few constants, and the
//! newer-database refusal and the lock are the part that matters, which those crates leave
//! to the caller anyway.

use stepwise_store::StoreError;
use tokio_postgres::Client;

use crate::io;

/// The migrations, in order: (version, what it does, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "tenants, tokens, modules, queue, egress and secret settings, schedules",
        include_str!("migrations/0001_settings.sql"),
    ),
    (
        2,
        "runs, journals, the ready set and claims, dead letters, keys, events, counters",
        include_str!("migrations/0002_runs.sql"),
    ),
];

/// The schema version this binary writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Key of the advisory lock migrations hold (any constant shared by every host; the bytes of
/// "stepwise").
const LOCK: i64 = 0x7374_6570_7769_7365;

/// Brings the database to [`LATEST`]; returns the versions applied now (empty when it was
/// already there).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let txn = client.transaction().await.map_err(io)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(io)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS stepwise_schema (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(io)?;
    let found: Option<i32> = txn
        .query_one("SELECT max(version) FROM stepwise_schema", &[])
        .await
        .map_err(io)?
        .get(0);
    let found = found.unwrap_or(0);
    if found > LATEST {
        return Err(StoreError::Schema {
            found: found as u64,
            expected: LATEST as u64,
        });
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|(v, ..)| *v > found) {
        txn.batch_execute(sql).await.map_err(|e| {
            StoreError::Io(format!("migration {version} ({description}) failed: {e}"))
        })?;
        txn.execute(
            "INSERT INTO stepwise_schema (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await
        .map_err(io)?;
        applied.push(*version);
    }
    txn.commit().await.map_err(io)?;
    if !applied.is_empty() {
        tracing::info!(from = found, to = LATEST, "PostgreSQL schema migrated");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (version, description, sql)) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(!description.is_empty() && !sql.trim().is_empty());
        }
    }
}
