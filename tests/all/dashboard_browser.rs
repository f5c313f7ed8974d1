//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by its
//! `chromedriver` over WebDriver) against a real `stepwise serve` on loopback: sign in, find a
//! run and open it, see its steps and timeline, a hostile log line shown as text with no
//! script run, another tenant's run not found, retry a dead-lettered run from the dead-letter
//! page (confirming the dialog) and see it complete, cancel a run, a post without the CSRF
//! token refused, a sleeping run's page and the runs page updated live by their streams
//! without a reload, screenshots at desktop and phone width, sign out. A second test covers
//! the rest by keyboard and in the browser: the skip link and focus rings, the events,
//! schedules and egress pages, the time filter, a queue's throughput chart, and a run page
//! catching up after its network dropped (a proxy in front of the server is cut).
//!
//! The test needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs them) and
//! fails, naming them, without. With `STEPWISE_SCREENSHOTS=docs/screenshots` it writes the
//! screenshots there for README.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use stepwise_tests::guests;

use crate::serve_util::Server;

const HOSTILE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

/// A headless Chromium session; the driver is killed when it drops.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills the driver's whole process group: the driver and the Chromium it started, which
    /// a test that failed before closing its session would otherwise leave running.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file())
}

async fn browser() -> Browser {
    browser_with(&[]).await
}

