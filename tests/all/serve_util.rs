//! Harness for end-to-end tests of `stepwise serve`: a real server process on a loopback port
//! picked by the OS, over a temporary data dir, that can be killed with SIGKILL, stopped with
//! SIGTERM and restarted on the same data dir; and a small HTTP client for its JSON API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_stepwise-under-test");

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "sw_test_admin_token";
/// The metrics token every test server is started with.
pub const METRICS_TOKEN: &str = "sw_test_metrics_token";

/// How long a server may take to print its listening line (it may compile guests first).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server logs once it accepts connections.
const LISTENING: &str = "stepwise listening on http://";

/// A running `stepwise serve` process. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    url: String,
    /// Every stderr line of every process started on this data dir, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    /// The config file every process on this data dir is started with, if any.
    config: Option<std::path::PathBuf>,
    /// The file every process on this data dir takes its time from, if it runs on a test clock.
    clock: Option<std::path::PathBuf>,
}

impl Server {
    /// Starts a server on a fresh, empty data dir.
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts a server on a fresh, empty data dir with `toml` as its config file (empty: none).
    pub fn start_with_config(toml: &str) -> Self {
        Self::start_on(toml, None)
    }

    /// Starts a server whose clock is a file the test sets ([`Server::set_time`]), starting
    /// at `start` (ms since the Unix epoch), with `toml` as its config file (empty: none).
    pub fn start_with_clock(toml: &str, start: u64) -> Self {
        Self::start_on(toml, Some(start))
    }

    fn start_on(toml: &str, clock_start: Option<u64>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = clock_start.map(|at| {
            let path = dir.path().join("clock");
            stepwise_tests::file_clock::FileClock::set(&path, at).expect("write the clock file");
            path
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = (!toml.is_empty()).then(|| {
            let path = dir.path().join("stepwise.toml");
            std::fs::write(&path, toml).expect("write the config file");
            path
        });
        let (child, url) = spawn(dir.path(), config.as_deref(), clock.as_deref(), &log);
        Self {
            child: Some(child),
            url,
            log,
            dir,
            config,
            clock,
        }
    }

    /// Sets the server's clock (one started with [`Server::start_with_clock`]) to `at`.
    pub fn set_time(&self, at: u64) {
        let path = self
            .clock
            .as_deref()
            .expect("the server runs on a test clock");
        stepwise_tests::file_clock::FileClock::set(path, at).expect("write the clock file");
    }

    /// The server process's resident memory, in bytes (Linux: from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kb * 1024
    }

    /// The server's base URL, `http://127.0.0.1:<port>` (it changes on every restart).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for the server as it is now.
    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// Everything the server processes wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// The last `n` lines the server processes wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().expect("log");
        log[log.len().saturating_sub(n)..].join("\n")
    }

    fn note(&self, line: &str) {
        self.log
            .lock()
            .expect("log")
            .push(format!("--- {line} ---"));
    }

    /// Runs the `stepwise` CLI against this server as `token`: its exit code, stdout and
    /// stderr.
    pub fn cli(&self, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("STEPWISE_URL", self.url())
            .env("STEPWISE_TOKEN", token)
            .env_remove("STEPWISE_ADMIN_TOKEN")
            .output()
            .expect("run the CLI");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Kills the process with SIGKILL and reaps it. Nothing is flushed or finished.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the server");
            child.wait().expect("reap the server");
            self.note("killed with SIGKILL");
        }
    }

    /// Starts a new process on the same data dir (killing the current one first, if any).
    pub fn restart(&mut self) {
        self.kill9();
        self.note("restart");
        let (child, url) = spawn(
            self.dir.path(),
            self.config.as_deref(),
            self.clock.as_deref(),
            &self.log,
        );
        self.child = Some(child);
        self.url = url;
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its status.
    pub fn stop_gracefully(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                self.note(&format!("exited after SIGTERM: {status}"));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The base URL in a `stepwise listening on http://...` line.
fn listening_url(line: &str) -> Option<String> {
    let at = line.find(LISTENING)?;
    let from = at + LISTENING.len() - "http://".len();
    let url = line[from..].split_whitespace().next()?;
    Some(url.to_owned())
}

/// Starts `stepwise serve` on `data` and waits for its listening line. A thread keeps reading
/// the process's stderr into `log` until the process ends, so the pipe never fills up.
fn spawn(
    data: &Path,
    config: Option<&Path>,
    clock: Option<&Path>,
    log: &Arc<Mutex<Vec<String>>>,
) -> (Child, String) {
    let mut command = Command::new(BIN);
    if let Some(clock) = clock {
        command.env(stepwise_tests::file_clock::CLOCK_FILE_ENV, clock);
    }
    if let Some(config) = config {
        command.arg("serve").arg("--config").arg(config);
    } else {
        command.arg("serve");
    }
    let mut child = command
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env("STEPWISE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STEPWISE_METRICS_TOKEN", METRICS_TOKEN)
        .env("STEPWISE_LOG", "info")
        .env("STEPWISE_CACHE_DIR", crate::util::compile_cache())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stepwise serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let url = listening_url(&line);
            lines.lock().expect("log").push(line);
            if let Some(url) = url
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url);
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(url) => (child, url),
        Err(e) => {
            let _ = child.kill();
            let status = child.wait();
            // Give the reader a moment to collect the last lines.
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the server did not report its address ({e}; process: {status:?}); log:\n{}",
                log.lock().expect("log").join("\n")
            );
        }
    }
}

