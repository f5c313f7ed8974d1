//! # stepwise-schedule
//!
//! Cron schedules as the host evaluates them: an expression of 5 fields (minute, hour, day of
//! month, month, day of week) or 6 (seconds first), in an IANA time zone, and the fire times
//! it yields as milliseconds since the Unix epoch. Parsing and the calendar arithmetic are
//! `croner`'s and `chrono-tz`'s (both well kept, with DST-aware iteration); this crate only
//! fixes which forms are accepted, bounds the work, and turns missed fires into a decision
//! ([`due_fires`]).
//!
//! **Daylight saving time.** Fire times are local times in the schedule's zone. A local time
//! that a spring-forward change skips (02:30 on that day in `Europe/Paris`) fires once, at
//! the first instant after the gap; a local time that a fall-back change repeats fires once,
//! at its first occurrence. The tests pin both.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use stepwise_core::clock::Millis;

/// Longest accepted expression, in bytes.
pub const MAX_EXPRESSION: usize = 256;

/// Why a schedule's expression or zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not parse, or has neither 5 nor 6 fields.
    #[error("invalid cron expression '{expr}': {reason}")]
    Expression {
        /// The expression (its first 64 bytes).
        expr: String,
        /// What is wrong.
        reason: String,
    },
    /// The zone is not an IANA time zone name.
    #[error("unknown time zone '{0}': use an IANA name such as Europe/Paris or UTC")]
    TimeZone(String),
    /// The expression never matches (`0 0 31 2 *`).
    #[error("cron expression '{0}' never fires")]
    NeverFires(String),
}

/// A parsed schedule: an expression in a zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` (5 or 6 fields) in the IANA zone `timezone`, and checks that it fires.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let shown = || stepwise_core::text::prefix(expr, 64).to_owned();
        let bad = |reason: String| ScheduleError::Expression {
            expr: shown(),
            reason,
        };
        if expr.len() > MAX_EXPRESSION {
            return Err(bad(format!("longer than {MAX_EXPRESSION} bytes")));
        }
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(bad(format!(
                "{fields} fields: use 5 (minute hour day month weekday) or 6 (seconds first)"
            )));
        }
        let tz = Tz::from_str(timezone).map_err(|_| {
            ScheduleError::TimeZone(stepwise_core::text::prefix(timezone, 64).to_owned())
        })?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| bad(e.to_string()))?;
        let schedule = Self { cron, tz };
        if schedule.next_after(0).is_none() {
            return Err(ScheduleError::NeverFires(shown()));
        }
        Ok(schedule)
    }

    /// The first fire strictly after `at`, if there is one within the years the calendar
    /// covers.
    pub fn next_after(&self, at: Millis) -> Option<Millis> {
        // Whole seconds: croner keeps the sub-second part of the time it starts from.
        let at = i64::try_from(at - at % 1_000).ok()?;
        let utc = DateTime::<Utc>::from_timestamp_millis(at)?;
        let local = utc.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The next `n` fires after `at`.
    pub fn upcoming(&self, at: Millis, n: usize) -> Vec<Millis> {
        let mut out = Vec::with_capacity(n);
        let mut t = at;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// What to do with fires missed while the host was down (or paused behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Fire none of them.
    None,
    /// Fire the latest of them.
    Latest,
    /// Fire each of them, up to a bound (the latest ones).
    All(usize),
}

/// Most fires looked at in one pass; more due ones wait for the next pass.
pub const MAX_FIRES_PER_PASS: usize = 1_000;

/// How late a fire may be and still count as on time rather than missed, in milliseconds.
pub const ON_TIME_MS: Millis = 60_000;

/// The fires due at `now` of a schedule whose next fire was `next`: those to fire, how many
/// missed fires were skipped, and the next fire after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Fire times to enqueue, oldest first.
    pub fire: Vec<Millis>,
    /// Missed fire times not enqueued under the catch-up policy.
    pub skipped: Vec<Millis>,
    /// The next fire time not yet due (`None`: the expression fires no more).
    pub next: Option<Millis>,
}

