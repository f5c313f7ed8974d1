//! Reads of runs on PostgreSQL: records, journals and their pages, listings bounded as the
//! storage interface bounds them, dead letters and idempotency keys.

use serde::de::DeserializeOwned;
use stepwise_core::clock::Millis;
use stepwise_core::model::{RunRecord, StepRecord};
use stepwise_store::{IdempotencyRecord, MAX_LIST_SCAN, Page, RunFilter, RunsPage, StoreError};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::cached::Cached;
use crate::tx::{db_ms, ms};
use crate::{PgStore, decode_text, io};

/// The columns [`run_of_row`] reads, in order.
const RUN_COLUMNS: &str = "record::text, version, ready_at";

/// A run record from a row of [`RUN_COLUMNS`]: the document, with the columns that are the
/// truth for its version and due time.
fn run_of_row(row: &Row, id: impl FnOnce() -> String) -> Result<RunRecord, StoreError> {
    let mut run: RunRecord = decode_text(row.get(0), || format!("run {}", id()))?;
    run.version = ms(row.get(1));
    run.ready_at = row.get::<_, Option<i64>>(2).map(ms);
    Ok(run)
}

/// A run's list a page reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum List {
    Steps,
    Timeline,
    Logs,
}

impl List {
    /// (table, position column, what an entry is called).
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Steps => ("steps", "ordinal", "step"),
            Self::Timeline => ("timeline", "seq", "timeline entry"),
            Self::Logs => ("logs", "seq", "log line"),
        }
    }
}

