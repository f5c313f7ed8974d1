//! The server-sent events of `GET /v1/runs/{id}/events`, which follow a run until it ends:
//!
//! - `state` ([`RunProgress`]): the run's state, when it changes — first at once;
//! - `timeline` ([`TimelineEvent`]): each timeline entry from the requested position on, its
//!   position as the event id (reconnect with `Last-Event-ID` or `?from=` to resume);
//! - `end` ([`crate::Run`]): the run once final; the stream then closes;
//! - `gone` ([`crate::ErrorBody`]): the run no longer exists (purged); the stream closes.

use serde::{Deserialize, Serialize};
use stepwise_core::model::TimelineEntry;
use utoipa::ToSchema;

use crate::run::RunState;

/// The names of the events, as sent in `event:`.
pub mod names {
    /// [`super::RunProgress`].
    pub const STATE: &str = "state";
    /// [`super::TimelineEvent`].
    pub const TIMELINE: &str = "timeline";
    /// The final [`crate::Run`].
    pub const END: &str = "end";
    /// The run is gone ([`crate::ErrorBody`]).
    pub const GONE: &str = "gone";
}

/// One event as the stream carries it (`event:`, `id:`, `data:` lines): what the OpenAPI
/// document describes the `text/event-stream` answer with. `data` is the JSON text of the
/// event's body, one of the types below by `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    /// `state`, `timeline`, `end` or `gone`.
    #[schema(pattern = "^(state|timeline|end|gone)$")]
    pub event: String,
    /// The event's body as JSON text: [`RunProgress`], [`TimelineEvent`], the final run, or
    /// an error body.
    pub data: String,
    /// For `timeline`: the entry's position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Where a followed run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunProgress {
    /// Its state.
    pub status: RunState,
    /// Handler invocations so far.
    pub attempts: u32,
    /// The attempt executing now, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executing: Option<ExecutingAttempt>,
}

/// An attempt executing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutingAttempt {
    /// Its number.
    pub attempt: u32,
    /// The step it is in, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// One new timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEvent {
    /// Its position in the run's timeline (from 0).
    pub position: u32,
    /// The entry.
    pub entry: TimelineEntry,
}
