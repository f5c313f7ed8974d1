//! What storage takes and hands back for events: a new event, what storing it did, a listing
//! filter, and a wait's delivery recorded on the event.

use serde_json::Value;

use stepwise_core::clock::Millis;
use stepwise_core::flow::EventRecord;

/// An event to store; the backend numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique per tenant: a second event with this id is not stored.
    pub id: String,
    /// The event's name.
    pub name: String,
    /// Its correlation key.
    pub correlation_key: Option<String>,
    /// Its payload.
    pub payload: Value,
    /// When it was received.
    pub received_at: Millis,
    /// When it is forgotten.
    pub expires_at: Millis,
    /// sha256 (hex) of its name, key and payload.
    pub body_hash: String,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPut {
    /// Stored, with its number; `woken` waiting runs were made due.
    Stored {
        /// The stored event.
        event: EventRecord,
        /// Waiting runs woken by it.
        woken: u64,
    },
    /// An event with this id was stored before; this is it (nothing was stored).
    Exists(EventRecord),
}

/// Which events [`crate::Store::list_events`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with this name.
    pub name: Option<String>,
    /// Only events with this correlation key (with `name`; alone it filters one page of
    /// the unfiltered listing).
    pub correlation_key: Option<String>,
}

/// A wait of a run that took an event, recorded with the step's completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's tenant.
    pub tenant: String,
    /// The event's number.
    pub seq: u64,
    /// The waiting step.
    pub step: String,
}