impl PgStore {
    /// A run's record.
    pub(crate) async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = self.client().await?.q_opt(&sql, &[&id]).await.map_err(io)?;
        row.map(|r| run_of_row(&r, || id.to_owned())).transpose()
    }

    /// Run `id` if it belongs to `tenant`.
    pub(crate) async fn tenant_run(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant = $2");
        let row = self
            .client()
            .await?
            .q_opt(&sql, &[&id, &tenant])
            .await
            .map_err(io)?;
        row.map(|r| run_of_row(&r, || id.to_owned())).transpose()
    }

    /// A run's steps, by ordinal.
    pub(crate) async fn load_journal(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self.page(List::Steps, run, 0, usize::MAX).await?.0)
    }

    /// The attempt named by the last timeline entry that names one.
    pub(crate) async fn last_attempt(&self, run: &str) -> Result<Option<u32>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT attempt FROM timeline WHERE run = $1 AND attempt IS NOT NULL
                 ORDER BY seq DESC LIMIT 1",
                &[&run],
            )
            .await
            .map_err(io)?;
        Ok(row.map(|r| u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX)))
    }

    /// Up to `limit` entries of a run's `list` from position `from`, and the position of the
    /// next one when more follow.
    pub(crate) async fn page<T: DeserializeOwned>(
        &self,
        list: List,
        run: &str,
        from: u32,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        let (table, position, what) = list.names();
        let sql = format!(
            "SELECT {position}, record::text FROM {table} WHERE run = $1 AND {position} >= $2
             ORDER BY {position} LIMIT $3"
        );
        let from = i32::try_from(from).unwrap_or(i32::MAX);
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .q(&sql, &[&run, &from, &take])
            .await
            .map_err(io)?;
        let mut out = Vec::with_capacity(rows.len().min(limit));
        for r in &rows {
            let at: i32 = r.get(0);
            let at = u32::try_from(at).unwrap_or(0);
            if out.len() >= limit {
                return Ok((out, Some(at)));
            }
            out.push(decode_text(r.get(1), || format!("{what} {run}/{at}"))?);
        }
        Ok((out, None))
    }

    /// See [`stepwise_store::Store::list_runs`]: at most [`MAX_LIST_SCAN`] runs of the
    /// tenant (or the parent's children) are read, in order, and filtered in the database.
    pub(crate) async fn list_runs(
        &self,
        tenant: &str,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RunsPage, StoreError> {
        if limit == 0 {
            return Ok(RunsPage::default());
        }
        let (order, past) = if filter.newest_first {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |v: Box<dyn ToSql + Sync + Send>| {
            params.push(v);
            format!("${}", params.len())
        };
        let scope = match &filter.parent {
            Some(parent) => format!("parent = {}", arg(Box::new(parent.clone()))),
            None => format!("tenant = {}", arg(Box::new(tenant.to_owned()))),
        };
        let after_clause = match after {
            Some(a) => format!("AND id {past} {}", arg(Box::new(a.to_owned()))),
            None => String::new(),
        };
        let scan = arg(Box::new(MAX_LIST_SCAN as i64));
        let mut conditions = vec![format!("tenant = {}", arg(Box::new(tenant.to_owned())))];
        if let Some(q) = &filter.queue {
            conditions.push(format!("queue = {}", arg(Box::new(q.clone()))));
        }
        if let Some(j) = &filter.job {
            conditions.push(format!("job = {}", arg(Box::new(j.clone()))));
        }
        if let Some(s) = filter.status {
            conditions.push(format!("status = {}", arg(Box::new(s.as_str()))));
        }
        if let Some(t) = filter.created_from {
            conditions.push(format!("created_at >= {}", arg(Box::new(db_ms(t)))));
        }
        if let Some(t) = filter.created_before {
            conditions.push(format!("created_at < {}", arg(Box::new(db_ms(t)))));
        }
        let take = arg(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        // The runs this call reads, and the last of them: the same for the page and for the
        // count a short page needs.
        let scanned = format!(
            "WITH scanned AS (
                 SELECT id FROM runs WHERE {scope} {after_clause} ORDER BY id {order} LIMIT {scan}
             )"
        );
        let last = if filter.newest_first {
            "min(id)"
        } else {
            "max(id)"
        };
        let sql = format!(
            "{scanned}
             SELECT {RUN_COLUMNS}, id, (SELECT count(*) FROM scanned),
                    (SELECT {last} FROM scanned)
             FROM runs WHERE id IN (SELECT id FROM scanned) AND {conditions}
             ORDER BY id {order} LIMIT {take}",
            conditions = conditions.join(" AND "),
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let rows = client.q(&sql, &refs).await.map_err(io)?;
        let mut runs = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.get(3);
            runs.push(run_of_row(r, || id.clone())?);
        }
        if runs.len() == limit {
            let next = runs.last().map(|r| r.id.clone());
            return Ok(RunsPage { runs, next });
        }
        // Short page: whether the scan stopped at its bound, read apart when nothing matched.
        let (scanned, last) = match rows.first() {
            Some(r) => (r.get::<_, i64>(4), r.get::<_, Option<String>>(5)),
            None => {
                let sql = format!("{scanned} SELECT count(*), {last} FROM scanned");
                // The scan's parameters are the first ones, numbered alike.
                let n = 2 + usize::from(after.is_some());
                let row = client.q1(&sql, &refs[..n]).await.map_err(io)?;
                (row.get(0), row.get(1))
            }
        };
        let next = if usize::try_from(scanned).unwrap_or(0) >= MAX_LIST_SCAN {
            last
        } else {
            None
        };
        Ok(RunsPage { runs, next })
    }

    /// The first `limit` children of `parent`, oldest first.
    pub(crate) async fn child_ids(
        &self,
        parent: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT id FROM runs WHERE parent = $1 ORDER BY id LIMIT $2",
                &[&parent, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A queue's dead letters, in run order.
    pub(crate) async fn dead_letters(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT run, at FROM dead_letters WHERE tenant = $1 AND queue = $2 ORDER BY run",
                &[&tenant, &queue],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| (r.get(0), ms(r.get(1)))).collect())
    }

    /// Whether `run` is listed in its queue's dead letters.
    pub(crate) async fn is_dead_lettered(&self, run: &RunRecord) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT 1 FROM dead_letters WHERE tenant = $1 AND queue = $2 AND run = $3",
                &[&run.tenant, &run.queue, &run.id],
            )
            .await
            .map_err(io)?;
        Ok(row.is_some())
    }

    /// The holder of an idempotency key, expired or not.
    pub(crate) async fn idempotency(
        &self,
        tenant: &str,
        queue: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT record::text FROM idempotency WHERE tenant = $1 AND queue = $2 AND key = $3",
                &[&tenant, &queue, &key],
            )
            .await
            .map_err(io)?;
        row.map(|r| decode_text(r.get(0), || format!("idempotency key {key}")))
            .transpose()
    }

    /// Keys whose retention passed at `now`.
    pub(crate) async fn expired_idempotency(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT tenant, queue, key FROM idempotency WHERE expires_at <= $1
                 ORDER BY expires_at LIMIT $2",
                &[&db_ms(now), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(io)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Runs set aside, with why.
    pub(crate) async fn unreadable_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT id, set_aside FROM runs WHERE set_aside IS NOT NULL ORDER BY id",
                &[],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
