//! The ready index held in memory: every run waiting for an attempt, organised for fair
//! claiming — by tenant, then queue, then priority and due time — plus the runs claimed by
//! attempts executing now and what they hold (slots per tenant and queue, memory).
//!
//! It mirrors the `ready` table, which stays the durable truth: it is loaded from that table
//! (with each run's placement) when the store opens, and the writer thread applies each
//! committed batch's ready moves to it before acknowledging the batch.
//!
//! Claiming is weighted fair sharing of attempt slots across tenants, decided by
//! [`stepwise_core::picker`] over this index's per-tenant and per-queue sets: the index only
//! keeps those sets (and what claimed runs hold) current. Written by hand: no crate offers a
//! multi-level fair queue with claims and per-level caps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use stepwise_core::clock::Millis;
use stepwise_store::{Claimed, Lease, Occupancy, Placement, QueueId};

/// The holder of every claim of the embedded store: the one process that has the file open.
pub const LOCAL_HOLDER: &str = "local";
pub use stepwise_core::picker::ClaimPolicy;
use stepwise_core::picker::{self, MemoryInUse, QueueHead, TenantLoad};

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In `pending`, not yet due.
    Pending,
    /// In its queue's due set.
    Due,
    /// Its run is claimed; the entry waits for the claim's release.
    Parked,
}

#[derive(Debug)]
struct Entry {
    /// When it is due (the durable time, or later for a run held back after a host fault).
    at: Millis,
    placement: Placement,
    place: Place,
}

type DueKey = (Reverse<i32>, Millis, Arc<str>);

#[derive(Debug, Default)]
struct TenantState {
    /// Due runs by queue name.
    queues: BTreeMap<String, BTreeSet<DueKey>>,
    running: usize,
    running_per_queue: HashMap<String, usize>,
    /// Milliseconds of attempts served, for tie-breaks between equally loaded tenants.
    served_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    /// Entries parked behind a claim, so the unclaimed ones are counted without a scan.
    parked: usize,
    pending: BTreeSet<(Millis, Arc<str>)>,
    tenants: BTreeMap<String, TenantState>,
    claimed: HashMap<Arc<str>, Placement>,
    memory_in_use: u64,
    /// One shared name per queue, however many of its runs wait.
    queue_names: HashMap<QueueId, Arc<QueueId>>,
    /// Entries taken out of claiming while a write that needs their run unclaimed commits.
    fenced: HashMap<Arc<str>, Entry>,
}

/// The index. See the module docs.
#[derive(Debug, Default)]
pub(super) struct ReadyIndex {
    inner: Mutex<Inner>,
}

impl Inner {
    fn insert(&mut self, run: Arc<str>, at: Millis, mut placement: Placement) {
        placement.queue = self.intern(&placement.queue);
        let place = if self.claimed.contains_key(&run) {
            self.parked += 1;
            Place::Parked
        } else {
            self.pending.insert((at, run.clone()));
            Place::Pending
        };
        self.entries.insert(
            run,
            Entry {
                at,
                placement,
                place,
            },
        );
    }

    fn intern(&mut self, queue: &Arc<QueueId>) -> Arc<QueueId> {
        self.queue_names
            .entry(QueueId::clone(queue))
            .or_insert_with(|| queue.clone())
            .clone()
    }

    fn remove(&mut self, run: &str) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(run)?;
        match entry.place {
            Place::Pending => {
                self.pending.remove(&(entry.at, key));
            }
            Place::Due => {
                let q = &entry.placement.queue;
                if let Some(t) = self.tenants.get_mut(&q.tenant)
                    && let Some(set) = t.queues.get_mut(&q.queue)
                {
                    set.remove(&(Reverse(entry.placement.priority), entry.at, key));
                    if set.is_empty() {
                        t.queues.remove(&q.queue);
                    }
                }
            }
            Place::Parked => self.parked = self.parked.saturating_sub(1),
        }
        Some(entry)
    }

    /// Moves every pending entry due at `now` into its queue's due set.
    fn promote(&mut self, now: Millis) {
        while let Some(first) = self.pending.first() {
            if first.0 > now {
                break;
            }
            let (at, run) = self.pending.pop_first().expect("checked above");
            let Some(entry) = self.entries.get_mut(&run) else {
                continue;
            };
            entry.place = Place::Due;
            let q = entry.placement.queue.clone();
            let key = (Reverse(entry.placement.priority), at, run);
            self.tenants
                .entry(q.tenant.clone())
                .or_default()
                .queues
                .entry(q.queue.clone())
                .or_default()
                .insert(key);
        }
    }

    /// The tenant the next slot goes to, with its best startable run ([`picker`] decides).
    fn choose(&self, policy: &dyn ClaimPolicy, skip: &[&str]) -> Choice {
        let loads = self.tenants.iter().filter_map(|(name, t)| {
            (!t.queues.is_empty() && !skip.contains(&name.as_str())).then_some(TenantLoad {
                tenant: name,
                running: t.running,
                served_ms: t.served_ms,
            })
        });
        let Some(tenant) = picker::pick_tenant(loads, policy) else {
            return Choice::Nothing;
        };
        let t = &self.tenants[tenant];
        let heads = t.queues.iter().filter_map(|(queue, set)| {
            let first = set.first()?;
            let entry = self.entries.get(&first.2)?;
            Some(QueueHead {
                queue,
                running: t.running_per_queue.get(queue).copied().unwrap_or(0),
                priority: first.0.0,
                due_at: first.1,
                memory_bytes: entry.placement.memory_bytes,
                key: &first.2,
            })
        });
        let memory = MemoryInUse {
            bytes: self.memory_in_use,
            idle: self.claimed.is_empty(),
        };
        match picker::pick_head(tenant, heads, policy, memory) {
            Some(run) => Choice::Run(run.clone()),
            None => Choice::Blocked(tenant.to_owned()),
        }
    }
}

