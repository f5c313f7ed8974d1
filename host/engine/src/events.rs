//! Events: sending one (idempotent by id, tenant-scoped, kept for the retention), listing
//! them with the waits that took each, and forgetting them once their retention ends. The
//! matching itself is the journal's (`journal/flows.rs`); waking waiting runs is the storage
//! backend's, in the same write that stores the event.

use super::{Engine, EngineError};
use stepwise_core::flow::{self, EventRecord};
use stepwise_store::{EventFilter, EventPut, NewEvent};

/// Limits and retention of events. Every default is stated on [`EventLimits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// How long an event is kept (and can be matched by a wait reached later), in ms.
    pub retention_ms: u64,
    /// Largest event payload, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Most events one tenant may have stored at once.
    pub max_per_tenant: u64,
}

impl Default for EventLimits {
    /// Events are kept 24 h, payloads up to 256 KiB, 100,000 stored events per tenant.
    fn default() -> Self {
        Self {
            retention_ms: 24 * 60 * 60 * 1_000,
            max_payload_bytes: 256 << 10,
            max_per_tenant: 100_000,
        }
    }
}

/// An event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendEvent {
    /// Its name.
    pub name: String,
    /// Its correlation key.
    pub correlation_key: Option<String>,
    /// Its payload (JSON text).
    pub payload: String,
    /// The sender's id: a repeated send with this id and the same body stores nothing and
    /// answers the first event.
    pub id: Option<String>,
}

/// What sending an event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The stored event (the first one, for a repeated id).
    pub event: EventRecord,
    /// Waiting runs made due by it (0 for a repeat).
    pub woken: u64,
    /// Whether an event with this id was stored before, so nothing was stored now.
    pub repeated: bool,
    /// (run, step) of the waits that took it so far, at most [`MAX_LISTED_DELIVERIES`]
    /// (none for a new event).
    pub resumed: Vec<(String, String)>,
}

/// An event with the waits that took it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedEvent {
    /// The event.
    pub event: EventRecord,
    /// (run, step) of the waits that took it, at most [`MAX_LISTED_DELIVERIES`].
    pub resumed: Vec<(String, String)>,
}

/// Most deliveries listed per event.
pub const MAX_LISTED_DELIVERIES: usize = 100;

/// Most events removed per sweep step.
const SWEEP_BATCH: usize = 1_000;

impl Engine {
    /// Stores an event for `tenant` and wakes the runs waiting on it. Nothing is stored
    /// unless every check passes.
    pub async fn send_event(&self, tenant: &str, send: SendEvent) -> Result<Sent, EngineError> {
        let inner = &self.inner;
        let limits = inner.config.events;
        let invalid = EngineError::InvalidEvent;
        flow::check_event_name(&send.name).map_err(invalid)?;
        if let Some(key) = &send.correlation_key {
            flow::check_correlation_key(key).map_err(invalid)?;
        }
        if let Some(id) = &send.id {
            flow::check_event_id(id).map_err(invalid)?;
        }
        let payload = crate::enqueue::parse_payload(&send.payload, limits.max_payload_bytes)?;
        let body_hash = crate::enqueue::payload_hash(&serde_json::json!({
            "name": send.name,
            "correlation_key": send.correlation_key,
            "payload": payload,
        }));
        if let Some(id) = &send.id
            && let Some(held) = inner.store.event(tenant, id).await?
        {
            return self.repeat(tenant, held, &body_hash).await;
        }
        let usage = inner.store.tenant_usage(tenant).await?;
        let stored_limit = inner.config.tenants.max_stored_bytes_of(tenant);
        for (what, limit, used) in [
            ("stored events", limits.max_per_tenant, usage.events),
            ("stored bytes", stored_limit, usage.stored_bytes),
        ] {
            if used >= limit {
                return Err(EngineError::QuotaExceeded {
                    tenant: tenant.to_owned(),
                    what,
                    limit,
                    used,
                });
            }
        }
        let now = inner.clock.now();
        let id = send
            .id
            .unwrap_or_else(|| format!("evt_{}", uuid::Uuid::now_v7().simple()));
        let new = NewEvent {
            id,
            name: send.name,
            correlation_key: send.correlation_key,
            payload,
            received_at: now,
            expires_at: now.saturating_add(limits.retention_ms),
            body_hash: body_hash.clone(),
        };
        match inner.store.put_event(tenant, new).await? {
            EventPut::Stored { event, woken } => {
                if woken > 0 {
                    inner.wake.notify_one();
                }
                tracing::info!(tenant, event = %event.id, name = %event.name, woken, "event received");
                Ok(Sent {
                    event,
                    woken,
                    repeated: false,
                    resumed: Vec::new(),
                })
            }
            // Sent twice at once: the other send stored it first.
            EventPut::Exists(held) => self.repeat(tenant, held, &body_hash).await,
        }
    }

    /// A tenant's events matching `filter`, newest first, numbered below `before`, with the
    /// waits that took each.
    pub async fn list_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ListedEvent>, EngineError> {
        let store = &self.inner.store;
        let events = store.list_events(tenant, filter, before, limit).await?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let resumed = store
                .event_deliveries(tenant, event.seq, MAX_LISTED_DELIVERIES)
                .await?;
            out.push(ListedEvent { event, resumed });
        }
        Ok(out)
    }

    /// The answer to a send whose id is held by `held`: that event (with the waits that took
    /// it) for the same body, a conflict otherwise.
    async fn repeat(
        &self,
        tenant: &str,
        held: EventRecord,
        body_hash: &str,
    ) -> Result<Sent, EngineError> {
        if held.body_hash != body_hash {
            return Err(EngineError::EventConflict { id: held.id });
        }
        let resumed = self
            .inner
            .store
            .event_deliveries(tenant, held.seq, MAX_LISTED_DELIVERIES)
            .await?;
        Ok(Sent {
            event: held,
            woken: 0,
            repeated: true,
            resumed,
        })
    }

    /// Forgets events whose retention ended; returns how many.
    pub async fn sweep_events(&self) -> Result<usize, EngineError> {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        let mut removed = 0;
        loop {
            let expired = store.expired_events(now, SWEEP_BATCH).await?;
            if expired.is_empty() {
                return Ok(removed);
            }
            store.remove_events(&expired).await?;
            removed += expired.len();
        }
    }
}