/// Which of `schedule`'s fires from `next` on are due at `now`, under `catch_up`. A fire at
/// most [`ON_TIME_MS`] late is on time and always fires; older ones are missed and follow
/// `catch_up`.
pub fn due_fires(schedule: &CronSchedule, next: Millis, now: Millis, catch_up: CatchUp) -> Due {
    let mut due = Vec::new();
    let mut t = Some(next);
    while let Some(at) = t {
        if at > now || due.len() >= MAX_FIRES_PER_PASS {
            break;
        }
        due.push(at);
        t = schedule.next_after(at);
    }
    let late = |at: &Millis| now.saturating_sub(*at) > ON_TIME_MS;
    let missed: Vec<Millis> = due.iter().copied().filter(late).collect();
    let on_time: Vec<Millis> = due.iter().copied().filter(|at| !late(at)).collect();
    let keep = match catch_up {
        CatchUp::None => 0,
        CatchUp::Latest => 1,
        CatchUp::All(bound) => bound,
    };
    let split = missed.len().saturating_sub(keep);
    let (skipped, caught) = missed.split_at(split);
    let mut fire = caught.to_vec();
    fire.extend(on_time);
    Due {
        fire,
        skipped: skipped.to_vec(),
        next: t,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        let local = tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap();
        u64::try_from(local.timestamp_millis()).unwrap()
    }

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        ms(Tz::UTC, y, mo, d, h, mi)
    }

    #[test]
    fn five_and_six_field_expressions_parse_and_fire_in_their_zone() {
        let daily = CronSchedule::parse("30 9 * * *", "Europe/Paris").unwrap();
        let from = utc_ms(2026, 6, 1, 0, 0);
        // 09:30 in Paris in June is 07:30 UTC.
        assert_eq!(daily.next_after(from), Some(utc_ms(2026, 6, 1, 7, 30)));
        let every_10s = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(every_10s.next_after(from), Some(from + 10_000));
        assert_eq!(
            every_10s.upcoming(from, 3),
            vec![from + 10_000, from + 20_000, from + 30_000]
        );
        // From inside a second, the next fire is still on a whole second.
        assert_eq!(every_10s.next_after(from + 1), Some(from + 10_000));
        assert_eq!(
            daily.next_after(utc_ms(2026, 6, 1, 7, 30) + 999),
            Some(utc_ms(2026, 6, 2, 7, 30))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_what_is_wrong() {
        let err = CronSchedule::parse("* * *", "UTC").unwrap_err();
        assert!(err.to_string().contains("3 fields"), "{err}");
        let err = CronSchedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::Expression { .. }), "{err}");
        let err = CronSchedule::parse("0 0 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(err, ScheduleError::TimeZone("Mars/Olympus".into()));
        let err = CronSchedule::parse("0 0 31 2 *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::NeverFires(_)), "{err}");
        assert!(CronSchedule::parse(&"* ".repeat(200), "UTC").is_err());
    }

    #[test]
    fn a_time_skipped_by_spring_forward_fires_once_that_day() {
        let paris = Tz::Europe__Paris;
        let s = CronSchedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        // 2026-03-29: clocks go from 02:00 to 03:00 in Paris.
        let fires = s.upcoming(ms(paris, 2026, 3, 27, 12, 0), 4);
        let days: Vec<u32> = fires
            .iter()
            .map(|f| {
                let t = DateTime::<Utc>::from_timestamp_millis(*f as i64).unwrap();
                chrono::Datelike::day(&t.with_timezone(&paris))
            })
            .collect();
        assert_eq!(days, vec![28, 29, 30, 31], "once a day: {fires:?}");
        // That day's fire is at the first instant after the gap, 03:00 local (01:00 UTC).
        assert_eq!(fires[1], utc_ms(2026, 3, 29, 1, 0), "{fires:?}");
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once_that_day() {
        let paris = Tz::Europe__Paris;
        let s = CronSchedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        // 2026-10-25: clocks go from 03:00 back to 02:00; 02:30 happens twice.
        let fires = s.upcoming(ms(paris, 2026, 10, 24, 12, 0), 3);
        // The first 02:30 (CEST, 00:30 UTC) only.
        assert_eq!(fires[0], utc_ms(2026, 10, 25, 0, 30), "{fires:?}");
        assert_eq!(fires[1], ms(paris, 2026, 10, 26, 2, 30), "{fires:?}");
    }

    #[test]
    fn missed_fires_follow_the_catch_up_policy_and_on_time_ones_always_fire() {
        let s = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let first = utc_ms(2026, 1, 1, 1, 0);
        // Down from 01:00 to 04:00:30: 01:00, 02:00 and 03:00 are missed, 04:00 is on time.
        let now = utc_ms(2026, 1, 1, 4, 0) + 30_000;
        let none = due_fires(&s, first, now, CatchUp::None);
        assert_eq!(none.fire, vec![utc_ms(2026, 1, 1, 4, 0)]);
        assert_eq!(none.skipped.len(), 3);
        assert_eq!(none.next, Some(utc_ms(2026, 1, 1, 5, 0)));
        let latest = due_fires(&s, first, now, CatchUp::Latest);
        assert_eq!(
            latest.fire,
            vec![utc_ms(2026, 1, 1, 3, 0), utc_ms(2026, 1, 1, 4, 0)]
        );
        let all = due_fires(&s, first, now, CatchUp::All(10));
        assert_eq!(all.fire.len(), 4);
        assert!(all.skipped.is_empty());
        let bounded = due_fires(&s, first, now, CatchUp::All(2));
        assert_eq!(
            bounded.fire,
            vec![
                utc_ms(2026, 1, 1, 2, 0),
                utc_ms(2026, 1, 1, 3, 0),
                utc_ms(2026, 1, 1, 4, 0)
            ]
        );
        assert_eq!(bounded.skipped, vec![first]);
        // Nothing due yet.
        let early = due_fires(&s, first, first - 1, CatchUp::All(10));
        assert!(early.fire.is_empty() && early.skipped.is_empty());
        assert_eq!(early.next, Some(first));
    }
}