/// A request body.
pub enum Body {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Raw bytes with a content type.
    Raw(Vec<u8>, &'static str),
}

/// A JSON client for one server. Answers are (status, body); a body that is not JSON comes
/// back as a JSON string, an empty one as `null`.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for the server at `base`.
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        Self {
            http,
            base: base.to_owned(),
        }
    }

    /// Sends a request; transport failures (a killed server) are errors.
    pub async fn try_request(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Body,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(bytes, content_type) => req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, body))
    }

    /// Sends a request; panics if the server cannot be reached.
    pub async fn request(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Body,
    ) -> (u16, Value) {
        let what = format!("{method} {path}");
        self.try_request(method, token, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `GET path` with a tenant's token.
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.request(Method::GET, Some(token), path, Body::Empty)
            .await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(&self, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map_or(Body::Empty, Body::Json);
        self.request(Method::POST, Some(token), path, body).await
    }

    /// `POST path` with a JSON body and a tenant's token: the whole response, headers too.
    pub async fn post_response(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, Some(token), path, Body::Json(body))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        self.request(Method::DELETE, Some(token), path, Body::Empty)
            .await
    }

    /// `GET path` with the metrics token, as text (for `/metrics`).
    pub async fn text(&self, path: &str) -> (u16, String) {
        self.text_as(Some(METRICS_TOKEN), path).await
    }

    /// `GET path` with `token` (or none), as text.
    pub async fn text_as(&self, token: Option<&str>, path: &str) -> (u16, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("text body"))
    }

    /// Creates a tenant with the admin token; returns its token.
    pub async fn admin_create_tenant(&self, name: &str) -> String {
        let (status, body) = self
            .request(
                Method::POST,
                Some(ADMIN_TOKEN),
                "/v1/tenants",
                Body::Json(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 201, "create tenant {name}: {body}");
        assert_eq!(body["tenant"], name, "{body}");
        let token = body["token"].as_str().expect("a token").to_owned();
        assert!(token.starts_with("sw_"), "{token}");
        token
    }

    /// `POST /v1/modules` with the component at `path`, whatever the answer.
    pub async fn upload(&self, token: &str, path: &str) -> (u16, Value) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        self.request(
            Method::POST,
            Some(token),
            "/v1/modules",
            Body::Raw(bytes, "application/wasm"),
        )
        .await
    }

    /// Uploads the component at `path`, expecting 201; returns the module.
    pub async fn deploy(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.upload(token, path).await;
        assert_eq!(status, 201, "deploy {path}: {body}");
        body
    }

    /// `POST /v1/queues/{queue}/jobs`; transport failures are errors.
    pub async fn try_enqueue(
        &self,
        token: &str,
        queue: &str,
        body: Value,
    ) -> reqwest::Result<(u16, Value)> {
        self.try_request(
            Method::POST,
            Some(token),
            &format!("/v1/queues/{queue}/jobs"),
            Body::Json(body),
        )
        .await
    }

    /// `POST /v1/queues/{queue}/jobs`.
    pub async fn enqueue(&self, token: &str, queue: &str, body: Value) -> (u16, Value) {
        self.try_enqueue(token, queue, body)
            .await
            .unwrap_or_else(|e| panic!("enqueue on {queue}: {e}"))
    }

    /// Enqueues and expects a new run (201); returns its id.
    pub async fn enqueue_new(&self, token: &str, queue: &str, body: Value) -> String {
        let (status, resp) = self.enqueue(token, queue, body).await;
        assert_eq!(status, 201, "{resp}");
        assert_eq!(resp["deduplicated"], false, "{resp}");
        run_id(&resp["run"])
    }

    /// `GET /v1/runs/{id}`, expecting it to exist.
    pub async fn run(&self, token: &str, id: &str) -> Value {
        let (status, view) = self.get(token, &format!("/v1/runs/{id}")).await;
        assert_eq!(status, 200, "GET run {id}: {view}");
        view
    }

    /// Enqueues on `queue` a run of the flows guest's `await-event` job (deployed by
    /// `token`'s tenant), waiting up to 10 minutes for `event` with correlation key `key`,
    /// and waits until it waits; returns its id.
    pub async fn waiting_for_event(
        &self,
        token: &str,
        queue: &str,
        event: &str,
        key: &str,
    ) -> String {
        let id = self
            .enqueue_new(
                token,
                queue,
                serde_json::json!({"job": "await-event",
                    "payload": {"event": event, "key": key, "timeout_ms": 600_000}}),
            )
            .await;
        self.until_status(token, &id, "waiting").await;
        id
    }

    /// Waits (up to a minute) until run `id` is `status`; returns its view.
    pub async fn until_status(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.run(token, id).await;
            if run["status"] == status {
                return run;
            }
            assert!(Instant::now() < deadline, "never {status}: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET /v1/runs/{id}` every 50 ms until the run is `completed` or `failed`.
    pub async fn wait_final(&self, token: &str, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.run(token, id).await;
            if is_final(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} not final within {timeout:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether a run (or run view) is `completed` or `failed`.
pub fn is_final(run: &Value) -> bool {
    matches!(run["status"].as_str(), Some("completed" | "failed"))
}

/// Every invocation of the handler has its own number, in order from 1, and `attempts`
/// counts them all, however many were cut short by a kill (so no attempt ran twice, on one
/// host or on two).
pub fn assert_attempts_numbered_once(view: &Value) {
    let started: Vec<u64> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "attempt_started")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=started.len() as u64).collect();
    assert_eq!(started, expected, "{view:#}");
    assert_eq!(view["attempts"], started.len(), "{view:#}");
}

/// A run's id.
pub fn run_id(run: &Value) -> String {
    run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run id in {run}"))
        .to_owned()
}

/// Asserts an answer is the error `status` / `code`, shaped `{"error": {"code", "message"}}`
/// (with no other top-level field); returns the `error` object.
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) -> Value {
    let error = assert_error_shape(answer, status);
    assert_eq!(error["code"], code, "{}", answer.1);
    error
}

/// Asserts an answer is an error with `status` and the shape `{"error": {"code", "message"}}`
/// (with no other top-level field), whatever its code; returns the `error` object.
pub fn assert_error_shape(answer: &(u16, Value), status: u16) -> Value {
    let (got, body) = answer;
    assert_eq!(*got, status, "expected {status}, got {got}: {body}");
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(top.len(), 1, "only `error` at the top level: {body}");
    let error = &body["error"];
    let code = error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error.code is not a string: {body}"));
    assert!(!code.is_empty(), "empty error code: {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message is not a string: {body}"));
    assert!(!message.is_empty(), "empty error message: {body}");
    error.clone()
}

