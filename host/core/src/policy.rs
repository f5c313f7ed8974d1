//! Execution policy: how many attempts a step gets, how long to wait between attempts, and the
//! sandbox limits of one attempt.
//!
//! A policy is resolved in three layers, each overriding the one before: the host's defaults
//! ([`Policy::default`]), the job's own defaults from the module's `describe` export, and the
//! overrides given when the run is enqueued. The host's hard caps ([`Caps`]) bound the result,
//! so a module cannot grant itself more than the operator allows.

use serde::{Deserialize, Serialize};

use crate::clock::{Jitter, Millis};

/// The longest delay the host schedules anything after: a backoff, a retry-after, a durable
/// sleep, an enqueue's delay. 365 days, so timestamps stay far inside every clock type.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 60 * 60 * 1_000;

/// The largest backoff growth factor per failure.
pub const MAX_MULTIPLIER: f64 = 1_000.0;

/// Exponential backoff between attempts. Unknown fields are refused: a misspelt field must
/// not silently turn into the defaults.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt, in milliseconds.
    pub initial_ms: u64,
    /// Upper bound on a single delay, in milliseconds.
    pub max_ms: u64,
    /// Growth per further failed attempt.
    pub multiplier: f64,
    /// Fraction of each delay that is randomised (0 = none, 1 = anywhere in `[0, delay]`).
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 1 h, 20% jitter.
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 3_600_000,
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay after `failures` failed attempts of one step (`failures >= 1`).
    ///
    /// `min(max, initial * multiplier^(failures-1))`, then reduced by up to `jitter` of itself:
    /// jitter only ever shortens the delay so `max_ms` stays a true bound, and concurrent runs
    /// failing together spread out instead of retrying in lockstep.
    ///
    /// Total for any stored value: a non-finite multiplier or jitter counts as none, and the
    /// result never exceeds [`MAX_DELAY_MS`].
    pub fn delay_ms(&self, failures: u32, jitter: &dyn Jitter) -> u64 {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.clamp(1.0, MAX_MULTIPLIER)
        } else {
            1.0
        };
        let max = self.max_ms.min(MAX_DELAY_MS) as f64;
        let raw = self.initial_ms.min(MAX_DELAY_MS) as f64 * multiplier.powi(exponent);
        let capped = raw.min(max);
        let fraction = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let spread = fraction * jitter.fraction().clamp(0.0, 1.0);
        // Float-to-int casts saturate, and `capped` is within [0, MAX_DELAY_MS].
        ((capped * (1.0 - spread)).round() as u64).min(MAX_DELAY_MS)
    }

    /// Rejects values no backoff can be computed from, naming the field.
    pub fn check(&self) -> Result<(), PolicyError> {
        let err = |field, problem: String| Err(PolicyError { field, problem });
        if !(self.multiplier.is_finite() && (1.0..=MAX_MULTIPLIER).contains(&self.multiplier)) {
            return err(
                "backoff.multiplier",
                format!(
                    "must be a number between 1.0 and {MAX_MULTIPLIER}, got {}",
                    self.multiplier
                ),
            );
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            return err(
                "backoff.jitter",
                format!("must be a number between 0.0 and 1.0, got {}", self.jitter),
            );
        }
        for (field, value) in [
            ("backoff.initial_ms", self.initial_ms),
            ("backoff.max_ms", self.max_ms),
        ] {
            if value > MAX_DELAY_MS {
                return err(
                    field,
                    format!("must be at most {MAX_DELAY_MS} (365 days), got {value}"),
                );
            }
        }
        if self.max_ms < self.initial_ms {
            return err(
                "backoff.max_ms",
                format!(
                    "({}) is below initial_ms ({})",
                    self.max_ms, self.initial_ms
                ),
            );
        }
        Ok(())
    }
}

