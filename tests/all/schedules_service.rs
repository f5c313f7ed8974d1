//! Schedules through a real `stepwise serve`: the routes and their errors, the CLI, and
//! `kill -9` of the server while a schedule fires every second: every fire time from the
//! first to the last has exactly one run, whatever the kill interrupted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_created_shown_changed_and_removed_over_http_and_the_cli() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("timer").await;
    api.deploy(&token, guests::FLOWS).await;
    let body = json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris",
                      "job": "double", "queue": "cron", "payload": {"n": 2},
                      "overlap": "skip", "catch_up": "latest"});
    let (status, created) = api.post(&token, "/v1/schedules", Some(body.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["next_fires"].as_array().unwrap().len(),
        5,
        "{created}"
    );
    assert_eq!(created["overlap"], "skip");
    let (status, err) = api.post(&token, "/v1/schedules", Some(body)).await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (409, json!("schedule_exists"))
    );
    for (bad, code) in [
        (
            json!({"name": "x", "cron": "* *", "job": "double", "queue": "q"}),
            "invalid_schedule",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "timezone": "Nowhere/Land", "job": "double", "queue": "q"}),
            "invalid_schedule",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "job": "missing", "queue": "q"}),
            "unknown_job",
        ),
        (
            json!({"name": "x", "cron": "0 * * * *", "job": "double", "queue": "q", "overlap": "sometimes"}),
            "invalid_json",
        ),
        (
            json!({"name": "bad name", "cron": "0 * * * *", "job": "double", "queue": "q"}),
            "invalid_name",
        ),
    ] {
        let (status, err) = api.post(&token, "/v1/schedules", Some(bad.clone())).await;
        assert_eq!(err["error"]["code"], code, "{bad}: {status} {err}");
    }
    // An integer beyond 64 bits in a payload is refused, not turned into a float, on create
    // and on change.
    let huge = r#"{"name": "x", "cron": "0 * * * *", "job": "double", "queue": "q",
                   "payload": {"n": 36893488147419103232}}"#;
    for (method, path, body) in [
        (reqwest::Method::POST, "/v1/schedules", huge.to_owned()),
        (
            reqwest::Method::PUT,
            "/v1/schedules/nightly",
            r#"{"payload": {"n": 36893488147419103232}}"#.to_owned(),
        ),
    ] {
        let raw = crate::serve_util::Body::Raw(body.into_bytes(), "application/json");
        let (status, err) = api.request(method, Some(&token), path, raw).await;
        assert_eq!(
            (status, err["error"]["code"].clone()),
            (400, json!("invalid_json")),
            "{err}"
        );
    }
    let (status, paused) = api
        .put(&token, "/v1/schedules/nightly", json!({"paused": true}))
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    assert!(paused["next_fires"].as_array().unwrap().is_empty());
    let (status, err) = api.put(&token, "/v1/schedules/nightly", json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (400, json!("invalid_options"))
    );
    let (status, _) = api.get(&token, "/v1/schedules/absent").await;
    assert_eq!(status, 404);

    let cli = |args: &[&str]| server.cli(&token, args);
    let (code, text, err) = cli(&["schedules", "resume", "nightly"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("resumed schedule nightly") && text.contains("next fires"),
        "{text}"
    );
    let (code, text, err) = cli(&[
        "schedules",
        "create",
        "every-minute",
        "--cron",
        "* * * * *",
        "--job",
        "double",
        "--queue",
        "cron",
        "--payload",
        "{\"n\":3}",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("created schedule every-minute"), "{text}");
    let (code, text, _) = cli(&["schedules", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("nightly") && text.contains("every-minute"),
        "{text}"
    );
    let (code, json_text, _) = cli(&["schedules", "show", "nightly", "--json"]);
    assert_eq!(code, Some(0));
    let shown: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(shown["timezone"], "Europe/Paris");
    let (code, _, err) = cli(&[
        "schedules",
        "create",
        "x",
        "--cron",
        "nope",
        "--job",
        "double",
        "--queue",
        "q",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, _) = cli(&["schedules", "rm", "every-minute"]);
    assert_eq!(code, Some(0));
    let (code, _, _) = cli(&["schedules", "rm", "every-minute"]);
    assert_eq!(code, Some(3), "not found exits 3");
    let (_, list) = api.get(&token, "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1, "{list}");
}

/// A schedule firing every second with `catch_up: all`, the server killed with SIGKILL
/// twice: the fire times it handled form one unbroken sequence of seconds, each with its own
/// run, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_firing_never_doubles_or_loses_a_fire() {
    let mut server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("ticker").await;
    api.deploy(&token, guests::FLOWS).await;
    let (status, body) = api
        .post(
            &token,
            "/v1/schedules",
            Some(
                json!({"name": "tick", "cron": "* * * * * *", "job": "double",
                          "queue": "ticks", "catch_up": "all", "catch_up_limit": 100}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        server.kill9();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        server.restart();
    }
    let api = server.api();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, pause) = api
        .put(&token, "/v1/schedules/tick", json!({"paused": true}))
        .await;
    assert_eq!(pause["paused"], true, "{pause}");
    let (_, shown) = api.get(&token, "/v1/schedules/tick").await;
    let recent = shown["recent"].as_array().unwrap();
    let fires: Vec<u64> = recent
        .iter()
        .filter(|f| f["outcome"] == "fired")
        .map(|f| f["at"].as_u64().unwrap())
        .collect();
    assert!(fires.len() >= 6, "it fired: {shown:#}");
    let unique: BTreeSet<u64> = fires.iter().copied().collect();
    assert_eq!(unique.len(), fires.len(), "no fire time twice: {fires:?}");
    let (lo, hi) = (*unique.first().unwrap(), *unique.last().unwrap());
    // `recent` holds the last 20 fires: every second between its oldest and newest is there.
    assert_eq!(
        unique.len() as u64,
        (hi - lo) / 1000 + 1,
        "no fire lost: {fires:?}"
    );
    // Each fire's run exists once, in the schedule's queue.
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let (_, page) = api.get(&token, "/v1/runs?queue=ticks&limit=1000").await;
        let runs = page["runs"].as_array().unwrap().clone();
        if runs.len() as u64 >= shown["fired"].as_u64().unwrap() || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        runs.len() as u64,
        shown["fired"].as_u64().unwrap(),
        "one run per fire: {shown:#}"
    );
    let ids: BTreeSet<&str> = recent.iter().filter_map(|f| f["run"].as_str()).collect();
    assert_eq!(ids.len(), fires.len(), "distinct runs");
}
