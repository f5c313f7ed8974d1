//! Schedules through a real `stepwise serve` running on a test clock (a file the test sets):
//! fires at each due time across a DST change in a named zone, exactly once across `kill -9`
//! just before and just after a fire time, catch-up after 3 missed fires under each policy,
//! and overlap `skip`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::{Api, Server};

/// 2026-03-27 00:00 UTC.
const MARCH_27: u64 = 1_774_569_600_000;
const HOUR: u64 = 3_600_000;

/// Waits until the server has handled every fire of `name` due at `now`: its next fire is
/// later (or it has none).
async fn settled(api: &Api, token: &str, name: &str, now: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, schedule) = api.get(token, &format!("/v1/schedules/{name}")).await;
        assert_eq!(status, 200, "{schedule}");
        if schedule["next_fires"][0]
            .as_u64()
            .is_none_or(|next| next > now)
        {
            return schedule;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not fire what is due at {now}: {schedule:#}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fired_at(schedule: &Value) -> Vec<u64> {
    let mut at: Vec<u64> = schedule["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "fired")
        .map(|f| f["at"].as_u64().unwrap())
        .collect();
    at.sort_unstable();
    at
}

fn outcomes(schedule: &Value) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = schedule["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["at"].as_u64().unwrap(),
                f["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn create(api: &Api, token: &str, body: Value) {
    let (status, created) = api.post(token, "/v1/schedules", Some(body)).await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_schedule_fires_at_each_local_time_across_spring_forward_in_paris() {
    let server = Server::start_with_clock("", MARCH_27);
    let api = server.api();
    let token = api.admin_create_tenant("dst").await;
    api.deploy(&token, guests::FLOWS).await;
    create(
        &api,
        &token,
        json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris",
               "job": "double", "queue": "cron", "payload": {"n": 1}}),
    )
    .await;
    // 02:30 in Paris is 01:30 UTC before the change and 00:30 after; on 2026-03-29 02:30
    // does not exist and fires once, at 03:00 CEST (01:00 UTC).
    let expected = vec![
        MARCH_27 + HOUR + HOUR / 2,
        MARCH_27 + 24 * HOUR + HOUR + HOUR / 2,
        MARCH_27 + 48 * HOUR + HOUR,
        MARCH_27 + 72 * HOUR + HOUR / 2,
    ];
    // Time moves as a real clock would: to each next fire, then a little past it.
    let end = MARCH_27 + 4 * 24 * HOUR;
    let mut schedule = settled(&api, &token, "nightly", MARCH_27).await;
    let upcoming: Vec<u64> = schedule["next_fires"].as_array().unwrap()[..4]
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(upcoming, expected);
    while let Some(next) = schedule["next_fires"][0].as_u64().filter(|&t| t < end) {
        server.set_time(next);
        schedule = settled(&api, &token, "nightly", next).await;
        server.set_time(next + 1_000);
    }
    assert_eq!(fired_at(&schedule), expected);
    assert_eq!(schedule["fired"], 4);
    assert_eq!(schedule["skipped"], 0);
    // Each fire's run ran, and its timeline names the schedule and the fire time.
    for fire in schedule["recent"].as_array().unwrap() {
        let id = fire["run"].as_str().unwrap();
        let run = api.wait_final(&token, id, Duration::from_secs(30)).await;
        assert_eq!(run["status"], "completed", "{run:#}");
        let detail = run["timeline"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("fired by schedule 'nightly' for 2026-0"),
            "{detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_just_before_and_just_after_a_fire_time_fires_it_exactly_once() {
    let mut server = Server::start_with_clock("", MARCH_27);
    let api = server.api();
    let token = api.admin_create_tenant("crashy").await;
    api.deploy(&token, guests::FLOWS).await;
    create(
        &api,
        &token,
        json!({"name": "hourly", "cron": "0 * * * *", "job": "double", "queue": "cron"}),
    )
    .await;
    // Just before 01:00: nothing due; the server is killed.
    server.set_time(MARCH_27 + HOUR - 1);
    settled(&api, &token, "hourly", MARCH_27 + HOUR - 1).await;
    server.kill9();
    // Restarted just after: it fires 01:00 once.
    server.set_time(MARCH_27 + HOUR + 1);
    server.restart();
    let api = server.api();
    let schedule = settled(&api, &token, "hourly", MARCH_27 + HOUR + 1).await;
    assert_eq!(fired_at(&schedule), vec![MARCH_27 + HOUR]);
    // Killed just after the fire, restarted within the same hour: still once.
    server.kill9();
    server.set_time(MARCH_27 + HOUR + 2);
    server.restart();
    let api = server.api();
    let schedule = settled(&api, &token, "hourly", MARCH_27 + HOUR + 2).await;
    assert_eq!(fired_at(&schedule), vec![MARCH_27 + HOUR]);
    assert_eq!(schedule["fired"], 1);
    let (_, runs) = api.get(&token, "/v1/runs?queue=cron").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_fires_missed_while_down_are_caught_up_by_each_policy() {
    let mut server = Server::start_with_clock("", MARCH_27);
    let api = server.api();
    let token = api.admin_create_tenant("catchup").await;
    api.deploy(&token, guests::FLOWS).await;
    for policy in ["none", "latest", "all"] {
        create(
            &api,
            &token,
            json!({"name": policy, "cron": "0 * * * *", "job": "double",
                   "queue": policy, "catch_up": policy}),
        )
        .await;
    }
    server.set_time(MARCH_27 + HOUR / 2);
    for policy in ["none", "latest", "all"] {
        settled(&api, &token, policy, MARCH_27 + HOUR / 2).await;
    }
    // Down from 00:30 to 03:30: the fires of 01:00, 02:00 and 03:00 are missed.
    server.kill9();
    let back = MARCH_27 + 3 * HOUR + HOUR / 2;
    server.set_time(back);
    server.restart();
    let api = server.api();
    let missed = [MARCH_27 + HOUR, MARCH_27 + 2 * HOUR, MARCH_27 + 3 * HOUR];
    let expect = |fired: &[u64]| -> Vec<(u64, String)> {
        missed
            .iter()
            .map(|&at| {
                let outcome = if fired.contains(&at) {
                    "fired"
                } else {
                    "skipped_missed"
                };
                (at, outcome.to_owned())
            })
            .collect()
    };
    let none = settled(&api, &token, "none", back).await;
    assert_eq!(outcomes(&none), expect(&[]));
    let latest = settled(&api, &token, "latest", back).await;
    assert_eq!(outcomes(&latest), expect(&[missed[2]]));
    let all = settled(&api, &token, "all", back).await;
    assert_eq!(outcomes(&all), expect(&missed));
    for (queue, n) in [("none", 0), ("latest", 1), ("all", 3)] {
        let (_, runs) = api.get(&token, &format!("/v1/runs?queue={queue}")).await;
        assert_eq!(runs["runs"].as_array().unwrap().len(), n, "{queue}: {runs}");
    }
    // The next fire, on time, fires under every policy.
    server.set_time(MARCH_27 + 4 * HOUR);
    for policy in ["none", "latest", "all"] {
        let s = settled(&api, &token, policy, MARCH_27 + 4 * HOUR).await;
        assert!(
            fired_at(&s).contains(&(MARCH_27 + 4 * HOUR)),
            "{policy}: {s:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_skips_a_fire_while_the_previous_run_has_not_ended() {
    let server = Server::start_with_clock("", MARCH_27);
    let api = server.api();
    let token = api.admin_create_tenant("overlap").await;
    api.deploy(&token, guests::FLOWS).await;
    // `linger` waits a day for an event nobody sends.
    create(
        &api,
        &token,
        json!({"name": "minutely", "cron": "* * * * *", "job": "linger",
               "queue": "slow", "overlap": "skip", "payload": {"n": 1}}),
    )
    .await;
    let minute = 60_000;
    server.set_time(MARCH_27 + minute);
    let first = settled(&api, &token, "minutely", MARCH_27 + minute).await;
    let run = first["recent"][0]["run"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.run(&token, &run).await["status"] != "waiting" {
        assert!(
            Instant::now() < deadline,
            "the first run never waited: {:#}",
            api.run(&token, &run).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.set_time(MARCH_27 + 2 * minute);
    let second = settled(&api, &token, "minutely", MARCH_27 + 2 * minute).await;
    assert_eq!(
        outcomes(&second),
        vec![
            (MARCH_27 + minute, "fired".to_owned()),
            (MARCH_27 + 2 * minute, "skipped_overlap".to_owned())
        ]
    );
    // Once the previous run ended, the next fire runs again.
    let (status, _) = api
        .post(&token, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    server.set_time(MARCH_27 + 3 * minute);
    let third = settled(&api, &token, "minutely", MARCH_27 + 3 * minute).await;
    assert_eq!(
        outcomes(&third).last(),
        Some(&(MARCH_27 + 3 * minute, "fired".to_owned()))
    );
}