/// A headless Chromium started with `extra` switches beside the usual ones.
async fn browser_with(extra: &[&str]) -> Browser {
    let chromium = on_path("chromium").expect(
        "the dashboard's browser tests need `chromium` on the PATH (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
    );
    let driver_bin = on_path("chromedriver").expect(
        "the dashboard's browser tests need `chromedriver` on the PATH (Debian: chromium-driver)",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // In a process group of its own, which Chromium joins, so both can be killed together.
    let driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(str::to_owned)
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Browser {
        client: Some(client),
        driver,
        _profile: profile,
    }
}

impl Browser {
    fn c(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    async fn text(&self, css: &str) -> String {
        self.c()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Waits until the element at `css` reads `expected` (the page may still be loading).
    async fn wait_text(&self, css: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(e) = self.c().find(Locator::Css(css)).await
                && let Ok(text) = e.text().await
            {
                if text == expected {
                    return;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} reads {last:?}, not {expected:?}");
    }

    /// Waits until the element at `css` contains `needle`.
    async fn wait_contains(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(e) = self.c().find(Locator::Css(css)).await
                && let Ok(text) = e.text().await
            {
                if text.contains(needle) {
                    return;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} never contained {needle:?}: {last:?}");
    }

    /// Waits until the page's live stream is open.
    async fn wait_following(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let state = self
                .c()
                .execute(
                    "return document.querySelector('main').dataset.following || ''",
                    vec![],
                )
                .await
                .unwrap();
            if state == json!("open") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = self
            .c()
            .execute(
                "const m = document.querySelector('main');
                 const note = document.querySelector('.live-stopped');
                 return JSON.stringify({live: m.dataset.live, following: m.dataset.following,
                                        stopped: note && note.textContent})",
                vec![],
            )
            .await
            .unwrap();
        panic!("the page's live stream never opened: {state}");
    }

    /// Marks the document, to tell later whether the page was reloaded (the mark is gone)
    /// or redrawn in place by its script.
    async fn mark(&self) {
        self.c()
            .execute("document.documentElement.dataset.mark = 'kept'", vec![])
            .await
            .unwrap();
    }

    /// Whether the page kept its mark and its script redrew it at least once.
    async fn redrawn_in_place(&self) -> bool {
        self.c()
            .execute(
                "return document.documentElement.dataset.mark === 'kept'
                    && Number(document.querySelector('main').dataset.redrawn || 0) > 0",
                vec![],
            )
            .await
            .unwrap()
            == Value::Bool(true)
    }

    /// Signs in with `token` from the sign-in page (already open), and waits for the runs.
    async fn sign_in(&self, token: &str) {
        self.c()
            .find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        self.click("form.signin button").await;
        self.wait_text("h1", "Runs").await;
    }

    async fn click(&self, css: &str) {
        self.c()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Takes a screenshot named `name`, checks it is a PNG, and keeps it where
    /// `STEPWISE_SCREENSHOTS` says.
    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        if let Some(dir) = std::env::var_os("STEPWISE_SCREENSHOTS") {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let server = Server::start();
    let api = server.api();
    let base = server.url().to_owned();
    let acme = api.admin_create_tenant("acme").await;
    let other = api.admin_create_tenant("other").await;
    api.deploy(&acme, guests::TESTBED).await;
    api.deploy(&other, guests::TESTBED).await;
    let flaky = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "flaky", "payload": {"steps": ["fetch", "charge"], "fail": {"charge": 5}}}),
        )
        .await;
    let hostile = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "say", "payload": {"message": HOSTILE}}),
        )
        .await;
    let later = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "many-steps", "payload": {"n": 2}, "delay": "1h"}),
        )
        .await;
    let theirs = api
        .enqueue_new(
            &other,
            "theirs",
            json!({"job": "echo", "payload": {"count": 1}}),
        )
        .await;
    for (token, id) in [(&acme, &flaky), (&acme, &hostile), (&other, &theirs)] {
        api.wait_final(token, id, Duration::from_secs(60)).await;
    }

    let mut b = browser().await;
    // Sign in.
    b.c().goto(&format!("{base}/")).await.unwrap();
    b.wait_text("h1", "Sign in").await;
    b.sign_in(&acme).await;
    b.screenshot("runs-desktop").await;

    // Find the run in the list and open it: its steps and timeline.
    let listed = b.text("table.runs").await;
    assert!(
        listed.contains(&flaky) && !listed.contains(&theirs),
        "{listed}"
    );
    b.click(&format!("a[href='/ui/runs/{flaky}']")).await;
    b.wait_text("h1", &flaky).await;
    let steps = b.text("table.steps").await;
    assert!(
        steps.contains("fetch") && steps.contains("charge"),
        "{steps}"
    );
    let bars = b
        .c()
        .find_all(Locator::Css("figure.timeline svg rect.bar"))
        .await
        .unwrap();
    assert!(
        bars.len() >= 5,
        "3 attempts and 2 steps drawn, got {}",
        bars.len()
    );
    let marks = b
        .c()
        .find_all(Locator::Css("figure.timeline svg rect.mark.failure"))
        .await
        .unwrap();
    assert_eq!(marks.len(), 3, "each failed attempt of `charge` is marked");
    b.screenshot("run-desktop").await;

    // The hostile run: its text is shown, and nothing it carried ran.
    b.c()
        .goto(&format!("{base}/ui/runs/{hostile}"))
        .await
        .unwrap();
    let log = b.text("table.logs td.message").await;
    assert_eq!(log, HOSTILE);
    let pwned = b
        .c()
        .execute("return window.__pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, Value::Bool(true), "a handler's text ran as script");

    // Another tenant's run is not found.
    b.c()
        .goto(&format!("{base}/ui/runs/{theirs}"))
        .await
        .unwrap();
    b.wait_text("h1", "Not found").await;

    // A post without the CSRF token is refused, and nothing happens.
    let status = b
        .c()
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', body: new URLSearchParams({csrf: ''})})
               .then(r => done(r.status));",
            vec![json!(format!("/ui/runs/{later}/cancel"))],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert_eq!(api.run(&acme, &later).await["status"], "queued");

    // Retry the dead-lettered run from its queue's dead letters, confirming the dialog.
    b.c()
        .goto(&format!("{base}/ui/queues/ui/dead-letters"))
        .await
        .unwrap();
    b.click(&format!("form[action='/ui/runs/{flaky}/retry'] button"))
        .await;
    b.c().accept_alert().await.unwrap();
    b.wait_text("h1", &flaky).await;
    let done = api.wait_final(&acme, &flaky, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    b.c().refresh().await.unwrap();
    b.wait_text("div.title .badge", "completed").await;

    // Cancel the delayed run from its page.
    b.c()
        .goto(&format!("{base}/ui/runs/{later}"))
        .await
        .unwrap();
    b.click(&format!("form[action='/ui/runs/{later}/cancel'] button"))
        .await;
    b.c().accept_alert().await.unwrap();
    b.wait_text("div.title .badge", "cancelled").await;

    // Live: a sleeping run's page turns completed while it is watched, without a reload.
    let sleeper = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "sleeper", "payload": {"ms": 4000}}),
        )
        .await;
    b.c()
        .goto(&format!("{base}/ui/runs/{sleeper}"))
        .await
        .unwrap();
    b.wait_text("h1", &sleeper).await;
    let following = b
        .c()
        .execute(
            "return document.querySelector('main').dataset.live || ''",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        following
            .as_str()
            .is_some_and(|u| u.starts_with("/ui/runs/")),
        "the page of a sleeping run follows it: {following}"
    );
    b.mark().await;
    b.wait_text("div.title .badge", "completed").await;
    assert!(
        b.redrawn_in_place().await,
        "the run page was not redrawn by its stream"
    );
    let steps = b.text("table.steps").await;
    assert!(steps.contains("after"), "{steps}");
    // And the runs page shows a new run without a reload.
    b.c().goto(&format!("{base}/ui/runs")).await.unwrap();
    b.wait_text("h1", "Runs").await;
    b.mark().await;
    b.wait_following().await;
    let fresh = api
        .enqueue_new(&acme, "ui", json!({"job": "echo", "payload": {"count": 2}}))
        .await;
    b.wait_contains("table.runs", &fresh).await;
    assert!(
        b.redrawn_in_place().await,
        "the runs page was not redrawn by its stream"
    );

    // Phone width.
    b.c().set_window_size(390, 844).await.unwrap();
    b.c().goto(&format!("{base}/ui/runs")).await.unwrap();
    b.wait_text("h1", "Runs").await;
    b.screenshot("runs-phone").await;
    b.c()
        .goto(&format!("{base}/ui/runs/{flaky}"))
        .await
        .unwrap();
    b.screenshot("run-phone").await;
    b.c().set_window_size(1280, 900).await.unwrap();

    // Sign out: back to sign-in, and the pages need it again.
    b.click("header form button").await;
    b.wait_text("h1", "Sign in").await;
    b.c().goto(&format!("{base}/ui/runs")).await.unwrap();
    b.wait_text("h1", "Sign in").await;
    if let Some(client) = b.client.take() {
        client.close().await.unwrap();
    }
}

