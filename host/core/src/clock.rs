//! Time and randomness, injected so that retry, backoff and timer behaviour can be driven
//! deterministically in tests without sleeping for real.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Milliseconds since the Unix epoch: the host's single notion of "when".
pub type Millis = u64;

/// A source of wall-clock time that the engine waits on.
///
/// The engine never calls `SystemTime::now` or `tokio::time::sleep` directly, so a test can
/// substitute [`ManualClock`] and observe every delay the engine asked for.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Millis;
    /// Waits until `at` (returns at once when `at` has passed).
    fn sleep_until(&self, at: Millis) -> futures_sleep::SleepFuture<'_>;
    /// Whether time only moves when waited on. The scheduler then never waits on the clock
    /// while attempts are in flight, so virtual time cannot skip ahead of running work.
    fn is_manual(&self) -> bool {
        false
    }
}

/// Boxed futures for [`Clock::sleep_until`] without pulling in an async-trait crate.
pub mod futures_sleep {
    use std::future::Future;
    use std::pin::Pin;

    /// The future returned by [`super::Clock::sleep_until`].
    pub type SleepFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// The wall clock, in milliseconds since the Unix epoch: for what is about real time whatever
/// clock the engine schedules by (when a process started, whether a host's lease lapsed).
pub fn wall_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
    })
}

/// The real clock: system time and tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        wall_ms()
    }

    fn sleep_until(&self, at: Millis) -> futures_sleep::SleepFuture<'_> {
        let now = self.now();
        Box::pin(async move {
            if at > now {
                tokio::time::sleep(Duration::from_millis(at - now)).await;
            }
        })
    }
}

/// A clock that only moves when told to, or when the engine waits on it: `sleep_until` jumps
/// straight to the requested time and records the wait, so a test sees the exact backoff
/// schedule without any real delay.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
    waits: Arc<Mutex<Vec<(Millis, Millis)>>>,
}

impl ManualClock {
    /// A clock that reads `start`.
    pub fn new(start: Millis) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start)),
            waits: Arc::default(),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every wait the engine performed, as `(from, until)` pairs, in order.
    pub fn waits(&self) -> Vec<(Millis, Millis)> {
        self.waits.lock().expect("clock lock").clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at: Millis) -> futures_sleep::SleepFuture<'_> {
        let from = self.now.fetch_max(at, Ordering::SeqCst);
        if at > from {
            self.waits.lock().expect("clock lock").push((from, at));
        }
        Box::pin(async {})
    }

    fn is_manual(&self) -> bool {
        true
    }
}

/// A source of jitter fractions in `[0, 1)`, injected so backoff is reproducible in tests.
pub trait Jitter: Send + Sync + 'static {
    /// The next random fraction in `[0, 1)`.
    fn fraction(&self) -> f64;
}

/// Jitter from a seeded PRNG: the same seed gives the same sequence of delays.
#[derive(Debug)]
pub struct SeededJitter(Mutex<StdRng>);

impl SeededJitter {
    /// A jitter source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }

    /// A jitter source seeded from the operating system.
    pub fn from_entropy() -> Self {
        Self(Mutex::new(StdRng::from_os_rng()))
    }
}

impl Jitter for SeededJitter {
    fn fraction(&self) -> f64 {
        self.0.lock().expect("jitter lock").random::<f64>()
    }
}

/// No jitter at all: every delay is the full exponential value.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn fraction(&self) -> f64 {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_jumps_and_records_waits() {
        let clock = ManualClock::new(1_000);
        clock.sleep_until(5_000).await;
        assert_eq!(clock.now(), 5_000);
        clock.sleep_until(4_000).await;
        assert_eq!(
            clock.now(),
            5_000,
            "waiting for the past does not move the clock"
        );
        clock.advance(Duration::from_millis(10));
        assert_eq!(clock.now(), 5_010);
        assert_eq!(clock.waits(), vec![(1_000, 5_000)]);
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let a = SeededJitter::new(7);
        let b = SeededJitter::new(7);
        let xs: Vec<f64> = (0..5).map(|_| a.fraction()).collect();
        let ys: Vec<f64> = (0..5).map(|_| b.fraction()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