enum Choice {
    Run(Arc<str>),
    /// The tenant has due runs, none startable now.
    Blocked(String),
    Nothing,
}

impl ReadyIndex {
    /// An index holding `entries`.
    pub fn new(entries: impl IntoIterator<Item = (Millis, String, Placement)>) -> Self {
        let mut inner = Inner::default();
        for (at, run, placement) in entries {
            inner.insert(run.into(), at, placement);
        }
        Self {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves `run` to `new` (or out of the index), as a committed batch did.
    pub fn apply(&self, run: &str, new: Option<(Millis, &Placement)>) {
        let mut inner = self.lock();
        inner.remove(run);
        if let Some((at, placement)) = new {
            inner.insert(run.into(), at, placement.clone());
        }
    }

    /// Claims up to `room` due runs, fairly across tenants (see the module docs).
    pub fn claim(&self, now: Millis, room: usize, policy: &dyn ClaimPolicy) -> Vec<Claimed> {
        let mut inner = self.lock();
        inner.promote(now);
        let mut out = Vec::new();
        let mut blocked: Vec<String> = Vec::new();
        while out.len() < room {
            let skip: Vec<&str> = blocked.iter().map(String::as_str).collect();
            let run = match inner.choose(policy, &skip) {
                Choice::Run(run) => run,
                Choice::Blocked(tenant) => {
                    blocked.push(tenant);
                    continue;
                }
                Choice::Nothing => break,
            };
            let Some(entry) = inner.remove(&run) else {
                break;
            };
            let placement = entry.placement.clone();
            let q = placement.queue.clone();
            let t = inner.tenants.entry(q.tenant.clone()).or_default();
            t.running += 1;
            *t.running_per_queue.entry(q.queue.clone()).or_default() += 1;
            inner.memory_in_use = inner.memory_in_use.saturating_add(placement.memory_bytes);
            inner.claimed.insert(run.clone(), placement.clone());
            // The run keeps its durable entry until its attempt settles; parked meanwhile.
            inner.parked += 1;
            inner.entries.insert(
                run.clone(),
                Entry {
                    at: entry.at,
                    placement: placement.clone(),
                    place: Place::Parked,
                },
            );
            out.push(Claimed {
                run: run.to_string(),
                placement,
                // One process holds the index: its claims last as long as it does.
                lease: Lease {
                    holder: LOCAL_HOLDER.to_owned(),
                    expires_at: Millis::MAX,
                },
            });
        }
        out
    }

    /// Ends the claim on `run`: its slot and memory are free again, `served_ms` of attempt
    /// time is charged to its tenant, and its entry (if the attempt left one) becomes
    /// claimable — no earlier than `hold_until` when given.
    pub fn release(&self, run: &str, served_ms: u64, hold_until: Option<Millis>) {
        let mut inner = self.lock();
        let Some((key, placement)) = inner.claimed.remove_entry(run) else {
            return;
        };
        inner.memory_in_use = inner.memory_in_use.saturating_sub(placement.memory_bytes);
        let q = &placement.queue;
        if let Some(t) = inner.tenants.get_mut(&q.tenant) {
            t.running = t.running.saturating_sub(1);
            t.served_ms = t.served_ms.saturating_add(served_ms);
            if let Some(n) = t.running_per_queue.get_mut(&q.queue) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.running_per_queue.remove(&q.queue);
                }
            }
        }
        if let Some(entry) = inner.entries.remove(run) {
            if entry.place == Place::Parked {
                inner.parked = inner.parked.saturating_sub(1);
            }
            let at = hold_until.map_or(entry.at, |h| h.max(entry.at));
            inner.insert(key, at, entry.placement);
        }
    }

