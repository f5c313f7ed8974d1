//! Reads of tenants' cron schedules (writes go through the writer, which checks their
//! versions).

use redb::{ReadableDatabase, ReadableTable};

use super::schema::MAX_KEY;
use super::{RedbStore, StoreError, decode, schema};

impl RedbStore {
    /// A tenant's schedule.
    pub fn schedule_of(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<stepwise_core::schedule::ScheduleRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::SCHEDULES)?;
        table
            .get((tenant, name))?
            .map(|v| decode(v.value(), || format!("schedule {name} of {tenant}")))
            .transpose()
    }

    /// Schedules of `tenant` (every tenant's with `None`), as (tenant, schedule).
    pub fn schedules_in(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, stepwise_core::schedule::ScheduleRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::SCHEDULES)?;
        let mut out = Vec::new();
        let range: Box<dyn Iterator<Item = _>> = match tenant {
            Some(t) => Box::new(table.range((t, "")..=(t, MAX_KEY))?),
            None => Box::new(table.iter()?),
        };
        for entry in range {
            let (k, v) = entry?;
            let (t, name) = k.value();
            out.push((
                t.to_owned(),
                decode(v.value(), || format!("schedule {name} of {t}"))?,
            ));
        }
        Ok(out)
    }
}
