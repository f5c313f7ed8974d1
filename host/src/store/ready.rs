//! The ready index held in memory: every run waiting for an attempt, by due time.
//!
//! It mirrors the `ready` table, which stays the durable truth: it is loaded from that table
//! when the store opens, and the writer thread applies each committed batch's ready moves to it
//! before acknowledging the batch. The scheduler asks it what is due several times per attempt;
//! answering from memory instead of a read transaction takes that work off the hot path.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use crate::clock::Millis;

/// Runs waiting for an attempt, ordered by (due time, run id).
#[derive(Debug, Default)]
pub(super) struct ReadyIndex {
    entries: Mutex<BTreeSet<(Millis, String)>>,
}

impl ReadyIndex {
    /// An index holding `entries`.
    pub fn new(entries: impl IntoIterator<Item = (Millis, String)>) -> Self {
        Self {
            entries: Mutex::new(entries.into_iter().collect()),
        }
    }

    /// Moves `run` from `old` to `new` (either may be absent), as a committed batch did.
    pub fn apply(&self, run: &str, old: Option<Millis>, new: Option<Millis>) {
        let mut entries = self.entries.lock().expect("ready index");
        if let Some(old) = old {
            entries.remove(&(old, run.to_owned()));
        }
        if let Some(new) = new {
            entries.insert((new, run.to_owned()));
        }
    }

    /// Up to `limit` runs due at or before `now` and not in `skip`, earliest first.
    pub fn due(&self, now: Millis, limit: usize, skip: &HashSet<String>) -> Vec<(Millis, String)> {
        let entries = self.entries.lock().expect("ready index");
        entries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, id)| !skip.contains(id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The earliest due time of a run not in `skip`.
    pub fn next_due(&self, skip: &HashSet<String>) -> Option<Millis> {
        let entries = self.entries.lock().expect("ready index");
        entries
            .iter()
            .find(|(_, id)| !skip.contains(id))
            .map(|(at, _)| *at)
    }

    /// Every entry, earliest first.
    pub fn all(&self) -> Vec<(Millis, String)> {
        self.entries
            .lock()
            .expect("ready index")
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_skips_and_orders_by_due_time() {
        let index = ReadyIndex::new([(30, "c".to_owned()), (10, "a".to_owned())]);
        index.apply("b", None, Some(20));
        index.apply("a", Some(10), Some(40));
        let none = HashSet::new();
        assert_eq!(
            index.due(30, 10, &none),
            vec![(20, "b".to_owned()), (30, "c".to_owned())]
        );
        assert_eq!(index.due(30, 1, &none), vec![(20, "b".to_owned())]);
        let skip: HashSet<String> = ["b".to_owned()].into();
        assert_eq!(index.due(30, 10, &skip), vec![(30, "c".to_owned())]);
        assert_eq!(index.next_due(&skip), Some(30));
        index.apply("c", Some(30), None);
        index.apply("a", Some(40), None);
        assert_eq!(index.next_due(&skip), None);
        assert_eq!(index.all(), vec![(20, "b".to_owned())]);
    }
}
