//! The counters ([`stepwise_store::counters`]) on PostgreSQL, kept as deltas: every write
//! inserts its changes as new rows instead of updating one row per counter, so concurrent
//! transactions of one tenant (on one host or several) never queue on a hot row's lock while
//! each waits for its commit to reach disk. Readers add the rows up; a fold run twice a
//! second ([`PgStore::fold_counters`]) replaces each counter's rows with their sum, so a
//! read adds up at most the rows written since the last fold.

use std::collections::BTreeMap;

use deadpool_postgres::Transaction;
use stepwise_core::model::RunStatus;
use stepwise_store::counters::{add_to_census, add_to_usage};
use stepwise_store::{Census, StoreError, TenantUsage};

use crate::cached::Cached;
use crate::tx::TxResult;
use crate::{PgStore, io};

/// Changes to counters made by one transaction, by (tenant, queue, counter).
#[derive(Debug, Default)]
pub(crate) struct Deltas(BTreeMap<(String, String, &'static str), i64>);

impl Deltas {
    /// Adds `by` to a counter.
    pub fn add(&mut self, tenant: &str, queue: &str, counter: &'static str, by: i64) {
        if by != 0 {
            *self
                .0
                .entry((tenant.to_owned(), queue.to_owned(), counter))
                .or_default() += by;
        }
    }

    /// Moves one run of a queue from status `from` (none for a new run) to `to` (none for
    /// a deleted run).
    pub fn moved(
        &mut self,
        tenant: &str,
        queue: &str,
        from: Option<RunStatus>,
        to: Option<RunStatus>,
    ) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            self.add(tenant, queue, from.as_str(), -1);
        }
        if let Some(to) = to {
            self.add(tenant, queue, to.as_str(), 1);
        }
    }

    /// Writes the changes as rows of the counters table, in one statement.
    pub async fn write(self, txn: &Transaction<'_>) -> TxResult<()> {
        let (mut tenants, mut queues, mut counters, mut ns) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((t, q, c), n) in self.0 {
            if n != 0 {
                tenants.push(t);
                queues.push(q);
                counters.push(c.to_owned());
                ns.push(n);
            }
        }
        if tenants.is_empty() {
            return Ok(());
        }
        txn.x(
            "INSERT INTO counters (tenant, queue, counter, n)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])",
            &[&tenants, &queues, &counters, &ns],
        )
        .await?;
        Ok(())
    }
}

impl PgStore {
    /// The counters `filter` (an SQL condition on `tenant` and `queue` taking `$1`, `$2`)
    /// selects, summed, as (tenant, queue, counter, value).
    async fn counter_rows(
        &self,
        filter: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let sql = format!(
            "SELECT tenant, queue, counter, sum(n)::bigint FROM counters WHERE {filter}
             GROUP BY tenant, queue, counter"
        );
        let rows = self.client().await?.q(&sql, params).await.map_err(io)?;
        Ok(rows
            .iter()
            .map(|r| {
                let n: i64 = r.get(3);
                (r.get(0), r.get(1), r.get(2), u64::try_from(n).unwrap_or(0))
            })
            .collect())
    }

    fn census_of(rows: Vec<(String, String, String, u64)>) -> Census {
        let mut census = Census::default();
        for (t, q, c, n) in rows {
            if n > 0 {
                add_to_census(&mut census, &t, &q, &c, n);
            }
        }
        census
    }

    /// Counts over every run.
    pub(crate) async fn census(&self) -> Result<Census, StoreError> {
        Ok(Self::census_of(self.counter_rows("true", &[]).await?))
    }

    /// One tenant's counters.
    pub(crate) async fn tenant_census(&self, tenant: &str) -> Result<Census, StoreError> {
        Ok(Self::census_of(
            self.counter_rows("tenant = $1", &[&tenant]).await?,
        ))
    }

    /// One queue's counters.
    pub(crate) async fn queue_census(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Census, StoreError> {
        Ok(Self::census_of(
            self.counter_rows("tenant = $1 AND queue = $2", &[&tenant, &queue])
                .await?,
        ))
    }

    /// What a tenant holds against its quotas.
    pub(crate) async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        let mut usage = TenantUsage::default();
        for (_, _, c, n) in self.counter_rows("tenant = $1", &[&tenant]).await? {
            add_to_usage(&mut usage, &c, n);
        }
        Ok(usage)
    }

    /// Replaces the rows of each counter that has more than one by one row holding their sum
    /// (none when it is zero); a counter already folded is left alone.
    /// Safe beside writers and beside other hosts folding: the rows a fold deletes are the
    /// ones it re-inserts as a sum, in one transaction.
    pub async fn fold_counters(&self) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .q1(
                "WITH many AS (SELECT tenant, queue, counter FROM counters
                               GROUP BY tenant, queue, counter HAVING count(*) > 1),
                      gone AS (DELETE FROM counters c USING many m
                               WHERE c.tenant = m.tenant AND c.queue = m.queue
                                 AND c.counter = m.counter
                               RETURNING c.tenant, c.queue, c.counter, c.n),
                      sums AS (INSERT INTO counters (tenant, queue, counter, n)
                               SELECT tenant, queue, counter, sum(n)::bigint FROM gone
                               GROUP BY tenant, queue, counter HAVING sum(n) <> 0
                               RETURNING 1)
                 SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM sums)",
                &[],
            )
            .await
            .map_err(io)?;
        let folded: i64 = row.get(0);
        Ok(u64::try_from(folded).unwrap_or(0))
    }
}