/// The fully resolved policy a run executes under.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Attempts allowed per step (and for failures outside any step), counting the first.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Fuel one attempt may consume.
    pub fuel: u64,
    /// Wall-clock limit of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory one attempt may use, in bytes.
    pub memory_bytes: u64,
}

impl Default for Policy {
    /// 5 attempts, [`Backoff::default`], 5·10¹⁰ fuel (a few seconds of pure guest compute:
    /// fuel counts wasm operators, many of which cost no machine instruction), 30 s, 64 MiB.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            fuel: 50_000_000_000,
            timeout_ms: 30_000,
            memory_bytes: 64 << 20,
        }
    }
}

/// A partial policy: the job's defaults or an enqueue's overrides. Absent fields inherit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyOverrides {
    /// See [`Policy::max_attempts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// See [`Policy::backoff`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// See [`Policy::fuel`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// See [`Policy::timeout_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// See [`Policy::memory_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Hard upper bounds set by the operator; no job or enqueue can exceed them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Caps {
    /// Most attempts any step may be given.
    pub max_attempts: u32,
    /// Most fuel any attempt may be given.
    pub fuel: u64,
    /// Longest wall-clock limit of an attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Most linear memory of an attempt, in bytes. Also sizes the pooling allocator's slots.
    pub memory_bytes: u64,
}

impl Default for Caps {
    /// 100 attempts, 10¹² fuel, 15 min, 512 MiB.
    fn default() -> Self {
        Self {
            max_attempts: 100,
            fuel: 1_000_000_000_000,
            timeout_ms: 15 * 60 * 1_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// A policy value that breaks a rule, named so the caller can report it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid policy: {field} {problem}")]
pub struct PolicyError {
    /// The offending field, e.g. `max_attempts`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl PolicyOverrides {
    /// Layers `self` over `base`: fields set here win.
    pub fn over(self, base: Policy) -> Policy {
        Policy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            backoff: self.backoff.unwrap_or(base.backoff),
            fuel: self.fuel.unwrap_or(base.fuel),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
        }
    }

    /// Rejects values no run could execute with, naming the field.
    pub fn validate(&self, caps: &Caps) -> Result<(), PolicyError> {
        let err = |field, problem: String| Err(PolicyError { field, problem });
        if let Some(n) = self.max_attempts
            && !(1..=caps.max_attempts).contains(&n)
        {
            return err(
                "max_attempts",
                format!("must be between 1 and {}, got {n}", caps.max_attempts),
            );
        }
        if let Some(b) = self.backoff {
            b.check()?;
        }
        for (field, value, cap) in [
            ("fuel", self.fuel, caps.fuel),
            ("timeout_ms", self.timeout_ms, caps.timeout_ms),
            ("memory_bytes", self.memory_bytes, caps.memory_bytes),
        ] {
            if let Some(v) = value
                && !(1..=cap).contains(&v)
            {
                return err(field, format!("must be between 1 and {cap}, got {v}"));
            }
        }
        Ok(())
    }
}

impl Caps {
    /// Bounds `policy` by the caps; used for module defaults, which are trusted less than the
    /// operator but are not worth refusing a whole module over, and again before every attempt
    /// so that no stored value, however it got there, reaches the sandbox unbounded.
    pub fn clamp(&self, policy: Policy) -> Policy {
        let b = policy.backoff;
        let initial_ms = b.initial_ms.min(MAX_DELAY_MS);
        Policy {
            max_attempts: policy.max_attempts.clamp(1, self.max_attempts.max(1)),
            backoff: Backoff {
                initial_ms,
                max_ms: b.max_ms.clamp(initial_ms, MAX_DELAY_MS),
                multiplier: if b.multiplier.is_finite() {
                    b.multiplier.clamp(1.0, MAX_MULTIPLIER)
                } else {
                    1.0
                },
                jitter: if b.jitter.is_finite() {
                    b.jitter.clamp(0.0, 1.0)
                } else {
                    0.0
                },
            },
            fuel: policy.fuel.clamp(1, self.fuel),
            timeout_ms: policy.timeout_ms.clamp(1, self.timeout_ms),
            memory_bytes: policy.memory_bytes.clamp(1, self.memory_bytes),
        }
    }
}

/// When the next attempt may start after a failure at `now`.
pub fn next_attempt_at(
    now: Millis,
    policy: &Policy,
    failures: u32,
    retry_after_ms: Option<u64>,
    jitter: &dyn Jitter,
) -> Millis {
    let delay = match retry_after_ms {
        Some(ms) => ms.min(MAX_DELAY_MS),
        None => policy.backoff.delay_ms(failures, jitter),
    };
    now.saturating_add(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{NoJitter, SeededJitter};

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1_000,
            multiplier: 2.0,
            jitter: 0.0,
        };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay_ms(n, &NoJitter)).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let b = Backoff {
            jitter: 0.5,
            ..Backoff::default()
        };
        let j = SeededJitter::new(1);
        for n in 1..10 {
            let full = b.delay_ms(n, &NoJitter);
            let d = b.delay_ms(n, &j);
            assert!(
                d <= full && d >= full / 2,
                "{d} not in [{}, {full}]",
                full / 2
            );
        }
    }