/// How many of a run view's log lines are `exec <step>` lines (the testbed logs one per real
/// execution of a step).
pub fn exec_count(view: &Value, step: &str) -> usize {
    let exact = format!("exec {step}");
    let prefix = format!("exec {step} ");
    view["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs in {view}"))
        .iter()
        .filter_map(|l| l["message"].as_str())
        .filter(|m| *m == exact || m.starts_with(&prefix))
        .count()
}

/// A step's recorded attempts in a run view.
pub fn step_attempts(view: &Value, name: &str) -> u64 {
    view["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {view}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {view:#}"))["attempts"]
        .as_u64()
        .expect("attempts is a number")
}

/// The kinds of a run view's timeline entries.
pub fn timeline_kinds(view: &Value) -> Vec<String> {
    view["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline in {view}"))
        .iter()
        .map(|t| t["kind"].as_str().expect("kind").to_owned())
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds, e.g. `2026-01-01T00:00:00.000Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339_ms(crate::util::START), "2026-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
}

#[test]
fn listening_line_is_parsed() {
    let line = "2026-01-01T00:00:00.000000Z  INFO stepwise listening on http://127.0.0.1:41234";
    assert_eq!(
        listening_url(line).as_deref(),
        Some("http://127.0.0.1:41234")
    );
    assert_eq!(listening_url("INFO store opened"), None);
}

impl Server {
    /// A server whose guests may reach loopback and which seals secrets with a fresh key.
    pub fn start_for_http() -> Self {
        Self::start_with_config(&format!(
            "secrets_key = \"{}\"\n\n[egress]\nallow_private = true\n",
            stepwise::secrets::SecretKeys::generate()
        ))
    }
}

impl Api {
    /// Lets `token`'s tenant reach the provider at `base` and stores the payments example's
    /// `PAYMENTS_KEY`, bound to it.
    pub async fn allow_payments(&self, token: &str, base: &str) {
        let rule = json!({ "pattern": base });
        let (status, answer) = self
            .put(token, "/v1/egress", json!({ "rules": [rule.clone()] }))
            .await;
        assert_eq!(status, 200, "{answer}");
        let secret = json!({ "value": crate::util::PAYMENTS_KEY, "hosts": [rule] });
        let (status, answer) = self.put(token, "/v1/secrets/PAYMENTS_KEY", secret).await;
        assert_eq!(status, 200, "{answer}");
    }
}
