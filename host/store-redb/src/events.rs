//! Reads of events, their deliveries and a run's children: what waits match, what
//! `GET /v1/events` lists, what the retention sweep removes, what `runs list --parent` shows.
//! Writes go through the writer (`writer.rs`), which numbers events and wakes their waiters.

use redb::ReadableDatabase;

use super::schema::MAX_KEY;
use super::{RedbStore, StoreError, decode, schema};
use stepwise_core::clock::Millis;
use stepwise_core::flow::EventRecord;
use stepwise_store::EventFilter;

impl RedbStore {
    /// See [`stepwise_store::Store::match_event`].
    pub fn match_event(
        &self,
        tenant: &str,
        name: &str,
        key: Option<&str>,
        since: Millis,
        until: Millis,
        skip: &[u64],
    ) -> Result<(Option<EventRecord>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let high = txn
            .open_table(schema::META)?
            .get(schema::event_seq_key(tenant).as_str())?
            .map_or(0, |v| v.value());
        let key = key.unwrap_or("");
        let index = txn.open_table(schema::EVENT_INDEX)?;
        let lo = (tenant, name, key, since, 0u64);
        let hi = (tenant, name, key, until, u64::MAX);
        for entry in index.range(lo..=hi)? {
            let (k, _) = entry?;
            let seq = k.value().4;
            if skip.contains(&seq) {
                continue;
            }
            let events = txn.open_table(schema::EVENTS)?;
            let Some(v) = events.get((tenant, seq))? else {
                continue;
            };
            let event = decode(v.value(), || format!("event {seq} of {tenant}"))?;
            return Ok((Some(event), high));
        }
        Ok((None, high))
    }

    /// A tenant's event by id.
    pub fn event_by_id(&self, tenant: &str, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(seq) = txn
            .open_table(schema::EVENT_IDS)?
            .get((tenant, id))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let events = txn.open_table(schema::EVENTS)?;
        events
            .get((tenant, seq))?
            .map(|v| decode(v.value(), || format!("event {seq} of {tenant}")))
            .transpose()
    }

    /// A tenant's event by number.
    pub fn event_by_seq(&self, tenant: &str, seq: u64) -> Result<Option<EventRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(schema::EVENTS)?;
        events
            .get((tenant, seq))?
            .map(|v| decode(v.value(), || format!("event {seq} of {tenant}")))
            .transpose()
    }

    /// See [`stepwise_store::Store::list_events`]. Filtered by name (and key), the event
    /// index gives the numbers without reading any other event; unfiltered, the newest are
    /// read directly.
    pub fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(schema::EVENTS)?;
        let end = before.unwrap_or(u64::MAX);
        let seqs: Vec<u64> = match &filter.name {
            Some(name) => {
                let index = txn.open_table(schema::EVENT_INDEX)?;
                let (lo, hi) = match &filter.correlation_key {
                    Some(key) => (
                        (tenant, name.as_str(), key.as_str(), 0u64, 0u64),
                        (tenant, name.as_str(), key.as_str(), u64::MAX, u64::MAX),
                    ),
                    None => (
                        (tenant, name.as_str(), "", 0u64, 0u64),
                        (tenant, name.as_str(), MAX_KEY, u64::MAX, u64::MAX),
                    ),
                };
                let mut seqs = Vec::new();
                for entry in index.range(lo..=hi)? {
                    let seq = entry?.0.value().4;
                    if seq < end {
                        seqs.push(seq);
                    }
                }
                seqs.sort_unstable_by(|a, b| b.cmp(a));
                seqs.truncate(limit);
                seqs
            }
            None => {
                let mut seqs = Vec::new();
                for entry in events.range((tenant, 0u64)..(tenant, end))?.rev() {
                    if seqs.len() >= limit {
                        break;
                    }
                    seqs.push(entry?.0.value().1);
                }
                seqs
            }
        };
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(v) = events.get((tenant, seq))? else {
                continue;
            };
            let event: EventRecord = decode(v.value(), || format!("event {seq} of {tenant}"))?;
            // Only a key without a name is filtered here (the API asks for a name with it).
            if filter
                .correlation_key
                .as_ref()
                .is_none_or(|k| Some(k) == event.correlation_key.as_ref())
            {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// See [`stepwise_store::Store::event_deliveries`].
    pub fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::EVENT_DELIVERIES)?;
        let mut out = Vec::new();
        for entry in table
            .range((tenant, seq, "")..=(tenant, seq, MAX_KEY))?
            .take(limit)
        {
            let (k, v) = entry?;
            out.push((k.value().2.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    /// See [`stepwise_store::Store::expired_events`].
    pub fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::EVENT_EXPIRY)?;
        let mut out = Vec::new();
        for entry in table
            .range((0u64, "", 0u64)..=(now, MAX_KEY, u64::MAX))?
            .take(limit)
        {
            let (k, _) = entry?;
            let (_, tenant, seq) = k.value();
            out.push((tenant.to_owned(), seq));
        }
        Ok(out)
    }

    /// The children of `parent`, in creation order (newest first with `newest_first`)
    /// after `after`, at most `limit`.
    pub fn children_of(
        &self,
        parent: &str,
        after: Option<&str>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(schema::CHILDREN)?;
        let range: Box<dyn Iterator<Item = _>> = match (newest_first, after) {
            (false, Some(after)) => Box::new(
                table
                    .range((parent, after)..=(parent, MAX_KEY))?
                    .skip_while(move |e| e.as_ref().is_ok_and(|(k, _)| k.value().1 == after)),
            ),
            (false, None) => Box::new(table.range((parent, "")..=(parent, MAX_KEY))?),
            (true, Some(after)) => Box::new(table.range((parent, "")..(parent, after))?.rev()),
            (true, None) => Box::new(table.range((parent, "")..=(parent, MAX_KEY))?.rev()),
        };
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (k, _) = entry?;
            out.push(k.value().1.to_owned());
        }
        Ok(out)
    }
}