    /// Takes `run` out of claiming until [`ReadyIndex::unfence`], so a write that must find it
    /// unclaimed (a replacement of a pending run's payload) cannot race an attempt reading the
    /// old one. `false` when an attempt holds it already.
    pub fn fence(&self, run: &str) -> bool {
        let mut inner = self.lock();
        if inner.claimed.contains_key(run) {
            return false;
        }
        if inner.fenced.contains_key(run) {
            return true;
        }
        if let Some(key) = inner.entries.get_key_value(run).map(|(k, _)| k.clone())
            && let Some(entry) = inner.remove(run)
        {
            inner.fenced.insert(key, entry);
        }
        true
    }

    /// Ends `run`'s fence. When the write was applied its own move placed the run again;
    /// otherwise the entry goes back as it was.
    pub fn unfence(&self, run: &str, applied: bool) {
        let mut inner = self.lock();
        if let Some((key, entry)) = inner.fenced.remove_entry(run)
            && !applied
            && !inner.entries.contains_key(run)
        {
            inner.insert(key, entry.at, entry.placement);
        }
    }

    /// Makes `run`, waiting unclaimed, due at `at` (its stored time) instead of later.
    pub fn lift_hold(&self, run: &str, at: Millis) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get(run) else {
            return;
        };
        if entry.place == Place::Parked || entry.at <= at {
            return;
        }
        if let Some((key, _)) = inner
            .entries
            .get_key_value(run)
            .map(|(k, e)| (k.clone(), e.at))
            && let Some(entry) = inner.remove(run)
        {
            inner.insert(key, at, entry.placement);
        }
    }

    /// Whether `run` is claimed by an executing attempt.
    pub fn is_claimed(&self, run: &str) -> bool {
        self.lock().claimed.contains_key(run)
    }

    /// The earliest due time of a run not yet due at the last claim, if any.
    pub fn next_pending(&self) -> Option<Millis> {
        self.lock().pending.first().map(|(at, _)| *at)
    }

    /// Whether any run is waiting (due or not) that is not claimed.
    pub fn has_unclaimed(&self) -> bool {
        let inner = self.lock();
        inner.entries.len() > inner.parked
    }

    /// What the claimed runs hold, and how many runs wait.
    pub fn occupancy(&self) -> Occupancy {
        let inner = self.lock();
        let mut o = Occupancy {
            running: inner.claimed.len(),
            memory_in_use: inner.memory_in_use,
            waiting: inner.entries.len().saturating_sub(inner.parked),
            ..Occupancy::default()
        };
        for p in inner.claimed.values() {
            *o.running_by_tenant
                .entry(p.queue.tenant.clone())
                .or_default() += 1;
            *o.running_by_queue
                .entry((p.queue.tenant.clone(), p.queue.queue.clone()))
                .or_default() += 1;
        }
        o
    }

    /// Every entry, earliest first.
    pub fn all(&self) -> Vec<(Millis, String)> {
        let inner = self.lock();
        let mut out: Vec<(Millis, String)> = inner
            .entries
            .iter()
            .map(|(id, e)| (e.at, id.to_string()))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Limits {
        tenant: usize,
        queue: Option<usize>,
        memory: u64,
        weights: HashMap<String, u64>,
    }

    impl Default for Limits {
        fn default() -> Self {
            Self {
                tenant: usize::MAX,
                queue: None,
                memory: u64::MAX,
                weights: HashMap::new(),
            }
        }
    }

    impl ClaimPolicy for Limits {
        fn tenant_limit(&self, _: &str) -> usize {
            self.tenant
        }
        fn tenant_weight(&self, tenant: &str) -> u64 {
            self.weights.get(tenant).copied().unwrap_or(1)
        }
        fn queue_limit(&self, _: &str, _: &str) -> Option<usize> {
            self.queue
        }
        fn memory_budget(&self) -> u64 {
            self.memory
        }
    }

    fn place(tenant: &str, queue: &str, priority: i32, memory: u64) -> Placement {
        Placement {
            queue: Arc::new(QueueId {
                tenant: tenant.into(),
                queue: queue.into(),
            }),
            priority,
            memory_bytes: memory,
        }
    }

    fn ids(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.run.as_str()).collect()
    }

    #[test]
    fn due_order_within_a_tenant_is_priority_then_time() {
        let index = ReadyIndex::new([
            (30, "c".to_owned(), place("t", "q", 0, 1)),
            (10, "a".to_owned(), place("t", "q", 0, 1)),
            (20, "hi".to_owned(), place("t", "q", 5, 1)),
            (50, "later".to_owned(), place("t", "q", 9, 1)),
        ]);
        let got = index.claim(30, 10, &Limits::default());
        assert_eq!(ids(&got), vec!["hi", "a", "c"]);
        assert_eq!(index.next_pending(), Some(50));
        assert!(index.is_claimed("a"));
    }

    #[test]
    fn slots_alternate_between_tenants_whatever_their_backlogs_and_priorities() {
        let mut entries = Vec::new();
        for i in 0..50_000 {
            entries.push((i, format!("a{i:05}"), place("a", "q", i32::MAX, 1)));
        }
        entries.push((60_000, "b0".to_owned(), place("b", "q", 0, 1)));
        entries.push((60_001, "b1".to_owned(), place("b", "q", 0, 1)));
        let index = ReadyIndex::new(entries);
        let got = index.claim(100_000, 4, &Limits::default());
        let tenants: Vec<&str> = got
            .iter()
            .map(|c| c.placement.queue.tenant.as_str())
            .collect();
        assert_eq!(tenants, vec!["a", "b", "a", "b"]);
    }

    #[test]
    fn weights_scale_a_tenants_share_and_caps_bound_it() {
        let mut entries = Vec::new();
        for i in 0..100 {
            entries.push((i, format!("a{i:03}"), place("a", "q", 0, 1)));
            entries.push((i, format!("b{i:03}"), place("b", "q", 0, 1)));
        }
        let index = ReadyIndex::new(entries);
        let limits = Limits {
            weights: [("a".to_owned(), 3)].into(),
            ..Limits::default()
        };
        let got = index.claim(1_000, 8, &limits);
        let a = got
            .iter()
            .filter(|c| c.placement.queue.tenant == "a")
            .count();
        assert_eq!((a, got.len() - a), (6, 2));
        let capped = Limits {
            tenant: 1,
            ..Limits::default()
        };
        // Each tenant already holds more than 1 slot: nothing more is claimed.
        assert!(index.claim(1_000, 8, &capped).is_empty());
    }

    #[test]
    fn queue_limits_and_the_memory_budget_hold_runs_back_until_release() {
        let index = ReadyIndex::new([
            (1, "q1".to_owned(), place("t", "one", 0, 10)),
            (2, "q2".to_owned(), place("t", "one", 0, 10)),
            (3, "big".to_owned(), place("t", "two", 0, 100)),
        ]);
        let limits = Limits {
            queue: Some(1),
            memory: 50,
            ..Limits::default()
        };
        assert_eq!(ids(&index.claim(10, 10, &limits)), vec!["q1"]);
        // q2 waits for q1's queue slot; big does not fit beside q1 in the budget.
        assert!(index.claim(10, 10, &limits).is_empty());
        // q1's attempt settled (the writer moved it out) and its claim ends.
        index.apply("q1", None);
        index.release("q1", 5, None);
        assert_eq!(ids(&index.claim(10, 10, &limits)), vec!["q2"]);
        assert!(index.claim(10, 10, &limits).is_empty());
        index.apply("q2", None);
        index.release("q2", 5, None);
        // Alone, a run bigger than the budget still runs.
        assert_eq!(ids(&index.claim(10, 10, &limits)), vec!["big"]);
        assert_eq!(index.occupancy().memory_in_use, 100);
    }

    #[test]
    fn an_entry_rewritten_while_claimed_waits_for_the_release_and_a_hold() {
        let index = ReadyIndex::new([(1, "r".to_owned(), place("t", "q", 0, 1))]);
        let limits = Limits::default();
        assert_eq!(ids(&index.claim(5, 1, &limits)), vec!["r"]);
        // The attempt's settlement scheduled a retry due at once: not claimable yet.
        index.apply("r", Some((5, &place("t", "q", 0, 1))));
        assert!(index.claim(5, 1, &limits).is_empty());
        assert!(!index.has_unclaimed());
        // A host fault: released with a hold.
        index.release("r", 0, Some(1_000));
        assert!(index.claim(999, 1, &limits).is_empty());
        assert_eq!(index.next_pending(), Some(1_000));
        assert_eq!(ids(&index.claim(1_000, 1, &limits)), vec!["r"]);
        assert_eq!(index.occupancy().running_by_tenant["t"], 1);
        assert_eq!(index.all(), vec![(1_000, "r".to_owned())]);
    }
}
