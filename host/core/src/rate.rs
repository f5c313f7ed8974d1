//! Rate limits: at most `max` events per sliding `per_ms` window, kept per lane (a queue, or
//! a queue and a `rate_key`; a tenant's enqueue requests).
//!
//! Written by hand rather than taken from `governor`: the limit has to be exactly BullMQ's
//! "N per interval" over a sliding window (GCRA spreads a burst differently), has to run
//! on the engine's injected clock so tests are deterministic, and has to say *when* a
//! refused start may go — which is what a held-back run waits for. A lane keeps at most
//! `max` timestamps, and lanes with nothing in their window are dropped.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// At most `max` per `per_ms`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Events per window (1 to [`MAX_RATE`]).
    pub max: u32,
    /// The window, in milliseconds (1 ms to 1 day).
    pub per_ms: u64,
}

/// Largest `max` a limit may have: bounds the timestamps one lane keeps.
pub const MAX_RATE: u32 = 100_000;

/// Longest window a limit may have.
pub const MAX_WINDOW_MS: u64 = 24 * 60 * 60 * 1_000;

impl RateLimit {
    /// Checks the bounds, naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max == 0 || self.max > MAX_RATE {
            return Err(format!("max must be 1 to {MAX_RATE}, got {}", self.max));
        }
        if self.per_ms == 0 || self.per_ms > MAX_WINDOW_MS {
            return Err(format!(
                "the window must be 1 ms to 24 h, got {} ms",
                self.per_ms
            ));
        }
        Ok(())
    }

    /// `5 per 1s`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} per {}",
            self.max,
            crate::time_fmt::duration(self.per_ms)
        )
    }
}

/// Most lanes kept at once, all tenants: past it a start in a new lane waits a moment (and
/// idle lanes are swept first), so distinct `rate_key`s cannot grow memory without bound.
pub const MAX_LANES: usize = 1_000_000;

/// One lane's recent events, oldest first, and the turns given to refused ones.
#[derive(Debug, Default)]
struct Lane {
    times: VecDeque<Millis>,
    /// The lane's window, for sweeping it once it is empty.
    per_ms: u64,
    /// The latest turn given to a refused event: later refusals queue behind it.
    last_turn: Option<Millis>,
    /// Refused events that hold a turn and have not come back to be admitted or forgotten.
    waiting: u64,
}

impl Lane {
    fn forget_before(&mut self, now: Millis, per_ms: u64) {
        while self
            .times
            .front()
            .is_some_and(|t| t.saturating_add(per_ms) <= now)
        {
            self.times.pop_front();
        }
    }

    fn has_room(&self, limit: RateLimit) -> bool {
        self.times.len() < limit.max.max(1) as usize
    }

    /// When the window has room again for one more event.
    fn first_free(&self, limit: RateLimit, now: Millis) -> Millis {
        let max = limit.max.max(1) as usize;
        match self.times.len().checked_sub(max) {
            Some(i) => self.times[i].saturating_add(limit.per_ms),
            None => now,
        }
    }

    /// One turn fewer is outstanding; with none left, nothing queues new events.
    fn turn_done(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting == 0 {
            self.last_turn = None;
        }
    }

    fn idle(&self, now: Millis) -> bool {
        self.waiting == 0
            && self
                .times
                .back()
                .is_none_or(|t| t.saturating_add(self.per_ms) <= now)
    }
}

/// Sliding-window limiters, one per lane `K`. See the module docs.
#[derive(Debug)]
pub struct RateLimiter<K> {
    lanes: HashMap<K, Lane>,
    /// Calls since the last sweep of idle lanes.
    since_sweep: usize,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            since_sweep: 0,
        }
    }
}

/// What a limiter said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted; go ahead.
    Admitted,
    /// Over the limit: come back at this turn.
    Retry(Millis),
}

