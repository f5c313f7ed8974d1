//! Tenants and what they own: API tokens (stored as sha256 only), deployed modules with the
//! job routes they establish (the newest deployment serves a job), and queue settings.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::enqueue::check_queue_name;
use super::{Engine, EngineError};
use stepwise_core::policy::PolicyError;
use stepwise_runtime::LoadedModule;
use stepwise_store::{ModuleRecord, QueueSettings, TenantRecord};

/// One of a tenant's queues with its counts, as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Its settings (the defaults when it has none).
    pub settings: QueueSettings,
    /// Runs stored, any state.
    pub runs: u64,
    /// Runs not yet final (waiting or running).
    pub depth: u64,
    /// Attempts executing now.
    pub running: u64,
    /// Runs in its dead-letter list.
    pub dead_letters: u64,
}

/// A tenant just created, with its first API token (shown once, never stored).
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// The tenant.
    pub tenant: TenantRecord,
    /// Its bearer token.
    pub token: String,
}

/// sha256 (hex) of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn check_tenant_name(name: &str) -> Result<(), EngineError> {
    crate::enqueue::check_name(stepwise_core::names::Kind::Tenant, name)
}

impl Engine {
    /// Creates a tenant and its first API token.
    pub async fn create_tenant(&self, name: &str) -> Result<NewTenant, EngineError> {
        check_tenant_name(name)?;
        let store = &self.inner.store;
        if store.tenant(name).await?.is_some() {
            return Err(EngineError::TenantExists(name.to_owned()));
        }
        let tenant = TenantRecord {
            name: name.to_owned(),
            created_at: self.inner.clock.now(),
        };
        let token = new_token();
        store.create_tenant(&tenant, &token_hash(&token)).await?;
        tracing::info!(tenant = %name, "tenant created");
        Ok(NewTenant { tenant, token })
    }

