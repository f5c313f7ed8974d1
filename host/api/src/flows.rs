//! Events as the API takes and shows them: `POST /v1/events` and `GET /v1/events`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stepwise_core::Millis;
use utoipa::ToSchema;

/// `POST /v1/events`: an event for the waits of the tenant's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    /// 1–128 bytes of ASCII letters, digits and `. _ - : /` (`payment.succeeded`).
    #[schema(
        pattern = "^[A-Za-z0-9._:/-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub name: String,
    /// 1–256 bytes; a wait matches only events with exactly its key (none: only events sent
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub correlation_key: Option<String>,
    /// Any JSON value, at most 256 KiB by default; handed to the waits it matches.
    #[serde(default)]
    pub payload: Value,
    /// Makes the send idempotent: the same id with the same name, key and payload answers the
    /// first event and stores nothing; with another body, `409 event_conflict`. 1–128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub id: Option<String>,
}

/// A wait that took an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resumed {
    /// The run.
    pub run: String,
    /// Its waiting step.
    pub step: String,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// The sender's id, or one the host made up (`evt_...`).
    pub id: String,
    /// Its position among the tenant's events (later is higher); `GET /v1/events`
    /// pages by it.
    pub seq: u64,
    /// Its name.
    pub name: String,
    /// Its correlation key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// Its payload.
    pub payload: Value,
    /// When it was received (ms since the Unix epoch).
    pub received_at: Millis,
    /// When it is forgotten (its retention ends).
    pub expires_at: Millis,
    /// The waits that took it so far (at most 100 listed).
    pub resumed: Vec<Resumed>,
}

impl Event {
    /// The view of a stored event with the waits that took it.
    pub fn from_record(e: stepwise_core::flow::EventRecord, resumed: Vec<Resumed>) -> Self {
        Self {
            id: e.id,
            seq: e.seq,
            name: e.name,
            correlation_key: e.correlation_key,
            payload: e.payload,
            received_at: e.received_at,
            expires_at: e.expires_at,
            resumed,
        }
    }
}

/// `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventSent {
    /// The stored event (for a repeated id: the first one).
    pub event: Event,
    /// Waiting runs this event made due now (0 for a repeat). Runs that reach their wait
    /// later take it then.
    pub woken: u64,
    /// Whether this id was sent before, so nothing new was stored.
    pub repeated: bool,
}

/// `GET /v1/events`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<Event>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}
