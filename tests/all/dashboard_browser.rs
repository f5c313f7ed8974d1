//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by its
//! `chromedriver` over WebDriver) against a real `stepwise serve` on loopback: sign in, find a
//! run and open it, see its steps and timeline, a hostile log line shown as text with no
//! script run, another tenant's run not found, retry a dead-lettered run from the dead-letter
//! page (confirming the dialog) and see it complete, cancel a run, a post without the CSRF
//! token refused, a sleeping run's page and the runs page updated live by their streams
//! without a reload, screenshots at desktop and phone width, sign out.
//!
//! The test needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs them) and
//! fails, naming them, without. With `STEPWISE_SCREENSHOTS=docs/screenshots` it writes the
//! screenshots there for README.

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
    fn drop(&mut self) {
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
    let driver = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
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
        panic!("the page's live stream never opened");
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
    b.c()
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&acme)
        .await
        .unwrap();
    b.click("form.signin button").await;
    b.wait_text("h1", "Runs").await;
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
