//! Cron schedules through the engine on a real store with real guests and an injected
//! clock: fires at each due time across a DST change in a named zone, exactly once across a
//! restart before or after a fire time, catch-up of missed fires under each policy, overlap
//! `skip`, pause and resume, and refused specs.

use std::time::Duration;

use serde_json::json;
use stepwise::clock::Millis;
use stepwise::schedule::{CatchUp, FireOutcome, Overlap, ScheduleSpec};
use stepwise::store::{Durability, RedbStore};
use stepwise::{Engine, EngineConfig, EngineError, ManualClock};
use stepwise_tests::guests;

use crate::util::*;

const TENANT: &str = "sched";

/// 2026-03-27 00:00 UTC.
const MARCH_27: Millis = 1_774_569_600_000;
const HOUR: u64 = 3_600_000;

fn spec(cron: &str, tz: &str) -> ScheduleSpec {
    ScheduleSpec {
        cron: cron.into(),
        timezone: tz.into(),
        job: "double".into(),
        queue: "cron".into(),
        payload: json!({"n": 1}),
        overrides: Default::default(),
        priority: 0,
        overlap: Overlap::Allow,
        catch_up: CatchUp::None,
        catch_up_limit: 10,
        paused: false,
    }
}

async fn engine_on(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    let redb = std::sync::Arc::new(RedbStore::open(dir, Durability::Immediate).unwrap());
    engine_over(redb, EngineConfig::default(), clock).await
}

async fn setup(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    let engine = engine_on(dir, clock).await;
    engine.create_tenant(TENANT).await.unwrap();
    let bytes = std::fs::read(guests::FLOWS).unwrap();
    engine.deploy_for(TENANT, &bytes).await.unwrap();
    engine
}

/// Advances the clock to `at` and lets the engine fire what is due.
async fn fire_at(engine: &Engine, clock: &ManualClock, at: Millis) {
    let now = stepwise::Clock::now(clock);
    if at > now {
        clock.advance(Duration::from_millis(at - now));
    }
    engine.fire_due_schedules().await.unwrap();
}

