//! Runs that ended per queue and minute over the last hour, for the dashboard's throughput
//! charts. Kept in memory by this engine from where a run becomes final (settled or
//! cancelled), so a chart covers what this host finished since it started; a restart starts
//! the charts empty, while the store's counters keep the totals.
//!
//! Bounded: one ring of [`MINUTES`] minutes per (tenant, queue), at most [`MAX_QUEUES`]
//! rings. A ring idle for an hour is dropped when room is needed; when every ring is live,
//! a new queue's runs are not charted (and [`Throughput::untracked`] counts them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use stepwise_core::clock::Millis;
use stepwise_core::model::RunStatus;

/// Minutes a chart covers.
pub const MINUTES: usize = 60;

/// Most (tenant, queue) rings kept (each ~0.5 KiB).
pub const MAX_QUEUES: usize = 16_384;

const MINUTE_MS: u64 = 60_000;

/// Runs of one queue that ended in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Runs that completed.
    pub completed: u32,
    /// Runs that failed for good (dead-lettered) or were cancelled.
    pub failed: u32,
}

/// A queue's last hour, oldest minute first; the last entry is the minute `now` falls in.
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
    rings: Mutex<HashMap<(String, String), Ring>>,
    untracked: AtomicU64,
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
        let key = (tenant.to_owned(), queue.to_owned());
        if !rings.contains_key(&key) && rings.len() >= MAX_QUEUES {
            rings.retain(|_, r| r.latest + MINUTES as u64 > minute);
            if rings.len() >= MAX_QUEUES {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let ring = rings.entry(key).or_insert_with(|| Ring {
            latest: minute,
            slots: [Minute::default(); MINUTES],
        });
        if minute > ring.latest {
            // Clear the minutes that passed with nothing recorded (at most a whole ring).
            let gap = (minute - ring.latest).min(MINUTES as u64);
            for m in minute + 1 - gap..=minute {
                ring.slots[Ring::slot(m)] = Minute::default();
            }
            ring.latest = minute;
        }
        if !ring.holds(minute) {
            // Older than the ring (a clock that went back by more than an hour).
            return;
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
        if let Some(ring) = rings.get(&(tenant.to_owned(), queue.to_owned())) {
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
        t.record("a", "q", RunStatus::Completed, T0 - 61 * MINUTE_MS);
        assert_eq!(t.last_hour("a", "q", T0 + 5 * MINUTE_MS).totals(), (2, 0));
    }

    #[test]
    fn rings_are_bounded_and_idle_ones_make_room() {
        let t = Throughput::default();
        for i in 0..MAX_QUEUES {
            t.record("a", &format!("q{i}"), RunStatus::Completed, T0);
        }
        t.record("a", "new", RunStatus::Completed, T0);
        assert_eq!(t.untracked(), 1);
        assert_eq!(t.last_hour("a", "new", T0).totals(), (0, 0));
        // An hour later every old ring is idle: the new queue gets one.
        let later = T0 + 60 * MINUTE_MS;
        t.record("a", "new", RunStatus::Completed, later);
        assert_eq!(t.last_hour("a", "new", later).totals(), (1, 0));
        assert_eq!(t.rings.lock().unwrap().len(), 1);
    }
}