    #[test]
    fn overrides_layer_and_validate() {
        let job = PolicyOverrides {
            max_attempts: Some(3),
            ..Default::default()
        };
        let enqueue = PolicyOverrides {
            timeout_ms: Some(500),
            ..Default::default()
        };
        let p = enqueue.over(job.over(Policy::default()));
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.timeout_ms, 500);
        assert_eq!(p.fuel, Policy::default().fuel);

        let bad = PolicyOverrides {
            max_attempts: Some(0),
            ..Default::default()
        };
        let e = bad.validate(&Caps::default()).unwrap_err();
        assert_eq!(e.field, "max_attempts");
        let bad = PolicyOverrides {
            memory_bytes: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(
            bad.validate(&Caps::default()).unwrap_err().field,
            "memory_bytes"
        );
    }

    #[test]
    fn absurd_backoffs_are_refused_and_never_overflow() {
        let nan = Backoff {
            multiplier: f64::NAN,
            ..Backoff::default()
        };
        assert_eq!(nan.check().unwrap_err().field, "backoff.multiplier");
        let huge = Backoff {
            multiplier: 1e308,
            ..Backoff::default()
        };
        assert_eq!(huge.check().unwrap_err().field, "backoff.multiplier");
        let inf_jitter = Backoff {
            jitter: f64::INFINITY,
            ..Backoff::default()
        };
        assert_eq!(inf_jitter.check().unwrap_err().field, "backoff.jitter");
        let long = Backoff {
            initial_ms: u64::MAX,
            max_ms: u64::MAX,
            ..Backoff::default()
        };
        assert_eq!(long.check().unwrap_err().field, "backoff.initial_ms");
        // Whatever is stored, the delay is computed and bounded.
        for b in [nan, huge, inf_jitter, long] {
            for failures in [1, 2, 64, u32::MAX] {
                assert!(b.delay_ms(failures, &NoJitter) <= MAX_DELAY_MS);
            }
        }
        let p = Policy {
            backoff: huge,
            ..Policy::default()
        };
        let clamped = Caps::default().clamp(p);
        assert!(clamped.backoff.check().is_ok());
        assert_eq!(
            next_attempt_at(u64::MAX - 1, &p, 3, Some(u64::MAX), &NoJitter),
            u64::MAX
        );
        assert_eq!(
            next_attempt_at(0, &p, 3, Some(u64::MAX), &NoJitter),
            MAX_DELAY_MS
        );
    }

    #[test]
    fn retry_after_overrides_backoff() {
        let p = Policy::default();
        assert_eq!(next_attempt_at(10, &p, 3, Some(5), &NoJitter), 15);
        assert_eq!(next_attempt_at(10, &p, 1, None, &NoJitter), 1_010);
    }
}