/// A TCP proxy on loopback in front of the server, which the test can take down (every open
/// connection cut, new ones closed at once) and bring back: a dropped network, without the
/// server (and its in-memory sessions) going away.
struct Proxy {
    url: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// server")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (down, open) = (down.clone(), open.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        // Browsers open sockets ahead of need: the server is dialled only
                        // once a request arrives, or its idle timeout would close the
                        // upstream of a socket the browser still thinks fresh.
                        let mut first = [0u8; 1];
                        if !matches!(client.peek(&mut first).await, Ok(n) if n > 0) {
                            return;
                        }
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            // Either side ending ends both, as a dropped network would.
                            let (mut from_client, mut to_client) = client.split();
                            let (mut from_server, mut to_server) = server.split();
                            tokio::select! {
                                _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                                _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                            }
                        }
                    });
                    // Checked again under the lock `down` drains with, so no connection
                    // accepted while the network goes down survives it.
                    let mut open = open.lock().unwrap();
                    if down.load(Ordering::SeqCst) {
                        task.abort();
                    } else {
                        open.push(task.abort_handle());
                    }
                }
            })
        };
        Self {
            url,
            down,
            open,
            accept,
        }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::up`].
    fn down(&self) {
        let mut open = self.open.lock().unwrap();
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in open.drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
    }
}

impl Browser {
    /// The element focused now: its tag and text, or its `name` attribute for a field.
    async fn focused(&self) -> String {
        self.c()
            .execute(
                "const e = document.activeElement;
                 return e ? (e.tagName + ':' + (e.getAttribute('name') || e.textContent.trim())) : ''",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Presses `key` on whatever has the focus.
    async fn press(&self, key: fantoccini::key::Key) {
        self.c()
            .active_element()
            .await
            .unwrap()
            .send_keys(&key)
            .await
            .unwrap();
    }

    /// Presses Tab until the focus is on `target` (as [`Browser::focused`] names it), at most
    /// `limit` times; returns the names focused on the way.
    async fn tab_to(&self, target: &str, limit: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..limit {
            self.press(fantoccini::key::Key::Tab).await;
            let now = self.focused().await;
            seen.push(now.clone());
            if now == target {
                return seen;
            }
        }
        panic!("Tab never reached {target}: {seen:?}");
    }
}

/// The pages beyond runs, by keyboard and in the browser: sign in and move with Tab and
/// Enter only (a visible focus ring, a skip link, every navigation link reachable); the
/// events page with the run an event resumed; the schedules page pausing a schedule; the
/// egress page with rules and secret names but no values; the runs page's time filter; a
/// queue's throughput chart; and a run page whose live stream is cut by the network catching
/// up by itself once the network is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_other_pages_keyboard_and_reconnects_work_in_a_real_browser() {
    use fantoccini::key::Key;

    let server = Server::start_with_config(&format!("secrets_key = \"{}\"\n", "ab".repeat(32)));
    let api = server.api();
    let proxy = Proxy::start(server.url()).await;
    let base = proxy.url.clone();
    let shop = api.admin_create_tenant("shop").await;
    api.deploy(&shop, guests::FLOWS).await;
    api.deploy(&shop, guests::TESTBED).await;
    let waiting = api
        .waiting_for_event(&shop, "orders", "order.paid", "o-9")
        .await;
    let (status, _) = api
        .post(
            &shop,
            "/v1/events",
            Some(json!({"name": "order.paid", "correlation_key": "o-9", "id": "pay-1"})),
        )
        .await;
    assert_eq!(status, 201);
    api.wait_final(&shop, &waiting, Duration::from_secs(60))
        .await;
    let (status, body) = api
        .post(
            &shop,
            "/v1/schedules",
            Some(json!({"name": "nightly", "cron": "30 2 * * *", "job": "echo", "queue": "cron"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .put(
            &shop,
            "/v1/egress",
            json!({"rules": [{"pattern": "api.stripe.com", "methods": ["POST"]}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let secret_value = "sk_live_never_shown_1234";
    let (status, body) = api
        .put(
            &shop,
            "/v1/secrets/STRIPE_KEY",
            json!({"value": secret_value, "hosts": [{"pattern": "api.stripe.com"}]}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");

    let mut b = browser().await;
    // Sign in with the keyboard only: the token field has the focus, Enter submits.
    b.c().goto(&format!("{base}/ui/sign-in")).await.unwrap();
    b.wait_text("h1", "Sign in").await;
    assert_eq!(b.focused().await, "INPUT:token");
    b.c()
        .active_element()
        .await
        .unwrap()
        .send_keys(&format!("{shop}{}", &*Key::Enter))
        .await
        .unwrap();
    b.wait_text("h1", "Runs").await;
    // The first Tab reaches the skip link, which moves the focus to the page's content.
    b.press(Key::Tab).await;
    assert_eq!(b.focused().await, "A:Skip to content");
    b.press(Key::Enter).await;
    assert_eq!(
        b.c()
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap(),
        json!("main")
    );
    // From the top, Tab reaches every navigation link, each drawn with a focus ring.
    b.c().goto(&format!("{base}/ui/runs")).await.unwrap();
    b.wait_text("h1", "Runs").await;
    let path = b.tab_to("A:Events", 12).await;
    for link in ["A:Stepwise", "A:Runs", "A:Queues", "A:Modules"] {
        assert!(
            path.contains(&link.to_owned()),
            "{link} not reached: {path:?}"
        );
    }
    let ring = b
        .c()
        .execute(
            "return getComputedStyle(document.activeElement).outlineStyle",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(ring, json!("none"), "the focused link shows no focus ring");
    b.press(Key::Enter).await;
    b.wait_text("h1", "Events").await;

    // The events page: the event and the run it resumed, linked.
    let events = b.text("table.events").await;
    assert!(
        events.contains("order.paid") && events.contains("pay-1"),
        "{events}"
    );
    b.click(&format!("table.events a[href='/ui/runs/{waiting}']"))
        .await;
    b.wait_text("h1", &waiting).await;

    // Schedules: paused from its page (confirmed), then shown paused with a resume button.
    b.c().goto(&format!("{base}/ui/schedules")).await.unwrap();
    b.wait_text("h1", "Schedules").await;
    assert!(b.text("table.schedules").await.contains("30 2 * * *"));
    b.click("form[action='/ui/schedules/nightly/pause'] button")
        .await;
    b.c().accept_alert().await.unwrap();
    b.wait_contains("table.schedules", "Resume").await;
    assert_eq!(
        api.get(&shop, "/v1/schedules/nightly").await.1["paused"],
        true
    );

    // Egress and secrets: the rule and the secret's name and hosts, never its value.
    b.c().goto(&format!("{base}/ui/egress")).await.unwrap();
    b.wait_text("h1", "Egress and secrets").await;
    assert!(b.text("table.rules").await.contains("api.stripe.com"));
    assert!(b.text("table.secrets").await.contains("STRIPE_KEY"));
    let source = b.c().source().await.unwrap();
    assert!(
        !source.contains(secret_value),
        "a secret's value reached the page"
    );

    // The runs page's time filter, typed into its field: nothing was created in the future.
    b.c().goto(&format!("{base}/ui/runs")).await.unwrap();
    b.wait_text("h1", "Runs").await;
    assert!(b.text("table.runs").await.contains(&waiting));
    b.c()
        .execute(
            "document.querySelector('input[name=from]').value = '2999-01-01T00:00'",
            vec![],
        )
        .await
        .unwrap();
    b.click("form.filters button").await;
    b.wait_text("p.empty", "No runs match.").await;
    assert!(
        b.c()
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("from=2999-01-01T00%3A00")
    );
    b.click("p.presets a").await;
    b.wait_contains("table.runs", &waiting).await;

    // The queue's last hour, drawn.
    b.c().goto(&format!("{base}/ui/queues")).await.unwrap();
    b.wait_text("h1", "Queues").await;
    let bars = b
        .c()
        .find_all(Locator::Css("figure.throughput rect.ok"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "no throughput bar for the finished run");
    b.screenshot("queues-desktop").await;

    // A dropped network: the run page's stream is cut, the run it shows is woken and
    // finishes meanwhile, and the page catches up by itself once the network is back.
    let waiter = api.waiting_for_event(&shop, "live", "go", "live").await;
    b.c()
        .goto(&format!("{base}/ui/runs/{waiter}"))
        .await
        .unwrap();
    b.wait_text("h1", &waiter).await;
    b.wait_following().await;
    b.mark().await;
    proxy.down();
    let (status, _) = api
        .post(
            &shop,
            "/v1/events",
            Some(json!({"name": "go", "correlation_key": "live"})),
        )
        .await;
    assert_eq!(status, 201);
    let done = api
        .wait_final(&shop, &waiter, Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "completed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.text("div.title .badge").await,
        "waiting",
        "the page learned of the end with the network down"
    );
    proxy.up();
    b.wait_text("div.title .badge", "completed").await;
    assert!(
        b.redrawn_in_place().await,
        "the page was reloaded instead of catching up in place"
    );
    // The run is over: its page no longer follows a stream.
    let following = b
        .c()
        .execute(
            "return document.querySelector('main').dataset.following",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(following, json!("closed"));
    if let Some(client) = b.client.take() {
        client.close().await.unwrap();
    }
}

/// The WCAG contrast ratio of the text of the first element at each selector against the
/// page's background, as the browser computes both.
const CONTRASTS: &str = "
    const rgb = (c) => c.match(/[0-9.]+/g).slice(0, 3).map(Number);
    const lum = (c) => {
        const [r, g, b] = rgb(c).map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const bg = getComputedStyle(document.body).backgroundColor;
    const out = {background: bg};
    for (const sel of arguments[0]) {
        const e = document.querySelector(sel);
        if (!e) { out[sel] = null; continue; }
        const [a, b] = [lum(getComputedStyle(e).color), lum(bg)];
        out[sel] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    }
    return out;";

/// The pages are readable in the light and the dark scheme (the browser told to prefer
/// each): body text, muted headers, links and status badges all keep a contrast of at least
/// 4.5:1 (WCAG AA) against the background, and the dark scheme really is dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_readable_in_the_light_and_the_dark_scheme() {
    let server = Server::start();
    let api = server.api();
    let base = server.url().to_owned();
    let acme = api.admin_create_tenant("acme").await;
    api.deploy(&acme, guests::TESTBED).await;
    let failed = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "say", "payload": {"message": "no"}}),
        )
        .await;
    let done = api
        .enqueue_new(
            &acme,
            "ui",
            json!({"job": "many-steps", "payload": {"n": 2}}),
        )
        .await;
    for id in [&failed, &done] {
        api.wait_final(&acme, id, Duration::from_secs(60)).await;
    }
    for (scheme, switches) in [("light", &[][..]), ("dark", &["--force-dark-mode"][..])] {
        let mut b = browser_with(switches).await;
        b.c().goto(&format!("{base}/ui/sign-in")).await.unwrap();
        b.sign_in(&acme).await;
        for (page, selectors) in [
            (
                "/ui/runs".to_owned(),
                &[
                    "body",
                    "th",
                    "table.runs a",
                    ".badge.failed",
                    ".badge.completed",
                ][..],
            ),
            (
                format!("/ui/runs/{failed}"),
                &["h1", "dl.facts dt", ".error-box h2", "pre"][..],
            ),
        ] {
            b.c().goto(&format!("{base}{page}")).await.unwrap();
            let ratios = b
                .c()
                .execute(CONTRASTS, vec![json!(selectors)])
                .await
                .unwrap();
            for sel in selectors {
                let ratio = ratios[*sel]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{scheme} {page}: no {sel} to measure: {ratios}"));
                assert!(
                    ratio >= 4.5,
                    "{scheme} {page}: {sel} has a contrast of {ratio:.2} (< 4.5): {ratios}"
                );
            }
            let background = ratios["background"].as_str().unwrap().to_owned();
            let dark = b
                .c()
                .execute(
                    "return matchMedia('(prefers-color-scheme: dark)').matches",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(dark, json!(scheme == "dark"), "{scheme}: {background}");
            let channels: Vec<u32> = background
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().parse().unwrap())
                .collect();
            let bright = channels.iter().sum::<u32>() > 3 * 128;
            assert_eq!(
                bright,
                scheme == "light",
                "{scheme} background {background}"
            );
        }
        if scheme == "dark" {
            b.c().goto(&format!("{base}/ui/runs/{done}")).await.unwrap();
            b.wait_text("h1", &done).await;
            b.screenshot("run-dark").await;
        }
        if let Some(client) = b.client.take() {
            client.close().await.unwrap();
        }
    }
}
