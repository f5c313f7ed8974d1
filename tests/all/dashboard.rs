//! The dashboard through a real `stepwise serve`, over HTTP: `/` leads to it, pages need a
//! session, sign-in sets a strict cookie, pages show only the tenant's own objects, text a
//! handler wrote is escaped, every action needs its CSRF token and same origin, the pages
//! carry a Content-Security-Policy without inline script, and sign-out ends the session.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use stepwise_tests::guests;

use crate::serve_util::Server;

const HOSTILE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

/// Form posts, as a browser sends them (this crate's reqwest has no form feature).
trait FormExt {
    fn form(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form(self, pairs: &[(&str, &str)]) -> Self {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.join("&"))
    }
}

/// A browser-like client that follows nothing by itself.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token`; returns the session cookie (`name=value`).
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> String {
    let resp = http
        .post(format!("{base}/ui/sign-in"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

async fn page(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
) -> (StatusCode, String) {
    let resp = http
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_only_the_tenants_runs_escaped_and_guards_its_actions() {
    let server = Server::start();
    let api = server.api();
    let base = server.url().to_owned();
    let http = client();
    let acme = api.admin_create_tenant("acme").await;
    let other = api.admin_create_tenant("other").await;
    api.deploy(&acme, guests::TESTBED).await;
    api.deploy(&other, guests::TESTBED).await;
    let hostile = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "say", "payload": {"message": HOSTILE}}),
        )
        .await;
    let fine = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "many-steps", "payload": {"n": 3}}),
        )
        .await;
    let theirs = api
        .enqueue_new(
            &other,
            "theirs",
            json!({"job": "echo", "payload": {"count": 1}}),
        )
        .await;
    for (token, id) in [(&acme, &hostile), (&acme, &fine), (&other, &theirs)] {
        api.wait_final(token, id, Duration::from_secs(60)).await;
    }

    // `/` leads to the dashboard; a page without a session leads to sign-in.
    let resp = http.get(format!("{base}/")).send().await.unwrap();
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()[LOCATION], "/ui");
    let resp = http.get(format!("{base}/ui/runs")).send().await.unwrap();
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()[LOCATION], "/ui/sign-in");
    let resp = http
        .post(format!("{base}/ui/sign-in"))
        .form(&[("token", "sw_not_a_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("Unknown token."));

    // Sign-in: a strict session cookie, Secure behind TLS.
    let resp = http
        .post(format!("{base}/ui/sign-in"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", acme.as_str())])
        .send()
        .await
        .unwrap();
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = sign_in(&http, &base, &acme).await;

    // The runs page lists the tenant's runs, never another's, with counts per status.
    let (status, runs) = page(&http, &base, &cookie, "/ui/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(runs.contains(&hostile) && runs.contains(&fine), "{runs}");
    assert!(!runs.contains(&theirs));
    let (_, failed) = page(&http, &base, &cookie, "/ui/runs?status=failed").await;
    assert!(failed.contains(&hostile) && !failed.contains(&fine));
    let (_, by_queue) = page(&http, &base, &cookie, "/ui/runs?queue=nope").await;
    assert!(by_queue.contains("No runs match."));

    // The hostile run: its log line, error and payload are text, never markup.
    let resp = http
        .get(format!("{base}/ui/runs/{hostile}"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let csp = resp.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let detail = resp.text().await.unwrap();
    assert!(
        !detail.contains("<script>window"),
        "a handler's text reached the page as markup"
    );
    assert!(
        !detail.contains("<img src=x"),
        "a handler's text reached the page as markup"
    );
    assert!(
        detail.contains("&lt;script&gt;window.__pwned = 1&lt;/script&gt;"),
        "{detail}"
    );
    assert_eq!(
        detail.matches("<script").count(),
        1,
        "only the dashboard's own script"
    );
    assert!(detail.contains("<svg"), "the timeline is drawn");
    assert!(detail.contains("non_retryable"));

    // Another tenant's run is not found, as through the API.
    let (status, _) = page(&http, &base, &cookie, &format!("/ui/runs/{theirs}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Actions: without the CSRF token, or from another site, nothing happens.
    let token = csrf(&detail);
    let retry = format!("{base}/ui/runs/{hostile}/retry");
    let resp = http
        .post(&retry)
        .header(COOKIE, &cookie)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(&retry)
        .header(COOKIE, &cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.run(&acme, &hostile).await["status"], "failed");
    // With it, the retry happens.
    let resp = http
        .post(&retry)
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "{}",
        resp.text().await.unwrap()
    );
    let view = api
        .wait_final(&acme, &hostile, Duration::from_secs(60))
        .await;
    assert_eq!(view["attempts"], 2, "{view:#}");

    // The live streams need the session, and follow only the tenant's own runs: a run's
    // stream ends with the run, the counters' stream with its first change.
    for (path, last) in [
        (format!("/ui/runs/{fine}/live"), "event: end"),
        ("/ui/live?since=stale".to_owned(), "event: changed"),
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let resp = http
            .get(format!("{base}{path}"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream",
            "{path}"
        );
        let body = tokio::time::timeout(Duration::from_secs(30), resp.text())
            .await
            .expect("the stream ends")
            .unwrap();
        assert!(body.contains(last), "{path}: {body}");
        assert!(!body.contains(&theirs), "{path}: {body}");
    }
    let resp = http
        .get(format!("{base}/ui/runs/{theirs}/live"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Every action refuses a post without the token, from another site, or marked
    // cross-site by the browser; sign-in too refuses the last two.
    let actions = [
        format!("/ui/runs/{fine}/retry"),
        format!("/ui/runs/{fine}/cancel"),
        "/ui/queues/ui/dead-letters/retry".to_owned(),
        "/ui/queues/ui/dead-letters/purge".to_owned(),
        "/ui/sign-out".to_owned(),
    ];
    for path in &actions {
        for (csrf, header, value) in [
            ("", "x-unused", "1"),
            (token.as_str(), "origin", "https://evil.example"),
            (token.as_str(), "origin", "null"),
            (token.as_str(), "sec-fetch-site", "cross-site"),
        ] {
            let resp = http
                .post(format!("{base}{path}"))
                .header(COOKIE, &cookie)
                .header(header, value)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{path} {header}: {value}"
            );
        }
    }
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let resp = http
            .post(format!("{base}/ui/sign-in"))
            .header(header, value)
            .form(&[("token", acme.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "sign-in {header}: {value}"
        );
    }

    // Egress rules, and schedules paused and resumed from their page.
    let (status, _) = api
        .put(
            &acme,
            "/v1/egress",
            json!({"rules": [{"pattern": "api.stripe.com", "methods": ["POST"]}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, egress) = page(&http, &base, &cookie, "/ui/egress").await;
    assert!(
        egress.contains("https://api.stripe.com:443") && egress.contains("POST"),
        "{egress}"
    );
    let (status, _) = api
        .post(
            &acme,
            "/v1/schedules",
            Some(json!({"name": "nightly", "cron": "30 2 * * *", "job": "echo", "queue": "cron"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, schedules) = page(&http, &base, &cookie, "/ui/schedules").await;
    assert!(schedules.contains("nightly") && schedules.contains("/ui/schedules/nightly/pause"));
    let pause = format!("{base}/ui/schedules/nightly/pause");
    let resp = http
        .post(&pause)
        .header(COOKIE, &cookie)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .post(&pause)
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get(&acme, "/v1/schedules/nightly").await.1["paused"],
        true
    );
    let (_, schedules) = page(&http, &base, &cookie, "/ui/schedules").await;
    assert!(
        schedules.contains("/ui/schedules/nightly/resume"),
        "{schedules}"
    );
    let resp = http
        .post(format!("{base}/ui/schedules/nightly/resume"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get(&acme, "/v1/schedules/nightly").await.1["paused"],
        false
    );
    let (status, _) = page(&http, &base, &cookie, "/ui/schedules/absent/pause").await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "pausing is a POST only"
    );

    // Queues, dead letters and modules.
    let (_, queues) = page(&http, &base, &cookie, "/ui/queues").await;
    assert!(queues.contains("/ui/queues/ui/dead-letters") && !queues.contains("theirs"));
    let (_, dead) = page(&http, &base, &cookie, "/ui/queues/ui/dead-letters").await;
    assert!(dead.contains(&hostile), "{dead}");
    let (_, modules) = page(&http, &base, &cookie, "/ui/modules").await;
    assert!(modules.contains("many-steps") && modules.contains("say"));

    // Sign-out ends the session: the same cookie is sent to sign in again.
    let resp = http
        .post(format!("{base}/ui/sign-out"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        resp.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let resp = http
        .get(format!("{base}/ui/runs"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/ui/sign-in");
    for path in [format!("/ui/runs/{fine}/live"), "/ui/live".to_owned()] {
        let resp = http
            .get(format!("{base}{path}"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{path} after sign-out"
        );
    }
}

/// 2026-01-01T00:00:00Z, where the server's test clock starts.
const JAN_1: u64 = 1_767_225_600_000;
const HOUR: u64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filter_by_creation_time_and_queues_chart_the_last_hour_on_the_servers_clock() {
    let server = Server::start_with_clock("", JAN_1);
    let api = server.api();
    let base = server.url().to_owned();
    let http = client();
    let acme = api.admin_create_tenant("acme").await;
    api.deploy(&acme, guests::TESTBED).await;
    let early = api
        .enqueue_new(
            &acme,
            "q",
            json!({"job": "echo", "payload": {"message": "early", "count": 1}}),
        )
        .await;
    let done = api.wait_final(&acme, &early, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    server.set_time(JAN_1 + 2 * HOUR);
    let late = api
        .enqueue_new(
            &acme,
            "q",
            json!({"job": "echo", "payload": {"message": "late", "count": 2}}),
        )
        .await;
    let failed = api
        .enqueue_new(
            &acme,
            "q",
            json!({"job": "say", "payload": {"message": "no"}}),
        )
        .await;
    for id in [&late, &failed] {
        api.wait_final(&acme, id, Duration::from_secs(60)).await;
    }
    let cookie = sign_in(&http, &base, &acme).await;

    // The dashboard's time filter (a browser's datetime-local value, read as UTC).
    let listed = |html: &str| (html.contains(&early), html.contains(&late));
    let (status, page_from) = page(&http, &base, &cookie, "/ui/runs?from=2026-01-01T01:00").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&page_from), (false, true), "{page_from}");
    let (_, page_to) = page(&http, &base, &cookie, "/ui/runs?to=2026-01-01T01:00").await;
    assert_eq!(listed(&page_to), (true, false), "{page_to}");
    let (_, both) = page(
        &http,
        &base,
        &cookie,
        "/ui/runs?from=2026-01-01T00:00&to=2026-01-01T02:00:01",
    )
    .await;
    assert_eq!(listed(&both), (true, true));
    // The presets are relative to the server's clock: the last hour holds the late runs.
    assert!(
        page_from.contains("from=2026-01-01T01%3A00\">Last hour"),
        "{page_from}"
    );
    let (status, bad) = page(&http, &base, &cookie, "/ui/runs?from=noon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad.contains("from &#39;noon&#39; is not a time")
            || bad.contains("from 'noon' is not a time"),
        "{bad}"
    );

    // The API's filter, in RFC 3339.
    let (status, body) = api
        .get(&acme, "/v1/runs?created_from=2026-01-01T01:00:00Z")
        .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&late.as_str()) && !ids.contains(&early.as_str()),
        "{body}"
    );
    let (_, body) = api
        .get(&acme, "/v1/runs?created_before=2026-01-01T01:00:00%2B00:00")
        .await;
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["runs"][0]["id"], early.as_str());
    let (code, out, err) = server.cli(
        &acme,
        &["runs", "list", "--created-from", "2026-01-01T01:00:00Z"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&late) && !out.contains(&early), "{out}");
    let answer = api.get(&acme, "/v1/runs?created_before=2026-01-01").await;
    let err = crate::serve_util::assert_error(&answer, 400, "invalid_options");
    assert!(
        err["message"].as_str().unwrap().contains("created_before"),
        "{err}"
    );

    // The queue's last hour (on the server's clock): the two late runs, one failed; the
    // early run ended two hours ago and is off the chart.
    let (_, queues) = page(&http, &base, &cookie, "/ui/queues").await;
    assert!(
        queues.contains("1 completed · 1 failed · last hour"),
        "{queues}"
    );
    assert_eq!(
        queues.matches("<g class=\"minute\">").count(),
        1,
        "{queues}"
    );
    assert!(
        queues.contains("2026-01-01T02:00Z: 1 completed, 1 failed"),
        "{queues}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_page_lists_the_tenants_events_with_the_runs_they_resumed() {
    let server = Server::start();
    let api = server.api();
    let base = server.url().to_owned();
    let http = client();
    let shop = api.admin_create_tenant("shop").await;
    let rival = api.admin_create_tenant("rival").await;
    api.deploy(&shop, guests::FLOWS).await;
    let waiting = api
        .waiting_for_event(&shop, "orders", "order.paid", "o-9")
        .await;
    let (status, _) = api
        .post(
            &shop,
            "/v1/events",
            Some(json!({"name": "order.paid", "correlation_key": "o-9",
                        "payload": {"note": "<b>paid</b>"}, "id": "pay-1"})),
        )
        .await;
    assert_eq!(status, 201);
    for i in 0..3 {
        let (status, _) = api
            .post(
                &shop,
                "/v1/events",
                Some(json!({"name": "other", "id": format!("x-{i}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = api
        .post(
            &rival,
            "/v1/events",
            Some(json!({"name": "theirs", "id": "secret-event"})),
        )
        .await;
    assert_eq!(status, 201, "the rival's event is stored");
    api.wait_final(&shop, &waiting, Duration::from_secs(60))
        .await;

    let cookie = sign_in(&http, &base, &shop).await;
    let (status, events) = page(&http, &base, &cookie, "/ui/events").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        events.contains("pay-1") && events.contains("x-2"),
        "{events}"
    );
    assert!(
        !events.contains("secret-event"),
        "another tenant's event is shown"
    );
    assert!(
        events.contains(&format!("href=\"/ui/runs/{waiting}\"")),
        "the resumed run is linked: {events}"
    );
    assert!(
        events.contains("&lt;b&gt;paid&lt;/b&gt;") && !events.contains("<b>paid"),
        "{events}"
    );
    // Newest first.
    assert!(events.find("x-2").unwrap() < events.find("pay-1").unwrap());
    let (_, named) = page(&http, &base, &cookie, "/ui/events?name=order.paid&key=o-9").await;
    assert!(named.contains("pay-1") && !named.contains("x-0"), "{named}");
    let (_, none) = page(&http, &base, &cookie, "/ui/events?name=order.paid&key=o-1").await;
    assert!(none.contains("No events match."), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_only_dashboard_uses_a_secure_host_cookie() {
    let server = Server::start_with_config("[dashboard]\nhttps_only = true\n");
    let api = server.api();
    let base = server.url().to_owned();
    let http = client();
    let acme = api.admin_create_tenant("acme").await;
    let resp = http
        .post(format!("{base}/ui/sign-in"))
        .form(&[("token", acme.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("__Host-stepwise_session=") && set.contains("; Path=/;"),
        "{set}"
    );
    for part in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, runs) = page(&http, &base, &cookie, "/ui/runs").await;
    assert_eq!(status, StatusCode::OK);
    // The same id under the plain name is not a session here.
    let plain = cookie.replacen("__Host-", "", 1);
    let resp = http
        .get(format!("{base}/ui/runs"))
        .header(COOKIE, &plain)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/ui/sign-in");
    // The live stream takes the same cookie.
    let resp = http
        .get(format!("{base}/ui/live"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    let resp = http
        .post(format!("{base}/ui/sign-out"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf(&runs).as_str())])
        .send()
        .await
        .unwrap();
    let cleared = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cleared.starts_with("__Host-stepwise_session=;")
            && cleared.contains("Max-Age=0")
            && cleared.ends_with("Secure"),
        "{cleared}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_live_streams_are_counted_apart_from_the_apis() {
    let server = Server::start();
    let api = server.api();
    let base = server.url().to_owned();
    let http = client();
    let acme = api.admin_create_tenant("acme").await;
    api.deploy(&acme, guests::TESTBED).await;
    let later = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "many-steps", "payload": {"n": 1}, "delay": "1h"}),
        )
        .await;
    let cookie = sign_in(&http, &base, &acme).await;
    // The runs page's own stream, from the fingerprint it was rendered with: it stays open
    // while nothing changes.
    let (_, runs) = page(&http, &base, &cookie, "/ui/runs").await;
    let at = runs
        .find("data-live=\"")
        .expect("the runs page follows a stream")
        + 11;
    let stream = runs[at..].split('"').next().unwrap().to_owned();
    let live = || {
        http.get(format!("{base}{stream}"))
            .header(COOKIE, &cookie)
            .send()
    };
    // A tenant's dashboard tabs hold every dashboard stream it may have...
    let mut open = Vec::new();
    for _ in 0..16 {
        let resp = live().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let refused = live().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["quota"], "dashboard live streams of a tenant",
        "{body}"
    );
    // ...and its API clients can still follow its runs.
    let resp = http
        .get(format!("{base}/v1/runs/{later}/events"))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    drop(open);
}
