//! Runs that ended per queue and minute over the last hour, for the dashboard's throughput
//! charts. Kept in memory by this engine from where a run becomes final (settled or
//! cancelled), so a chart covers what this host finished since it started; a restart starts
//! the charts empty, while the store's counters keep the totals.
//!
//! Bounded: one ring of [`MINUTES`] minutes per (tenant, queue), at most [`MAX_QUEUES`]
//! rings and [`MAX_QUEUES_PER_TENANT`] per tenant, so no tenant can take every chart. Rings
//! idle for an hour are dropped when room is needed (a sweep at most once a minute, so a full
//! table costs no scan per run); a queue that finds no room is not charted, and
//! [`Throughput::untracked`] counts its runs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use stepwise_core::clock::Millis;
use stepwise_core::model::RunStatus;

/// Minutes a chart covers.
pub const MINUTES: usize = 60;

/// Most (tenant, queue) rings kept (each ~0.5 KiB).
pub const MAX_QUEUES: usize = 16_384;

/// Most rings one tenant's queues hold.
pub const MAX_QUEUES_PER_TENANT: usize = 1_024;

const MINUTE_MS: u64 = 60_000;

/// Runs of one queue that ended in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Runs that completed.
    pub completed: u32,
    /// Runs that failed for good (dead-lettered) or were cancelled.
    pub failed: u32,
}

/// A queue's last hour, oldest minute first; the last entry is the minute `now` falls in
/// (less than an hour after the epoch, the first entry is minute 0 and the hour is shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastHour {
    /// The start of the first minute (ms since the epoch).
    pub first_minute: Millis,
    /// One entry per minute.
    pub minutes: [Minute; MINUTES],
}

impl LastHour {
    /// Runs that ended in the hour, completed and failed.
    pub fn totals(&self) -> (u64, u64) {
        self.minutes.iter().fold((0, 0), |(c, f), m| {
            (c + u64::from(m.completed), f + u64::from(m.failed))
        })
    }
}

#[derive(Debug)]
struct Ring {
    /// The newest minute recorded (minutes since the epoch).
    latest: u64,
    slots: [Minute; MINUTES],
}

impl Ring {
    fn holds(&self, minute: u64) -> bool {
        minute <= self.latest && minute + MINUTES as u64 > self.latest
    }

    fn slot(minute: u64) -> usize {
        (minute % MINUTES as u64) as usize
    }
}

/// The rings, by (tenant, queue).
#[derive(Debug, Default)]
pub struct Throughput {
    rings: Mutex<Rings>,
    untracked: AtomicU64,
}

#[derive(Debug, Default)]
struct Rings {
    /// Rings by tenant, then queue: a tenant's count is its map's length, and a known queue
    /// is found without allocating its key.
    by_tenant: HashMap<String, HashMap<String, Ring>>,
    /// Rings in all.
    total: usize,
    /// No sweep for idle rings before this minute (the last one found nothing to drop).
    next_sweep: u64,
}

impl Rings {
    fn tenant_rings(&self, tenant: &str) -> usize {
        self.by_tenant.get(tenant).map_or(0, HashMap::len)
    }

    /// Makes room for a ring of `tenant`, dropping rings idle for an hour if the table is
    /// full; whether there is room.
    fn room_for(&mut self, tenant: &str, minute: u64) -> bool {
        if self.tenant_rings(tenant) >= MAX_QUEUES_PER_TENANT || self.total >= MAX_QUEUES {
            if minute < self.next_sweep {
                return false;
            }
            for queues in self.by_tenant.values_mut() {
                queues.retain(|_, r| r.latest + MINUTES as u64 > minute);
            }
            self.by_tenant.retain(|_, queues| !queues.is_empty());
            self.total = self.by_tenant.values().map(HashMap::len).sum();
            self.next_sweep = minute + 1;
        }
        self.tenant_rings(tenant) < MAX_QUEUES_PER_TENANT && self.total < MAX_QUEUES
    }

    /// `tenant`'s ring of `queue`, made if there is room.
    fn ring(&mut self, tenant: &str, queue: &str, minute: u64) -> Option<&mut Ring> {
        let known = self
            .by_tenant
            .get(tenant)
            .is_some_and(|queues| queues.contains_key(queue));
        if !known {
            if !self.room_for(tenant, minute) {
                return None;
            }
            self.total += 1;
            self.by_tenant.entry(tenant.to_owned()).or_default().insert(
                queue.to_owned(),
                Ring {
                    latest: minute,
                    slots: [Minute::default(); MINUTES],
                },
            );
        }
        self.by_tenant.get_mut(tenant)?.get_mut(queue)
    }
}

