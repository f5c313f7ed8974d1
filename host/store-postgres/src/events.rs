//! Events on PostgreSQL: numbered per tenant, stored with the runs they wake in one
//! transaction, matched by waits, listed, and forgotten when their retention passes.

use stepwise_core::clock::Millis;
use stepwise_core::flow::EventRecord;
use stepwise_store::counters::{EVENTS, STORED_BYTES};
use stepwise_store::{EventFilter, EventPut, NewEvent, StoreError};

use crate::cached::Cached;
use crate::counters::Deltas;
use crate::tx::{db_ms, in_txn, ms};
use crate::{PgStore, decode_text, encode_text, io};

impl PgStore {
    /// See [`stepwise_store::Store::put_event`].
    pub(crate) async fn put_event(
        &self,
        tenant: &str,
        event: NewEvent,
    ) -> Result<EventPut, StoreError> {
        let key = event.correlation_key.clone().unwrap_or_default();
        in_txn!(self, |txn| {
            if let Some(row) = txn
                .q_opt(
                    "SELECT record::text FROM events WHERE tenant = $1 AND id = $2",
                    &[&tenant, &event.id],
                )
                .await?
            {
                let stored = decode_text(row.get(0), || format!("event '{}'", event.id))?;
                return Ok(EventPut::Exists(stored));
            }
            // Exclusive with waits on this (name, key) being written (see `runs.rs`).
            crate::runs::waiter_lock(&txn, tenant, &event.name, &key, true).await?;
            let seq: i64 = txn
                .q1(
                    "INSERT INTO event_seqs (tenant, seq) VALUES ($1, 1)
                     ON CONFLICT (tenant) DO UPDATE SET seq = event_seqs.seq + 1
                     RETURNING seq",
                    &[&tenant],
                )
                .await?
                .get(0);
            let record = EventRecord {
                id: event.id.clone(),
                seq: ms(seq),
                name: event.name.clone(),
                correlation_key: event.correlation_key.clone(),
                payload: event.payload.clone(),
                received_at: event.received_at,
                expires_at: event.expires_at,
                body_hash: event.body_hash.clone(),
            };
            let json = encode_text(&record)?;
            let bytes = json.len() as i64;
            txn.x(
                "INSERT INTO events (tenant, seq, id, name, key, received_at, expires_at, bytes,
                                     record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::json)",
                &[
                    &tenant,
                    &seq,
                    &record.id,
                    &record.name,
                    &key,
                    &db_ms(record.received_at),
                    &db_ms(record.expires_at),
                    &bytes,
                    &json,
                ],
            )
            .await?;
            txn.x(
                "INSERT INTO event_latest (tenant, name, key, seq) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, name, key)
                 DO UPDATE SET seq = GREATEST(event_latest.seq, EXCLUDED.seq)",
                &[&tenant, &record.name, &key, &seq],
            )
            .await?;
            // Every waiter entry of the name and key goes; those still waiting are woken.
            let waiters: Vec<String> = txn
                .q(
                    "UPDATE runs SET wait_name = NULL, wait_key = NULL
                     WHERE tenant = $1 AND wait_name = $2 AND wait_key = $3 RETURNING id",
                    &[&tenant, &record.name, &key],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let woken = if waiters.is_empty() {
                0
            } else {
                txn.x(
                    "UPDATE runs SET ready_at = $2
                     WHERE id = ANY($1) AND status = 'waiting' AND (ready_at IS NULL OR ready_at > $2)",
                    &[&waiters, &db_ms(record.received_at)],
                )
                .await?
            };
            let mut deltas = Deltas::default();
            deltas.add(tenant, "", EVENTS, 1);
            deltas.add(tenant, "", STORED_BYTES, bytes);
            deltas.write(&txn).await?;
            Ok(EventPut::Stored {
                event: record,
                woken,
            })
        })
    }