/// How long a start in a new lane waits when [`MAX_LANES`] are kept.
const FULL_RETRY_MS: u64 = 1_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Counts a start of `lane` at `now` if `limit` allows it, else gives it a turn.
    ///
    /// Refused starts queue: each gets the next turn, `per / max` after the one before (the
    /// pace the limit sustains), so each comes back about when it can go instead of all at
    /// once. A start that has not waited (`waited` false) does not overtake those queued; one
    /// that waited and still finds the window full (it came back early, or another start
    /// took the room) keeps its place at the front: it is given the moment the window frees.
    pub fn admit(&mut self, lane: &K, limit: RateLimit, now: Millis, waited: bool) -> Admission {
        self.sweep(now, false);
        if !self.lanes.contains_key(lane) && self.lanes.len() >= MAX_LANES {
            self.sweep(now, true);
            if self.lanes.len() >= MAX_LANES {
                return Admission::Retry(now.saturating_add(FULL_RETRY_MS));
            }
        }
        let lane = self.lanes.entry(lane.clone()).or_default();
        lane.per_ms = limit.per_ms;
        lane.forget_before(now, limit.per_ms);
        let queued_ahead = !waited && lane.last_turn.is_some_and(|t| t > now);
        if !queued_ahead && lane.has_room(limit) {
            lane.times.push_back(now);
            if waited {
                lane.turn_done();
            }
            return Admission::Admitted;
        }
        let first_free = lane.first_free(limit, now).max(now.saturating_add(1));
        if waited {
            return Admission::Retry(first_free);
        }
        let pace = (limit.per_ms / u64::from(limit.max.max(1))).max(1);
        let turn = match lane.last_turn {
            Some(last) if last >= now => first_free.max(last.saturating_add(pace)),
            _ => first_free,
        };
        lane.last_turn = Some(turn);
        lane.waiting = lane.waiting.saturating_add(1);
        Admission::Retry(turn)
    }

    /// A start of `lane` that was given a turn will not come back (its run was cancelled,
    /// replaced or ended otherwise).
    pub fn forget_turn(&mut self, lane: &K) {
        if let Some(lane) = self.lanes.get_mut(lane) {
            lane.turn_done();
        }
    }

    /// Forgets every lane `keep` refuses (a queue whose limit changed starts afresh).
    pub fn reset(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.lanes.retain(|k, _| keep(k));
    }

    /// Counts an event of `lane` at `now` if `limit` allows it; else says when the window
    /// has room, queueing nothing (a refused request is not retried by the limiter).
    pub fn try_admit(&mut self, lane: &K, limit: RateLimit, now: Millis) -> Result<(), Millis> {
        self.sweep(now, false);
        if !self.lanes.contains_key(lane) && self.lanes.len() >= MAX_LANES {
            self.sweep(now, true);
            if self.lanes.len() >= MAX_LANES {
                return Err(now.saturating_add(FULL_RETRY_MS));
            }
        }
        let lane = self.lanes.entry(lane.clone()).or_default();
        lane.per_ms = limit.per_ms;
        lane.forget_before(now, limit.per_ms);
        if lane.has_room(limit) {
            lane.times.push_back(now);
            Ok(())
        } else {
            Err(lane.first_free(limit, now))
        }
    }

    /// How many lanes are kept.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Every so often (or now, when `force`), drops lanes whose window is empty and that have
    /// no turn outstanding.
    fn sweep(&mut self, now: Millis, force: bool) {
        self.since_sweep += 1;
        if !force && self.since_sweep < 1_024 {
            return;
        }
        self.since_sweep = 0;
        self.lanes.retain(|_, lane| !lane.idle(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_PER_SECOND: RateLimit = RateLimit {
        max: 5,
        per_ms: 1_000,
    };

    #[test]
    fn a_held_start_that_comes_back_late_keeps_its_place() {
        let mut limiter = RateLimiter::default();
        let one = RateLimit {
            max: 1,
            per_ms: 1_000,
        };
        assert_eq!(limiter.admit(&"q", one, 5, false), Admission::Admitted);
        // Two held: turns at 1005 and 2005.
        assert_eq!(limiter.admit(&"q", one, 10, false), Admission::Retry(1_005));
        assert_eq!(limiter.admit(&"q", one, 10, false), Admission::Retry(2_005));
        // The first comes back late, at 1010: admitted; the second comes back at its turn,
        // a little early for the window (1010 + 1000): it gets the moment the window frees,
        // not a turn behind everyone else.
        assert_eq!(limiter.admit(&"q", one, 1_010, true), Admission::Admitted);
        assert_eq!(
            limiter.admit(&"q", one, 2_005, true),
            Admission::Retry(2_010)
        );
        assert_eq!(limiter.admit(&"q", one, 2_010, true), Admission::Admitted);
        // With no turn outstanding, a fresh start is not queued behind old turns.
        assert_eq!(limiter.admit(&"q", one, 3_010, false), Admission::Admitted);
    }

    #[test]
    fn turns_of_runs_that_never_come_back_stop_delaying_new_ones() {
        let mut limiter = RateLimiter::default();
        let one = RateLimit {
            max: 1,
            per_ms: 1_000,
        };
        assert_eq!(limiter.admit(&"q", one, 0, false), Admission::Admitted);
        for _ in 0..100 {
            assert!(matches!(
                limiter.admit(&"q", one, 1, false),
                Admission::Retry(_)
            ));
        }
        // All 100 held runs were cancelled.
        for _ in 0..100 {
            limiter.forget_turn(&"q");
        }
        assert_eq!(limiter.admit(&"q", one, 1_000, false), Admission::Admitted);
    }

    #[test]
    fn idle_lanes_are_swept() {
        let mut limiter = RateLimiter::default();
        let one = RateLimit { max: 1, per_ms: 10 };
        for i in 0..2_000u64 {
            assert_eq!(limiter.try_admit(&i, one, i * 100), Ok(()));
        }
        assert!(limiter.lanes() < 1_100, "{}", limiter.lanes());
    }

    #[test]
    fn a_window_admits_max_then_queues_refusals_at_the_pace_it_sustains() {
        let mut limiter = RateLimiter::default();
        for t in 0..5 {
            assert_eq!(
                limiter.admit(&"q", FIVE_PER_SECOND, t * 10, false),
                Admission::Admitted
            );
        }
        // The window frees at 1000; the next refusals take the following turns.
        assert_eq!(
            limiter.admit(&"q", FIVE_PER_SECOND, 100, false),
            Admission::Retry(1_000)
        );
        assert_eq!(
            limiter.admit(&"q", FIVE_PER_SECOND, 100, false),
            Admission::Retry(1_200)
        );
        // A fresh start does not overtake the queued ones, even where the window has room.
        assert_eq!(
            limiter.admit(&"q", FIVE_PER_SECOND, 1_000, false),
            Admission::Retry(1_400)
        );
        // The queued ones go at their turns.
        assert_eq!(
            limiter.admit(&"q", FIVE_PER_SECOND, 1_000, true),
            Admission::Admitted
        );
        assert_eq!(
            limiter.admit(&"q", FIVE_PER_SECOND, 1_200, true),
            Admission::Admitted
        );
    }

    #[test]
    fn no_window_ever_holds_more_than_max() {
        let mut limiter = RateLimiter::default();
        let mut starts = Vec::new();
        // 50 starts asked for at once, each coming back at its turn.
        let mut pending: Vec<Millis> = vec![0; 50];
        while let Some(at) = pending.iter().copied().min() {
            let i = pending.iter().position(|&t| t == at).expect("present");
            pending.swap_remove(i);
            match limiter.admit(&"q", FIVE_PER_SECOND, at, at > 0) {
                Admission::Admitted => starts.push(at),
                Admission::Retry(turn) => pending.push(turn),
            }
        }
        assert_eq!(starts.len(), 50);
        for &t in &starts {
            let in_window = starts.iter().filter(|&&s| s >= t && s < t + 1_000).count();
            assert!(in_window <= 5, "{in_window} starts in [{t}, {t}+1s)");
        }
        let span = starts.iter().max().unwrap() - starts.iter().min().unwrap();
        assert!((9_000..=10_000).contains(&span), "{span}");
    }

    #[test]
    fn lanes_are_independent_and_a_refused_request_queues_nothing() {
        let mut limiter = RateLimiter::default();
        let one = RateLimit {
            max: 1,
            per_ms: 1_000,
        };
        assert_eq!(limiter.try_admit(&"a", one, 0), Ok(()));
        assert_eq!(limiter.try_admit(&"b", one, 0), Ok(()));
        assert_eq!(limiter.try_admit(&"a", one, 1), Err(1_000));
        assert_eq!(limiter.try_admit(&"a", one, 2), Err(1_000));
        assert_eq!(limiter.try_admit(&"a", one, 1_000), Ok(()));
        assert_eq!(limiter.lanes(), 2);
    }

    #[test]
    fn limits_are_bounded() {
        assert!(FIVE_PER_SECOND.validate().is_ok());
        for bad in [
            RateLimit { max: 0, per_ms: 1 },
            RateLimit {
                max: MAX_RATE + 1,
                per_ms: 1,
            },
            RateLimit { max: 1, per_ms: 0 },
            RateLimit {
                max: 1,
                per_ms: MAX_WINDOW_MS + 1,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
