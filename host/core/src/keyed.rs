//! Keyed pending runs: at most one run per (tenant, queue, job, key) that has not started
//! yet, which a later enqueue with the same key keeps, refuses or replaces — DelayKit's
//! `schedule(handler, {key, delay})` — and debounce, which is replacing with a start time
//! pushed back by each enqueue.
//!
//! The rules live here, apart from storage, so every backend decides alike: which stored run
//! still counts as pending ([`is_pending`]), and what a replacement changes ([`replace`]).
//! The backend applies them inside the transaction that creates or rewrites the run, which
//! is what makes concurrent enqueues of one key leave exactly one pending run.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::model::{RunRecord, RunStatus};

/// What an enqueue does when a pending run already holds its key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Refused with `409 pending_run_exists`, naming the run.
    #[default]
    Reject,
    /// The pending run is returned unchanged.
    Keep,
    /// The pending run takes the new payload, start time, priority and policy overrides.
    Replace,
}

impl OnDuplicate {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Keep => "keep",
            Self::Replace => "replace",
        }
    }
}

/// Debounce timing: the run starts once `period_ms` passed without another enqueue of its
/// key, or `max_wait_ms` after the first one, whichever is first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debounce {
    /// Quiet time after the last enqueue.
    pub period_ms: u64,
    /// Longest delay after the first enqueue, if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
}

impl Debounce {
    /// When a debounced run first enqueued at `first_at` and last enqueued at `now` starts.
    pub fn due_at(&self, first_at: Millis, now: Millis) -> Millis {
        let quiet = now.saturating_add(self.period_ms);
        match self.max_wait_ms {
            Some(max) => quiet.min(first_at.saturating_add(max)),
            None => quiet,
        }
    }
}

/// The key a run was enqueued under, on its record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKey {
    /// The key (1–256 bytes), unique among the pending runs of one queue and job.
    pub key: String,
    /// What a later enqueue with the key does while this run is pending.
    pub on_duplicate: OnDuplicate,
    /// For a debounced run: its timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Debounce>,
    /// When the first enqueue of this run was made.
    pub first_at: Millis,
    /// How many later enqueues replaced its payload and start.
    #[serde(default)]
    pub replaced: u32,
}

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Replacements that each get their own timeline entry; later ones are only counted
/// ([`RunKey::replaced`]), so a hot debounce key cannot grow one run's timeline without bound.
pub const TIMELINED_REPLACEMENTS: u32 = 50;

/// Whether `run` still counts as pending for its key: queued, never attempted, with no step
/// recorded and not claimed by an attempt (`claimed`, as the backend knows it). A run that
/// started even once is left alone, and a new enqueue creates a new run.
pub fn is_pending(run: &RunRecord, has_steps: bool, claimed: bool) -> bool {
    run.status == RunStatus::Queued && run.attempts == 0 && !has_steps && !claimed
}

/// What a replacement does to the pending run `held`: it takes `new`'s payload, module,
/// policy, overrides, priority and `rate_key`, and starts at `new`'s start time — or, when
/// `new` is debounced, at `new`'s period after its enqueue, bounded by `new`'s max wait after
/// the first enqueue of `held`. Returns the run's new start time.
pub fn replace(held: &mut RunRecord, new: &RunRecord) -> Millis {
    let now = new.created_at;
    let first_at = held.key.as_ref().map_or(held.created_at, |k| k.first_at);
    let debounce = new.key.as_ref().and_then(|k| k.debounce);
    let due = match debounce {
        Some(debounce) => debounce.due_at(first_at, now),
        None => new.ready_at.unwrap_or(now),
    };
    held.payload = new.payload.clone();
    held.module = new.module.clone();
    held.policy = new.policy;
    held.overrides = new.overrides;
    held.priority = new.priority;
    held.rate_key = new.rate_key.clone();
    held.ready_at = Some(due);
    held.updated_at = held.updated_at.max(now);
    if let Some(key) = held.key.as_mut() {
        key.replaced = key.replaced.saturating_add(1);
        key.debounce = debounce;
        if let Some(on_duplicate) = new.key.as_ref().map(|k| k.on_duplicate) {
            key.on_duplicate = on_duplicate;
        }
    }
    due
}

/// The timeline entry of a replacement that made `held` start at `due`, or `None` past
/// [`TIMELINED_REPLACEMENTS`].
pub fn replacement_entry(held: &RunRecord, due: Millis) -> Option<crate::model::TimelineEntry> {
    let key = held.key.as_ref()?;
    if key.replaced > TIMELINED_REPLACEMENTS {
        return None;
    }
    let what = if key.debounce.is_some() {
        "debounced: a later enqueue with key"
    } else {
        "replaced: a later enqueue with key"
    };
    let mut detail = format!(
        "{what} '{}' set the payload; starts at {}",
        crate::text::prefix(&key.key, 64),
        crate::time_fmt::rfc3339(due)
    );
    if key.replaced == TIMELINED_REPLACEMENTS {
        detail.push_str(" (later replacements are only counted, in `key.replaced`)");
    }
    Some(crate::model::TimelineEntry {
        at: held.updated_at,
        kind: crate::model::EventKind::Replaced,
        attempt: None,
        step: None,
        detail,
        http: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(id: &str, debounce: Option<Debounce>, at: Millis) -> RunRecord {
        let mut run: RunRecord = serde_json::from_value(serde_json::json!({
            "id": id, "job": "j", "queue": "q", "module": "m1", "payload": {"n": 1},
            "policy": crate::policy::Policy::default(), "status": "queued", "attempts": 0,
            "created_at": at, "updated_at": at, "ready_at": at
        }))
        .unwrap();
        run.key = Some(RunKey {
            key: "k".into(),
            on_duplicate: OnDuplicate::Replace,
            debounce,
            first_at: at,
            replaced: 0,
        });
        run
    }

    #[test]
    fn a_replacement_takes_the_new_request_whole_and_its_debounce() {
        let mut held = keyed("a", None, 0);
        let mut new = keyed("b", None, 100);
        new.payload = serde_json::json!({"n": 2});
        new.module = "m2".into();
        new.rate_key = Some("r".into());
        new.ready_at = Some(5_000);
        assert_eq!(replace(&mut held, &new), 5_000);
        assert_eq!(
            (
                held.id.as_str(),
                held.module.as_str(),
                held.rate_key.as_deref()
            ),
            ("a", "m2", Some("r"))
        );
        assert_eq!(held.payload, serde_json::json!({"n": 2}));
        // A debounced request: its own period, bounded from the held run's first enqueue.
        let d = Debounce {
            period_ms: 1_000,
            max_wait_ms: Some(1_500),
        };
        let later = keyed("c", Some(d), 900);
        assert_eq!(replace(&mut held, &later), 1_500);
        let key = held.key.as_ref().unwrap();
        assert_eq!((key.replaced, key.debounce, key.first_at), (2, Some(d), 0));
    }

    #[test]
    fn a_debounced_start_is_the_quiet_period_after_the_last_enqueue_bounded_by_max_wait() {
        let d = Debounce {
            period_ms: 1_000,
            max_wait_ms: None,
        };
        assert_eq!(d.due_at(0, 900), 1_900);
        let bounded = Debounce {
            max_wait_ms: Some(1_500),
            ..d
        };
        assert_eq!(bounded.due_at(0, 200), 1_200);
        assert_eq!(bounded.due_at(0, 900), 1_500);
        assert_eq!(bounded.due_at(u64::MAX - 1, u64::MAX), u64::MAX);
    }
}