    /// See [`stepwise_store::Store::match_event`]: one statement, so the match and the
    /// newest number come from one snapshot.
    pub(crate) async fn match_event(
        &self,
        tenant: &str,
        name: &str,
        key: Option<&str>,
        since: Millis,
        until: Millis,
        skip: &[u64],
    ) -> Result<(Option<EventRecord>, u64), StoreError> {
        let skip: Vec<i64> = skip.iter().map(|s| db_ms(*s)).collect();
        let row = self
            .client()
            .await?
            .q1(
                "SELECT (SELECT seq FROM event_seqs WHERE tenant = $1),
                        (SELECT record::text FROM events
                         WHERE tenant = $1 AND name = $2 AND key = $3
                           AND received_at BETWEEN $4 AND $5 AND NOT (seq = ANY($6))
                         ORDER BY received_at, seq LIMIT 1)",
                &[
                    &tenant,
                    &name,
                    &key.unwrap_or(""),
                    &db_ms(since),
                    &db_ms(until),
                    &skip,
                ],
            )
            .await
            .map_err(io)?;
        let high = row.get::<_, Option<i64>>(0).map_or(0, ms);
        let event = row
            .get::<_, Option<&str>>(1)
            .map(|text| decode_text(text, || format!("an event of {tenant}")))
            .transpose()?;
        Ok((event, high))
    }

    /// A tenant's event by id.
    pub(crate) async fn event(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .q_opt(
                "SELECT record::text FROM events WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(io)?;
        row.map(|r| decode_text(r.get(0), || format!("event '{id}' of {tenant}")))
            .transpose()
    }

    /// A tenant's events matching `filter`, newest first, numbered below `before`.
    pub(crate) async fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT record::text FROM events
                 WHERE tenant = $1 AND seq < $2
                   AND ($3::text IS NULL OR name = $3) AND ($4::text IS NULL OR key = $4)
                 ORDER BY seq DESC LIMIT $5",
                &[
                    &tenant,
                    &before.map_or(i64::MAX, db_ms),
                    &filter.name,
                    &filter.correlation_key,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(io)?;
        rows.iter()
            .map(|r| decode_text(r.get(0), || format!("an event of {tenant}")))
            .collect()
    }

    /// The (run, step) pairs whose waits took event `seq` of `tenant`.
    pub(crate) async fn event_deliveries(
        &self,
        tenant: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT run, step FROM event_deliveries WHERE tenant = $1 AND seq = $2
                 ORDER BY run LIMIT $3",
                &[
                    &tenant,
                    &db_ms(seq),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Events whose retention passed at `now`, as (tenant, seq).
    pub(crate) async fn expired_events(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .q(
                "SELECT tenant, seq FROM events WHERE expires_at <= $1
                 ORDER BY expires_at, tenant, seq LIMIT $2",
                &[&db_ms(now), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(io)?;
        Ok(rows.iter().map(|r| (r.get(0), ms(r.get(1)))).collect())
    }

    /// Forgets events, given as (tenant, seq), with their deliveries.
    pub(crate) async fn remove_events(&self, events: &[(String, u64)]) -> Result<(), StoreError> {
        for chunk in events.chunks(100) {
            in_txn!(self, |txn| {
                let mut deltas = Deltas::default();
                for (tenant, seq) in chunk {
                    let seq = db_ms(*seq);
                    let gone = txn
                        .q_opt(
                            "DELETE FROM events WHERE tenant = $1 AND seq = $2 RETURNING bytes",
                            &[tenant, &seq],
                        )
                        .await?;
                    if let Some(row) = gone {
                        let bytes: i64 = row.get(0);
                        deltas.add(tenant, "", EVENTS, -1);
                        deltas.add(tenant, "", STORED_BYTES, -bytes);
                    }
                    txn.x(
                        "DELETE FROM event_deliveries WHERE tenant = $1 AND seq = $2",
                        &[tenant, &seq],
                    )
                    .await?;
                }
                deltas.write(&txn).await?;
                Ok(())
            })?;
        }
        Ok(())
    }
}
