//! The tenants' settings on PostgreSQL: tenants and their tokens, modules and the job routes
//! a deployment sets, queue and egress settings, sealed secrets, and cron schedules written
//! over their versions. Each method has the semantics of the [`stepwise_store::Store`] method
//! of the same name; several-row writes are one transaction.

use stepwise_core::egress::TenantEgress;
use stepwise_core::schedule::ScheduleRecord;
use stepwise_core::secret::SecretRecord;
use stepwise_store::{ModuleRecord, QueueSettings, StoreError, TenantRecord};

use crate::cached::Cached;
use crate::{PgStore, decode, encode, io};

impl PgStore {
    /// The records of `tenant` in the rows `sql` (taking the tenant as `$1`) returns as
    /// (name, record), decoded; an undecodable one is named `what name of tenant`.
    async fn records_of<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        tenant: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.client().await?.q(sql, &[&tenant]).await.map_err(io)?;
        rows.into_iter()
            .map(|r| {
                let name: String = r.get(0);
                decode(r.get(1), || format!("{what} {name} of {tenant}"))
            })
            .collect()
    }

    /// Creates a tenant with its first token (stored hashed).
    pub async fn create_tenant(
        &self,
        tenant: &TenantRecord,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(io)?;
        txn.x(
            "INSERT INTO tenants (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
            &[&tenant.name, &encode(tenant)?],
        )
        .await
        .map_err(io)?;
        txn.x(
            "INSERT INTO tokens (token_hash, tenant) VALUES ($1, $2)
             ON CONFLICT (token_hash) DO UPDATE SET tenant = EXCLUDED.tenant",
            &[&token_hash, &tenant.name],
        )
        .await
        .map_err(io)?;
        txn.commit().await.map_err(io)
    }

    /// A tenant.
    pub async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt("SELECT record FROM tenants WHERE name = $1", &[&name])
            .await
            .map_err(io)?;
        row.map(|r| decode(r.get(0), || format!("tenant {name}")))
            .transpose()
    }

    /// The tenant a token (hashed) belongs to.
    pub async fn tenant_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT tenant FROM tokens WHERE token_hash = $1",
                &[&token_hash],
            )
            .await
            .map_err(io)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores a component's bytes under its hash (shared by every tenant that deploys it;
    /// storing the same hash again changes nothing).
    pub async fn put_module(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.client()
            .await?
            .x(
                "INSERT INTO modules (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                &[&hash, &bytes],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// A stored component's bytes.
    pub async fn module(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt("SELECT bytes FROM modules WHERE hash = $1", &[&hash])
            .await
            .map_err(io)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records that `tenant` deployed `module`: its jobs are routed to it from now on.
    pub async fn deploy_module(
        &self,
        tenant: &str,
        module: &ModuleRecord,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(io)?;
        txn.x(
            "INSERT INTO tenant_modules (tenant, hash, record) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, hash) DO UPDATE SET record = EXCLUDED.record",
            &[&tenant, &module.hash, &encode(module)?],
        )
        .await
        .map_err(io)?;
        let jobs: Vec<&str> = module.jobs.iter().map(|j| j.name.as_str()).collect();
        txn.x(
            "INSERT INTO job_routes (tenant, job, hash) SELECT $1, job, $2 FROM unnest($3::text[]) AS job
             ON CONFLICT (tenant, job) DO UPDATE SET hash = EXCLUDED.hash",
            &[&tenant, &module.hash, &jobs],
        )
        .await
        .map_err(io)?;
        txn.commit().await.map_err(io)
    }

    /// The modules `tenant` deployed, by hash.
    pub async fn tenant_modules(&self, tenant: &str) -> Result<Vec<ModuleRecord>, StoreError> {
        self.records_of(
            "SELECT hash, record FROM tenant_modules WHERE tenant = $1 ORDER BY hash",
            tenant,
            "module",
        )
        .await
    }

    /// The module serving `job` for `tenant`.
    pub async fn job_route(&self, tenant: &str, job: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT hash FROM job_routes WHERE tenant = $1 AND job = $2",
                &[&tenant, &job],
            )
            .await
            .map_err(io)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Whether `tenant` deployed the module `hash`.
    pub async fn tenant_has_module(&self, tenant: &str, hash: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT 1 FROM tenant_modules WHERE tenant = $1 AND hash = $2",
                &[&tenant, &hash],
            )
            .await
            .map_err(io)?;
        Ok(row.is_some())
    }

    /// Sets a queue's settings.
    pub async fn put_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .x(
                "INSERT INTO queues (tenant, queue, settings) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, queue) DO UPDATE SET settings = EXCLUDED.settings",
                &[&tenant, &queue, &encode(settings)?],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// Every queue with settings, as (tenant, queue, settings), by tenant and queue.
    pub async fn queues(&self) -> Result<Vec<(String, String, QueueSettings)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT tenant, queue, settings FROM queues ORDER BY tenant, queue",
                &[],
            )
            .await
            .map_err(io)?;
        rows.into_iter()
            .map(|r| {
                let (tenant, queue): (String, String) = (r.get(0), r.get(1));
                let settings = decode(r.get(2), || format!("queue {tenant}/{queue}"))?;
                Ok((tenant, queue, settings))
            })
            .collect()
    }

    /// Sets a tenant's egress settings.
    pub async fn put_egress(
        &self,
        tenant: &str,
        settings: &TenantEgress,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .x(
                "INSERT INTO egress (tenant, settings) VALUES ($1, $2)
                 ON CONFLICT (tenant) DO UPDATE SET settings = EXCLUDED.settings",
                &[&tenant, &encode(settings)?],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// A tenant's egress settings (the default when it has none).
    pub async fn egress(&self, tenant: &str) -> Result<TenantEgress, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt("SELECT settings FROM egress WHERE tenant = $1", &[&tenant])
            .await
            .map_err(io)?;
        match row {
            Some(r) => decode(r.get(0), || format!("egress settings of {tenant}")),
            None => Ok(TenantEgress::default()),
        }
    }

    /// Every tenant's egress settings, by tenant.
    pub async fn egress_all(&self) -> Result<Vec<(String, TenantEgress)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q("SELECT tenant, settings FROM egress ORDER BY tenant", &[])
            .await
            .map_err(io)?;
        rows.into_iter()
            .map(|r| {
                let tenant: String = r.get(0);
                let settings = decode(r.get(1), || format!("egress settings of {tenant}"))?;
                Ok((tenant, settings))
            })
            .collect()
    }

    /// Stores secrets, as (tenant, record), all or none.
    pub async fn put_secrets(&self, secrets: &[(String, SecretRecord)]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(io)?;
        for (tenant, record) in secrets {
            txn.x(
                "INSERT INTO secrets (tenant, name, record) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, name) DO UPDATE SET record = EXCLUDED.record",
                &[tenant, &record.name, &encode(record)?],
            )
            .await
            .map_err(io)?;
        }
        txn.commit().await.map_err(io)
    }

    /// Removes a tenant's secret.
    pub async fn remove_secret(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .x(
                "DELETE FROM secrets WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(io)?;
        Ok(())
    }

    /// A tenant's secrets, by name.
    pub async fn secrets_of(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        self.records_of(
            "SELECT name, record FROM secrets WHERE tenant = $1 ORDER BY name",
            tenant,
            "secret",
        )
        .await
    }

    /// Every tenant's secrets, by tenant and name.
    pub async fn secrets_all(&self) -> Result<Vec<(String, Vec<SecretRecord>)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT tenant, name, record FROM secrets ORDER BY tenant, name",
                &[],
            )
            .await
            .map_err(io)?;
        let mut out: Vec<(String, Vec<SecretRecord>)> = Vec::new();
        for r in rows {
            let (tenant, name): (String, String) = (r.get(0), r.get(1));
            let record = decode(r.get(2), || format!("secret {name} of {tenant}"))?;
            match out.last_mut() {
                Some((t, records)) if *t == tenant => records.push(record),
                _ => out.push((tenant, vec![record])),
            }
        }
        Ok(out)
    }

    /// Stores `tenant`'s schedule: created when `expected` is `None` (refused with
    /// [`StoreError::Conflict`] if one of that name exists), else written over version
    /// `expected` (refused if the stored version differs). Returns the version stored.
    pub async fn put_schedule(
        &self,
        tenant: &str,
        schedule: &ScheduleRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut record = schedule.clone();
        record.version = expected.map_or(1, |v| v.saturating_add(1));
        let version = i64::try_from(record.version).map_err(|_| StoreError::Conflict {
            run: format!("schedule {}", schedule.name),
            expected: expected.unwrap_or(0),
            found: None,
        })?;
        let json = encode(&record)?;
        let client = self.client().await?;
        let written = match expected {
            None => client
                .x(
                    "INSERT INTO schedules (tenant, name, version, record) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, name) DO NOTHING",
                    &[&tenant, &record.name, &version, &json],
                )
                .await
                .map_err(io)?,
            Some(before) => client
                .x(
                    "UPDATE schedules SET version = $3, record = $4
                     WHERE tenant = $1 AND name = $2 AND version = $5",
                    &[
                        &tenant,
                        &record.name,
                        &version,
                        &json,
                        &i64::try_from(before).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(io)?,
        };
        if written == 1 {
            return Ok(record.version);
        }
        let found = client
            .q_opt(
                "SELECT version FROM schedules WHERE tenant = $1 AND name = $2",
                &[&tenant, &record.name],
            )
            .await
            .map_err(io)?
            .map(|r| r.get::<_, i64>(0) as u64);
        Err(StoreError::Conflict {
            run: format!("schedule {}", record.name),
            expected: expected.unwrap_or(0),
            found,
        })
    }

    /// A tenant's schedule.
    pub async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ScheduleRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT record FROM schedules WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(io)?;
        row.map(|r| decode(r.get(0), || format!("schedule {name} of {tenant}")))
            .transpose()
    }

    /// A tenant's schedules, by name.
    pub async fn schedules_of(&self, tenant: &str) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.records_of(
            "SELECT name, record FROM schedules WHERE tenant = $1 ORDER BY name",
            tenant,
            "schedule",
        )
        .await
    }

    /// Every schedule, as (tenant, schedule), by tenant and name.
    pub async fn all_schedules(&self) -> Result<Vec<(String, ScheduleRecord)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT tenant, name, record FROM schedules ORDER BY tenant, name",
                &[],
            )
            .await
            .map_err(io)?;
        rows.into_iter()
            .map(|r| {
                let (tenant, name): (String, String) = (r.get(0), r.get(1));
                let record = decode(r.get(2), || format!("schedule {name} of {tenant}"))?;
                Ok((tenant, record))
            })
            .collect()
    }

    /// Removes a tenant's schedule; whether it existed.
    pub async fn remove_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let removed = self
            .client()
            .await?
            .x(
                "DELETE FROM schedules WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(io)?;
        Ok(removed == 1)
    }
}