    /// The tenant a bearer token belongs to, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<String>, EngineError> {
        Ok(self
            .inner
            .store
            .tenant_for_token(&token_hash(token))
            .await?)
    }

    /// Validates and stores a component for `tenant`; its jobs are served by it from now on.
    pub async fn deploy_for(
        &self,
        tenant: &str,
        bytes: &[u8],
    ) -> Result<(Arc<LoadedModule>, ModuleRecord), EngineError> {
        let hash = stepwise_runtime::Runtime::hash(bytes);
        self.check_module_quota(tenant, &hash, bytes.len() as u64)
            .await?;
        let module = self.deploy_hashed(bytes, hash).await?;
        let record = ModuleRecord {
            hash: module.hash.clone(),
            size: bytes.len() as u64,
            jobs: module.jobs.clone(),
            deployed_at: self.inner.clock.now(),
        };
        self.inner.store.deploy_module(tenant, &record).await?;
        tracing::info!(tenant = %tenant, module = %record.hash, "module deployed");
        Ok((module, record))
    }

    /// Refuses a deployment that would take `tenant` past its module quotas (a module it
    /// already deployed is never refused: deploying it again only renews its routes).
    async fn check_module_quota(
        &self,
        tenant: &str,
        hash: &str,
        size: u64,
    ) -> Result<(), EngineError> {
        let modules = self.inner.store.tenant_modules(tenant).await?;
        if modules.iter().any(|m| m.hash == hash) {
            return Ok(());
        }
        let (max_count, max_bytes) = self.inner.config.tenants.modules_quota_of(tenant);
        let quota = |what, limit: u64, used: u64| EngineError::QuotaExceeded {
            tenant: tenant.to_owned(),
            what,
            limit,
            used,
        };
        if modules.len() >= max_count {
            return Err(quota("modules", max_count as u64, modules.len() as u64));
        }
        let used: u64 = modules.iter().map(|m| m.size).sum();
        if used.saturating_add(size) > max_bytes {
            return Err(quota("module bytes", max_bytes, used));
        }
        Ok(())
    }

    /// The modules `tenant` deployed.
    pub async fn modules_of(&self, tenant: &str) -> Result<Vec<ModuleRecord>, EngineError> {
        Ok(self.inner.store.tenant_modules(tenant).await?)
    }

    /// Reads `tenant`'s settings again (its queues' settings, egress settings and secrets)
    /// after another host sharing the store changed them.
    pub async fn reload_settings(&self, tenant: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let queues: Vec<(String, QueueSettings)> = store
            .queues()
            .await?
            .into_iter()
            .filter(|(t, _, _)| t == tenant)
            .map(|(_, q, s)| (q, s))
            .collect();
        {
            let mut map = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|(t, _), _| t != tenant);
            for (q, s) in queues {
                map.insert((tenant.to_owned(), q), s);
            }
        }
        let egress = store.egress(tenant).await?;
        if let Err(e) = self.inner.egress.install(tenant, &egress) {
            tracing::warn!(tenant = %tenant, error = %e, "stored egress settings refused");
        }
        let secrets = store.secrets_of(tenant).await?;
        // Without a key there is nothing to open (and none were stored on this host either).
        if let Err(e) = self.inner.secrets.install(tenant, &secrets)
            && !secrets.is_empty()
        {
            tracing::error!(tenant = %tenant, error = %e, "stored secrets unavailable");
        }
        tracing::info!(tenant = %tenant, "settings changed by another host read again");
        // A rate limit may have been lifted: held runs are looked at again.
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Reads every tenant's settings again: those of every tenant the store has settings
    /// for, and of every tenant this engine holds settings of (whose last ones may be gone).
    pub async fn reload_all_settings(&self) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let mut tenants: std::collections::BTreeSet<String> = store
            .queues()
            .await?
            .into_iter()
            .map(|(t, _, _)| t)
            .collect();
        tenants.extend(store.egress_all().await?.into_iter().map(|(t, _)| t));
        tenants.extend(store.secrets_all().await?.into_iter().map(|(t, _)| t));
        tenants.extend(
            self.inner
                .queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .map(|(t, _)| t.clone()),
        );
        tenants.extend(self.inner.secrets.tenants());
        for tenant in tenants {
            self.reload_settings(&tenant).await?;
        }
        Ok(())
    }

    /// Sets a queue's settings (e.g. its concurrency limit).
    pub async fn set_queue(
        &self,
        tenant: &str,
        queue: &str,
        settings: QueueSettings,
    ) -> Result<(), EngineError> {
        check_queue_name(queue)?;
        if let Some(limit) = settings.rate_limit {
            limit.validate().map_err(|problem| PolicyError {
                field: "rate_limit",
                problem,
            })?;
        }
        self.inner.store.put_queue(tenant, queue, &settings).await?;
        let before = self
            .inner
            .queues
            .lock()
            .expect("queue settings")
            .insert((tenant.to_owned(), queue.to_owned()), settings);
        if before.and_then(|b| b.rate_limit) != settings.rate_limit {
            self.lift_holds(tenant, queue).await;
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A queue's settings (defaults when none were set).
    pub fn queue_settings(&self, tenant: &str, queue: &str) -> QueueSettings {
        self.inner
            .queues
            .lock()
            .expect("queue settings")
            .get(&(tenant.to_owned(), queue.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// `tenant`'s queues with stored runs, dead letters or settings, by name, with their
    /// counts from the store's counters (no run is read); or only `queue`, whether or not it
    /// has any.
    pub async fn queue_counts(
        &self,
        tenant: &str,
        only: Option<&str>,
    ) -> Result<Vec<QueueCounts>, EngineError> {
        let store = &self.inner.store;
        let census = match only {
            Some(queue) => store.queue_census(tenant, queue).await?,
            None => store.tenant_census(tenant).await?,
        };
        let running = store.occupancy().await?.running_by_queue;
        let mut names: std::collections::BTreeSet<String> = census
            .runs
            .keys()
            .chain(census.dead_letters.keys())
            .filter(|(t, _)| t == tenant)
            .map(|(_, q)| q.clone())
            .collect();
        match only {
            Some(queue) => {
                names.insert(queue.to_owned());
            }
            None => names.extend(self.queues_of(tenant)),
        }
        Ok(names
            .into_iter()
            .map(|queue| {
                let key = (tenant.to_owned(), queue);
                QueueCounts {
                    settings: self.queue_settings(tenant, &key.1),
                    runs: census.runs.get(&key).copied().unwrap_or(0),
                    depth: census.depth.get(&key).copied().unwrap_or(0),
                    running: running.get(&key).copied().unwrap_or(0) as u64,
                    dead_letters: census.dead_letters.get(&key).copied().unwrap_or(0),
                    queue: key.1,
                }
            })
            .collect())
    }

    /// The queues of `tenant` that have settings, by name.
    pub fn queues_of(&self, tenant: &str) -> Vec<String> {
        let queues = self.inner.queues.lock().expect("queue settings");
        let mut names: Vec<String> = queues
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, q)| q.clone())
            .collect();
        names.sort();
        names
    }
}

/// A random bearer token: `sw_` and 32 random bytes in hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sw_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_checked() {
        assert!(check_tenant_name("acme-2_prod").is_ok());
        assert!(check_tenant_name("").is_err());
        assert!(check_tenant_name("Acme").is_err());
        assert!(check_tenant_name("a/b").is_err());
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("sw_") && a.len() == 67);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