fn fired_at(record: &stepwise::schedule::ScheduleRecord) -> Vec<Millis> {
    let mut at: Vec<Millis> = record
        .recent
        .iter()
        .filter(|f| f.outcome == FireOutcome::Fired)
        .map(|f| f.at)
        .collect();
    at.sort_unstable();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_schedule_fires_once_each_day_across_spring_forward_in_paris() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    let record = engine
        .create_schedule(TENANT, "nightly", spec("30 2 * * *", "Europe/Paris"))
        .await
        .unwrap();
    // 02:30 in Paris: 01:30 UTC before the change (CET), and on 2026-03-29 02:30 does not
    // exist (02:00 jumps to 03:00): that day fires at 03:00 CEST, 01:00 UTC.
    let expected = [
        MARCH_27 + HOUR + HOUR / 2,
        MARCH_27 + 24 * HOUR + HOUR + HOUR / 2,
        MARCH_27 + 48 * HOUR + HOUR,
        MARCH_27 + 72 * HOUR + HOUR / 2,
    ];
    assert_eq!(engine.upcoming_fires(&record, 4), expected);
    // Pass every 10 minutes through four days: each fire is handled once, on time.
    let mut t = MARCH_27;
    while t < MARCH_27 + 4 * 24 * HOUR {
        t += 600_000;
        fire_at(&engine, &clock, t).await;
    }
    let record = engine.schedule(TENANT, "nightly").await.unwrap();
    assert_eq!(fired_at(&record), expected);
    assert_eq!(record.fired, 4);
    assert_eq!(record.skipped, 0);
    for fire in &record.recent {
        let run = engine
            .tenant_run(TENANT, fire.run.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(run.queue, "cron");
        assert_eq!(run.job, "double");
        // The run's timeline names the schedule and the fire time it was enqueued for.
        let view = engine.view(&run.id).await.unwrap();
        let created = &view.timeline[0].detail;
        let when = stepwise::time_fmt::rfc3339(fire.at);
        assert_eq!(
            *created,
            format!("job 'double' on queue 'cron', fired by schedule 'nightly' for {when}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_just_before_or_after_a_fire_time_fires_it_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    engine
        .create_schedule(TENANT, "hourly", spec("0 * * * *", "UTC"))
        .await
        .unwrap();
    // Just before 01:00: nothing due; the engine goes away.
    fire_at(&engine, &clock, MARCH_27 + HOUR - 1).await;
    drop(engine);
    let engine = engine_on(dir.path(), &clock).await;
    // Just after: the new engine fires 01:00 once.
    fire_at(&engine, &clock, MARCH_27 + HOUR + 1).await;
    // Another pass, and another engine, within the same hour: still once.
    fire_at(&engine, &clock, MARCH_27 + HOUR + 2).await;
    drop(engine);
    let engine = engine_on(dir.path(), &clock).await;
    fire_at(&engine, &clock, MARCH_27 + HOUR + 3).await;
    let record = engine.schedule(TENANT, "hourly").await.unwrap();
    assert_eq!(fired_at(&record), vec![MARCH_27 + HOUR]);
    let runs = engine
        .list_runs(TENANT, &stepwise::RunFilter::default(), None, 100)
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 1, "one run for the fire: {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_enqueued_before_a_crash_is_not_enqueued_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    let record = engine
        .create_schedule(TENANT, "hourly", spec("0 * * * *", "UTC"))
        .await
        .unwrap();
    fire_at(&engine, &clock, MARCH_27 + HOUR).await;
    // As if the host died after the enqueue but before the schedule's next fire time was
    // stored: put the schedule back as it was before the pass.
    let store = engine.store();
    let current = store.schedule(TENANT, "hourly").await.unwrap().unwrap();
    let mut stale = record.clone();
    stale.version = 0;
    store
        .put_schedule(TENANT, &stale, Some(current.version))
        .await
        .unwrap();
    engine.fire_due_schedules().await.unwrap();
    let runs = engine
        .list_runs(TENANT, &stepwise::RunFilter::default(), None, 100)
        .await
        .unwrap()
        .runs;
    assert_eq!(
        runs.len(),
        1,
        "the repeated fire found its run by key: {runs:?}"
    );
    let again = engine.schedule(TENANT, "hourly").await.unwrap();
    assert_eq!(again.recent[0].run.as_deref(), Some(runs[0].id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_missed_fires_are_caught_up_by_policy() {
    for (policy, expected_fired, expected_skipped) in [
        (CatchUp::None, 0usize, 3u64),
        (CatchUp::Latest, 1, 2),
        (CatchUp::All, 3, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(MARCH_27);
        let engine = setup(dir.path(), &clock).await;
        engine
            .create_schedule(
                TENANT,
                "hourly",
                ScheduleSpec {
                    catch_up: policy,
                    ..spec("0 * * * *", "UTC")
                },
            )
            .await
            .unwrap();
        // Down from before 01:00 until 03:30: 01:00, 02:00 and 03:00 were missed.
        fire_at(&engine, &clock, MARCH_27 + 3 * HOUR + HOUR / 2).await;
        let record = engine.schedule(TENANT, "hourly").await.unwrap();
        let fired = fired_at(&record);
        assert_eq!(
            fired.len(),
            expected_fired,
            "{policy:?}: {:?}",
            record.recent
        );
        assert_eq!(record.skipped, expected_skipped, "{policy:?}");
        if policy == CatchUp::Latest {
            assert_eq!(fired, vec![MARCH_27 + 3 * HOUR]);
        }
        assert_eq!(record.next_fire_at, Some(MARCH_27 + 4 * HOUR));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_skips_a_fire_while_the_previous_run_has_not_ended() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    engine
        .create_schedule(
            TENANT,
            "lingering",
            ScheduleSpec {
                job: "linger".into(),
                overlap: Overlap::Skip,
                ..spec("0 * * * *", "UTC")
            },
        )
        .await
        .unwrap();
    fire_at(&engine, &clock, MARCH_27 + HOUR).await;
    fire_at(&engine, &clock, MARCH_27 + 2 * HOUR).await;
    let record = engine.schedule(TENANT, "lingering").await.unwrap();
    let outcomes: Vec<FireOutcome> = record.recent.iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        vec![FireOutcome::SkippedOverlap, FireOutcome::Fired]
    );
    // Once the previous run ended, the next fire enqueues again.
    let first = record.recent[1].run.clone().unwrap();
    engine
        .cancel_for(TENANT, &first, "tester", None)
        .await
        .unwrap();
    fire_at(&engine, &clock, MARCH_27 + 3 * HOUR).await;
    let record = engine.schedule(TENANT, "lingering").await.unwrap();
    assert_eq!(record.recent[0].outcome, FireOutcome::Fired);
    assert_eq!(
        engine.metrics().schedule_fires(FireOutcome::SkippedOverlap),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_does_not_fire_and_resumes_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    engine
        .create_schedule(TENANT, "hourly", spec("0 * * * *", "UTC"))
        .await
        .unwrap();
    let pause = stepwise::engine::SchedulePatch {
        paused: Some(true),
        ..Default::default()
    };
    let paused = engine
        .update_schedule(TENANT, "hourly", pause)
        .await
        .unwrap();
    assert!(engine.upcoming_fires(&paused, 5).is_empty());
    fire_at(&engine, &clock, MARCH_27 + 5 * HOUR + 1).await;
    assert_eq!(engine.schedule(TENANT, "hourly").await.unwrap().fired, 0);
    let resume = stepwise::engine::SchedulePatch {
        paused: Some(false),
        ..Default::default()
    };
    let resumed = engine
        .update_schedule(TENANT, "hourly", resume)
        .await
        .unwrap();
    assert_eq!(
        resumed.next_fire_at,
        Some(MARCH_27 + 6 * HOUR),
        "missed fires while paused are not caught up"
    );
    fire_at(&engine, &clock, MARCH_27 + 6 * HOUR).await;
    assert_eq!(engine.schedule(TENANT, "hourly").await.unwrap().fired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_naming_the_problem_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(MARCH_27);
    let engine = setup(dir.path(), &clock).await;
    let cases: Vec<(ScheduleSpec, &str)> = vec![
        (spec("* * *", "UTC"), "3 fields"),
        (spec("0 0 * * *", "Mars/Olympus"), "time zone"),
        (spec("0 0 31 2 *", "UTC"), "never fires"),
        (
            ScheduleSpec {
                job: "no-such-job".into(),
                ..spec("0 * * * *", "UTC")
            },
            "unknown job",
        ),
        (
            ScheduleSpec {
                catch_up_limit: 0,
                ..spec("0 * * * *", "UTC")
            },
            "catch_up_limit",
        ),
        (
            ScheduleSpec {
                queue: "bad queue".into(),
                ..spec("0 * * * *", "UTC")
            },
            "invalid name",
        ),
    ];
    for (bad, says) in cases {
        let err = engine.create_schedule(TENANT, "s", bad).await.unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
    }
    assert!(engine.schedules(TENANT).await.unwrap().is_empty());
    engine
        .create_schedule(TENANT, "s", spec("0 * * * *", "UTC"))
        .await
        .unwrap();
    let err = engine
        .create_schedule(TENANT, "s", spec("0 * * * *", "UTC"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::ScheduleExists(_)), "{err}");
}