impl Throughput {
    /// Counts a run of `tenant`'s `queue` that became `status` at `at`; statuses that are not
    /// final are ignored.
    pub fn record(&self, tenant: &str, queue: &str, status: RunStatus, at: Millis) {
        let failed = match status {
            RunStatus::Completed => false,
            RunStatus::Failed | RunStatus::Cancelled => true,
            _ => return,
        };
        let minute = at / MINUTE_MS;
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ring) = rings.ring(tenant, queue, minute) else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if minute + MINUTES as u64 <= ring.latest {
            // The clock went back by more than an hour: start the ring again from now.
            *ring = Ring {
                latest: minute,
                slots: [Minute::default(); MINUTES],
            };
        }
        if minute > ring.latest {
            // Clear the minutes that passed with nothing recorded (at most a whole ring).
            let gap = (minute - ring.latest).min(MINUTES as u64);
            for m in minute + 1 - gap..=minute {
                ring.slots[Ring::slot(m)] = Minute::default();
            }
            ring.latest = minute;
        }
        let slot = &mut ring.slots[Ring::slot(minute)];
        if failed {
            slot.failed = slot.failed.saturating_add(1);
        } else {
            slot.completed = slot.completed.saturating_add(1);
        }
    }

    /// `tenant`'s `queue` over the hour up to `now`.
    pub fn last_hour(&self, tenant: &str, queue: &str, now: Millis) -> LastHour {
        let now_minute = now / MINUTE_MS;
        let first = now_minute.saturating_sub(MINUTES as u64 - 1);
        let mut minutes = [Minute::default(); MINUTES];
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ring) = rings.by_tenant.get(tenant).and_then(|q| q.get(queue)) {
            for (i, out) in minutes.iter_mut().enumerate() {
                let minute = first + i as u64;
                if ring.holds(minute) {
                    *out = ring.slots[Ring::slot(minute)];
                }
            }
        }
        LastHour {
            first_minute: first * MINUTE_MS,
            minutes,
        }
    }

    /// Final runs not charted because every ring was live.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_000 * MINUTE_MS;

    #[test]
    fn counts_by_minute_and_forgets_what_is_older_than_an_hour() {
        let t = Throughput::default();
        t.record("a", "q", RunStatus::Completed, T0);
        t.record("a", "q", RunStatus::Completed, T0 + 59_999);
        t.record("a", "q", RunStatus::Failed, T0 + MINUTE_MS);
        t.record("a", "q", RunStatus::Cancelled, T0 + MINUTE_MS);
        t.record("a", "q", RunStatus::Queued, T0 + MINUTE_MS);
        t.record("b", "q", RunStatus::Completed, T0);
        let hour = t.last_hour("a", "q", T0 + MINUTE_MS);
        assert_eq!(hour.first_minute, T0 + MINUTE_MS - 59 * MINUTE_MS);
        assert_eq!(
            hour.minutes[58],
            Minute {
                completed: 2,
                failed: 0
            }
        );
        assert_eq!(
            hour.minutes[59],
            Minute {
                completed: 0,
                failed: 2
            }
        );
        assert_eq!(hour.totals(), (2, 2));
        // An hour on, the first minute has left the chart; the ring reused its slot.
        let later = T0 + 60 * MINUTE_MS;
        assert_eq!(t.last_hour("a", "q", later).totals(), (0, 2));
        t.record("a", "q", RunStatus::Completed, later);
        let hour = t.last_hour("a", "q", later);
        assert_eq!(hour.totals(), (1, 2));
        assert_eq!(hour.minutes[59].completed, 1);
        // Two hours on, nothing is left.
        assert_eq!(
            t.last_hour("a", "q", later + 61 * MINUTE_MS).totals(),
            (0, 0)
        );
        assert_eq!(t.last_hour("b", "q", T0).totals(), (1, 0));
        assert_eq!(t.last_hour("c", "q", T0).totals(), (0, 0));
    }

    #[test]
    fn a_run_recorded_after_a_later_one_still_counts_within_the_hour() {
        let t = Throughput::default();
        t.record("a", "q", RunStatus::Completed, T0 + 5 * MINUTE_MS);
        t.record("a", "q", RunStatus::Completed, T0);
        assert_eq!(t.last_hour("a", "q", T0 + 5 * MINUTE_MS).totals(), (2, 0));
    }

    #[test]
    fn a_clock_gone_back_by_more_than_an_hour_restarts_the_ring() {
        let t = Throughput::default();
        t.record("a", "q", RunStatus::Completed, T0 + 5 * MINUTE_MS);
        t.record("a", "q", RunStatus::Failed, T0 - 61 * MINUTE_MS);
        let hour = t.last_hour("a", "q", T0 - 61 * MINUTE_MS);
        assert_eq!(hour.totals(), (0, 1));
    }

    #[test]
    fn rings_are_bounded_per_tenant_and_in_all_and_idle_ones_make_room() {
        let t = Throughput::default();
        for i in 0..MAX_QUEUES_PER_TENANT {
            t.record("greedy", &format!("q{i}"), RunStatus::Completed, T0);
        }
        t.record("greedy", "one-more", RunStatus::Completed, T0);
        assert_eq!(t.untracked(), 1);
        // Another tenant still gets its rings.
        t.record("other", "q", RunStatus::Completed, T0);
        assert_eq!(t.last_hour("other", "q", T0).totals(), (1, 0));
        for tenant in 0..(MAX_QUEUES / MAX_QUEUES_PER_TENANT) {
            for i in 0..MAX_QUEUES_PER_TENANT {
                t.record(
                    &format!("t{tenant}"),
                    &format!("q{i}"),
                    RunStatus::Completed,
                    T0,
                );
            }
        }
        assert_eq!(t.rings.lock().unwrap().total, MAX_QUEUES);
        let before = t.untracked();
        t.record("late", "q", RunStatus::Completed, T0);
        assert_eq!(t.untracked(), before + 1);
        assert_eq!(t.last_hour("late", "q", T0).totals(), (0, 0));
        // An hour later every old ring is idle: the new queue gets one, and the idle ones
        // were dropped with their tenants' counts.
        let later = T0 + 60 * MINUTE_MS;
        t.record("late", "q", RunStatus::Completed, later);
        assert_eq!(t.last_hour("late", "q", later).totals(), (1, 0));
        let rings = t.rings.lock().unwrap();
        assert_eq!(rings.total, 1);
        assert_eq!(rings.tenant_rings("late"), 1);
        assert_eq!(rings.by_tenant.len(), 1);
    }
}
