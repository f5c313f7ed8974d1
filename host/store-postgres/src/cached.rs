//! Statements prepared once per connection and reused: `tokio-postgres` prepares a statement
//! given as text on every call (a round trip of its own, and a plan), so every query here goes
//! through deadpool's per-connection statement cache instead: one round trip per statement.

use deadpool_postgres::{ClientWrapper, Transaction};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Queries through the connection's statement cache.
pub(crate) trait Cached {
    /// Every row.
    async fn q(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error>;
    /// Exactly one row.
    async fn q1(&self, sql: &str, params: Params<'_>) -> Result<Row, Error>;
    /// At most one row.
    async fn q_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error>;
    /// Rows changed.
    async fn x(&self, sql: &str, params: Params<'_>) -> Result<u64, Error>;
}

macro_rules! cached {
    ($t:ty) => {
        impl Cached for $t {
            async fn q(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
                let statement = self.prepare_cached(sql).await?;
                self.query(&statement, params).await
            }
            async fn q1(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
                let statement = self.prepare_cached(sql).await?;
                self.query_one(&statement, params).await
            }
            async fn q_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
                let statement = self.prepare_cached(sql).await?;
                self.query_opt(&statement, params).await
            }
            async fn x(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
                let statement = self.prepare_cached(sql).await?;
                self.execute(&statement, params).await
            }
        }
    };
}

cached!(ClientWrapper);
cached!(Transaction<'_>);
