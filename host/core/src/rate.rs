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

/// One lane's recent events, oldest first, and the turn of the last one held back.
#[derive(Debug, Default)]
struct Lane {
    times: VecDeque<Millis>,
    /// The latest turn given to a refused event: later refusals queue behind it.
    last_turn: Option<Millis>,
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

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Counts a start of `lane` at `now` if `limit` allows it, else gives it a turn.
    ///
    /// Refused starts queue: each gets the next turn, `per / max` after the one before (the
    /// pace the limit sustains), so each comes back about when it can go instead of all at
    /// once. A start that has not waited (`waited` false) does not overtake those queued.
    pub fn admit(&mut self, lane: &K, limit: RateLimit, now: Millis, waited: bool) -> Admission {
        self.sweep(now);
        let lane = self.lanes.entry(lane.clone()).or_default();
        lane.forget_before(now, limit.per_ms);
        let queued_ahead = !waited && lane.last_turn.is_some_and(|t| t > now);
        if !queued_ahead && lane.has_room(limit) {
            lane.times.push_back(now);
            return Admission::Admitted;
        }
        let first_free = lane.first_free(limit, now);
        let pace = (limit.per_ms / u64::from(limit.max.max(1))).max(1);
        let turn = match lane.last_turn {
            Some(last) if last >= now => first_free.max(last.saturating_add(pace)),
            _ => first_free,
        }
        .max(now.saturating_add(1));
        lane.last_turn = Some(turn);
        Admission::Retry(turn)
    }

    /// Counts an event of `lane` at `now` if `limit` allows it; else says when the window
    /// has room, queueing nothing (a refused request is not retried by the limiter).
    pub fn try_admit(&mut self, lane: &K, limit: RateLimit, now: Millis) -> Result<(), Millis> {
        self.sweep(now);
        let lane = self.lanes.entry(lane.clone()).or_default();
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

    /// Every so often, drops lanes with nothing in the longest window and no turn ahead.
    fn sweep(&mut self, now: Millis) {
        self.since_sweep += 1;
        if self.since_sweep < 1_024 {
            return;
        }
        self.since_sweep = 0;
        self.lanes.retain(|_, lane| {
            let last = lane.times.back().copied().max(lane.last_turn).unwrap_or(0);
            last.saturating_add(MAX_WINDOW_MS) > now
        });
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
