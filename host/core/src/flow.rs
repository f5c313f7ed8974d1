//! Flows between runs: events a run waits for, children a run starts, and what a suspended run
//! waits on. Stored on run and step records and shown as they are by the API.
//!
//! **Which events a wait matches.** A wait for `(name, correlation_key)` matches the earliest
//! event of its tenant with that name and exactly that key (none matches only events sent
//! without one) that was received at or after the millisecond its run was created, no later
//! than the wait's deadline, and not already taken by an earlier wait of the same run. So an
//! event sent after the run was enqueued but before its handler reached the wait is not
//! missed, and every run waiting on a key gets the event (broadcast), each once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 128;
/// Longest correlation key, in bytes.
pub const MAX_CORRELATION_KEY: usize = 256;
/// Longest event id given by a sender, in bytes.
pub const MAX_EVENT_ID: usize = 128;
/// Most children one step may start.
pub const MAX_CHILDREN_PER_STEP: usize = 1_000;
/// Deepest nesting of child runs (a run started by a run started by ...).
pub const MAX_CHILD_DEPTH: u32 = 8;

/// Checks an event name: 1–128 bytes of ASCII letters, digits and `. _ - : /`.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(format!(
            "event name must be 1-{MAX_EVENT_NAME} bytes, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')))
    {
        return Err(format!(
            "event name '{}' has '{}': use ASCII letters, digits and . _ - : /",
            crate::text::prefix(name, 64),
            c.escape_default()
        ));
    }
    Ok(())
}

/// Checks a correlation key: 1–256 bytes with no control characters.
pub fn check_correlation_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_CORRELATION_KEY {
        return Err(format!(
            "correlation key must be 1-{MAX_CORRELATION_KEY} bytes, got {}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("correlation key has a control character".to_owned());
    }
    Ok(())
}

/// Checks an event id given by a sender: 1–128 bytes with no control characters.
pub fn check_event_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_EVENT_ID {
        return Err(format!(
            "event id must be 1-{MAX_EVENT_ID} bytes, got {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("event id has a control character".to_owned());
    }
    Ok(())
}

/// A stored event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The sender's id, or one the host made up (`evt_...`). Unique per tenant.
    pub id: String,
    /// Its position among its tenant's events, from 1: later events have higher
    /// numbers.
    pub seq: u64,
    /// The event's name.
    pub name: String,
    /// The correlation key, when it was sent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// The payload handed to the waits it matches.
    pub payload: Value,
    /// When the host received it.
    pub received_at: Millis,
    /// When it is forgotten (its retention ends).
    pub expires_at: Millis,
    /// sha256 (hex) of its name, key and payload: a repeated send with the same id must match.
    pub body_hash: String,
}

/// How a run started by a step relates to the run that started it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent run.
    pub run: String,
    /// The parent's step that started it.
    pub step: String,
    /// 1 for a child of a top-level run, 2 for its grandchild, ...
    pub depth: u32,
}

/// The event a wait took.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedEvent {
    /// The event's id.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// When it was received.
    pub received_at: Millis,
}

/// What an `event` or `child` step waits for (kept on its step record).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepWait {
    /// `ctx.wait_for_event`.
    Event {
        /// The event's name.
        name: String,
        /// The correlation key (none: only events sent without one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_key: Option<String>,
        /// When the wait times out.
        until: Millis,
        /// The event it took, once it took one (absent after a timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matched: Option<MatchedEvent>,
    },
    /// `ctx.invoke`, `ctx.invoke_all`, `ctx.spawn`.
    Children {
        /// The child runs, in the order the step asked for them.
        runs: Vec<String>,
        /// Whether the step waits for them to end (`invoke`) or not (`spawn`).
        join: bool,
    },
}

/// What a `waiting` run waits for (kept on its run record while it waits).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunWait {
    /// An event.
    Event {
        /// The waiting step.
        step: String,
        /// The event's name.
        name: String,
        /// Its correlation key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_key: Option<String>,
        /// When the wait times out.
        until: Millis,
        /// The tenant's newest event number when the wait looked: a later matching event
        /// wakes the run even when it arrived before the wait was stored.
        seen: u64,
    },
    /// Child runs, all of which must end.
    Children {
        /// The waiting step.
        step: String,
        /// The children.
        runs: Vec<String>,
    },
}

impl RunWait {
    /// The waiting step.
    pub fn step(&self) -> &str {
        match self {
            Self::Event { step, .. } | Self::Children { step, .. } => step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_keys_are_checked() {
        assert!(check_event_name("payment.succeeded").is_ok());
        assert!(check_event_name("a/b:c-d_e").is_ok());
        assert!(check_event_name("").is_err());
        assert!(check_event_name("has space").is_err());
        assert!(check_event_name(&"x".repeat(129)).is_err());
        assert!(check_correlation_key("order-1").is_ok());
        assert!(check_correlation_key("").is_err());
        assert!(check_correlation_key("a\nb").is_err());
        assert!(check_event_id(&"i".repeat(129)).is_err());
    }

    #[test]
    fn waits_serialize_with_their_kind() {
        let w = RunWait::Children {
            step: "fan".into(),
            runs: vec!["run_1".into()],
        };
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["kind"], "children");
        assert_eq!(serde_json::from_value::<RunWait>(json).unwrap(), w);
    }
}
