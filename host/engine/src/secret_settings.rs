//! A tenant's secrets: set (sealed before it is stored), listed without values, removed, and
//! re-sealed with the current key after a rotation.

use std::sync::Arc;

use super::{Engine, EngineError};
use crate::secrets::{self, NewSecret, SecretInfo, SecretRecord};
use stepwise_runtime::egress::SecretSource;

impl Engine {
    /// Stores `name` for `tenant` (replacing any secret of that name) and makes it available
    /// to the tenant's next attempts. Nothing is stored when the secret is refused.
    pub async fn set_secret(
        &self,
        tenant: &str,
        name: &str,
        secret: NewSecret,
    ) -> Result<SecretInfo, EngineError> {
        let keys = self.inner.secrets.keys()?;
        let hosts = secrets::check(name, &secret)?;
        let store = &self.inner.store;
        let existing = store.secrets_of(tenant).await?;
        if !existing.iter().any(|r| r.name == name) && existing.len() >= secrets::MAX_SECRETS {
            return Err(EngineError::QuotaExceeded {
                tenant: tenant.to_owned(),
                what: "secrets",
                limit: secrets::MAX_SECRETS as u64,
                used: existing.len() as u64,
            });
        }
        let record = SecretRecord {
            name: name.to_owned(),
            sealed: keys.seal(tenant, name, secret.value.as_bytes()),
            hosts: hosts.iter().map(|h| h.spec()).collect(),
            readable: secret.readable,
            updated_at: self.inner.clock.now(),
        };
        store
            .put_secrets(&[(tenant.to_owned(), record.clone())])
            .await?;
        self.reinstall_secrets(tenant).await?;
        tracing::info!(tenant = %tenant, secret = %name, readable = record.readable, "secret set");
        Ok(SecretInfo::from(&record))
    }

    /// Removes `name` from `tenant`'s secrets.
    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<(), EngineError> {
        secrets::check_name(name)?;
        let store = &self.inner.store;
        if !store
            .secrets_of(tenant)
            .await?
            .iter()
            .any(|r| r.name == name)
        {
            return Err(EngineError::UnknownSecret(name.to_owned()));
        }
        store.remove_secret(tenant, name).await?;
        if self.inner.secrets.keys().is_ok() {
            self.reinstall_secrets(tenant).await?;
        }
        tracing::info!(tenant = %tenant, secret = %name, "secret removed");
        Ok(())
    }

    /// `tenant`'s secrets: names, bindings and dates, never values.
    pub async fn list_secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, EngineError> {
        Ok(self
            .inner
            .store
            .secrets_of(tenant)
            .await?
            .iter()
            .map(SecretInfo::from)
            .collect())
    }

    /// Re-seals every value sealed with a previous key, so the previous keys can be dropped
    /// from the config. Returns how many values were re-sealed.
    pub async fn reseal_secrets(&self) -> Result<usize, EngineError> {
        let Ok(keys) = self.inner.secrets.keys() else {
            return Ok(0);
        };
        let mut resealed = Vec::new();
        for (tenant, records) in self.inner.store.secrets_all().await? {
            for mut r in records {
                if keys.is_current(&r.sealed) {
                    continue;
                }
                let value = keys.open(&tenant, &r.name, &r.sealed)?;
                r.sealed = keys.seal(&tenant, &r.name, &value);
                resealed.push((tenant.clone(), r));
            }
        }
        let n = resealed.len();
        if n > 0 {
            self.inner.store.put_secrets(&resealed).await?;
            tracing::info!(resealed = n, "secrets re-sealed with the current key");
        }
        Ok(n)
    }

    /// Opens `tenant`'s stored secrets again after a change.
    async fn reinstall_secrets(&self, tenant: &str) -> Result<(), EngineError> {
        let records = self.inner.store.secrets_of(tenant).await?;
        Ok(self.inner.secrets.install(tenant, &records)?)
    }

    /// The secrets an attempt of `tenant` sees.
    pub(crate) fn secrets_of(&self, tenant: &str) -> Arc<dyn SecretSource> {
        self.inner.secrets.of(tenant)
    }
}
