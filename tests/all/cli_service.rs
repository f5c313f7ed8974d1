//! The CLI as a client of a real `stepwise serve` process: every command end to end, `--json`
//! printing exactly one JSON document, human-readable tables otherwise, and errors exiting 2
//! with the server's error code.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stepwise_tests::guests;

use crate::serve_util::{ADMIN_TOKEN, Server};

const BIN: &str = env!("CARGO_BIN_EXE_stepwise-under-test");

struct Cli<'a> {
    server: &'a Server,
    token: String,
}

impl Cli<'_> {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("STEPWISE_URL", self.server.url())
            .env("STEPWISE_TOKEN", &self.token)
            .env_remove("STEPWISE_ADMIN_TOKEN")
            .output()
            .expect("run the CLI")
    }

    /// Runs a command with `--json`, expects success and exactly one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cmd(&all);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // Exactly one document: parsing the whole output as one value must succeed.
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn wait_final(cli: &Cli, id: &str) -> Value {
    for _ in 0..600 {
        let view = cli.json(&["runs", "show", id]);
        if view["status"] == "completed" || view["status"] == "failed" {
            return view;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("run {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_service_end_to_end() {
    let server = Server::start_for_http();
    let admin = Cli {
        server: &server,
        token: ADMIN_TOKEN.into(),
    };
    let created = admin.json(&["tenant", "create", "acme"]);
    assert_eq!(created["tenant"], "acme");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sw_"));
    let cli = Cli {
        server: &server,
        token,
    };

    let module = cli.json(&["deploy", guests::PAYMENTS]);
    let base = crate::util::fake_provider().await;
    server.api().allow_payments(&cli.token, &base).await;
    crate::util::provider_control(&base, serde_json::json!({ "fail_accounts_next": 2 })).await;
    assert_eq!(module["jobs"][0]["name"], "provision-after-payment");
    let listing = cli.text(&["modules"]);
    assert!(
        listing.contains(&module["hash"].as_str().unwrap()[..12]),
        "{listing}"
    );

    let payload = format!(r#"{{"payment_id":"pay_123","provider_url":"{base}"}}"#);
    let enqueue = [
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        &payload,
        "--idempotency-key",
        "pay_123",
        "--backoff",
        "20ms",
    ];
    let first = cli.json(&enqueue);
    assert_eq!(first["deduplicated"], false);
    // `enqueue --json` prints the API's answer.
    let id = first["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["run"]["job"], "provision-after-payment");
    let second = cli.json(&enqueue);
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["run"]["id"], id.as_str());

    // The same key with another payload: exit 4 (conflict), the server's code and the
    // holder's id; with --json, the API's error body on stdout.
    let out = cli.cmd(&[
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        r#"{"payment_id":"other"}"#,
        "--idempotency-key",
        "pay_123",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idempotency_conflict") && err.contains(&id),
        "{err}"
    );
    let out = cli.cmd(&[
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        r#"{"payment_id":"other"}"#,
        "--idempotency-key",
        "pay_123",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let body: Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(body["error"]["code"], "idempotency_conflict");
    assert_eq!(body["error"]["run_id"], id.as_str());

    let view = wait_final(&cli, &id);
    assert_eq!(view["status"], "completed");
    let human = cli.text(&["runs", "show", &id]);
    for expected in [
        "status completed",
        "provision",
        "retry_scheduled",
        "timeline:",
    ] {
        assert!(
            human.contains(expected),
            "missing {expected:?} in:\n{human}"
        );
    }
    let list = cli.json(&["runs", "list", "--queue", "payments"]);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    assert!(cli.text(&["runs", "list"]).contains(&id));
    let queues = cli.json(&["queues"]);
    assert_eq!(queues["queues"][0]["queue"], "payments", "{queues}");
    assert!(cli.text(&["queues"]).contains("payments"));

    // A run that exhausts its attempts lands in the dead-letter list; retry and purge it.
    crate::util::provider_control(&base, serde_json::json!({ "fail_accounts_next": 9 })).await;
    let failing_payload = format!(r#"{{"payment_id":"pay_456","provider_url":"{base}"}}"#);
    let failing = cli.json(&[
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        &failing_payload,
        "--max-attempts",
        "2",
        "--backoff",
        "10ms",
    ]);
    let failing_id = failing["run"]["id"].as_str().unwrap().to_owned();
    let failed = wait_final(&cli, &failing_id);
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "the accounts endpoint's failure exhausted it: {failed}"
    );
    let letters = cli.json(&["dlq", "list", "payments"]);
    assert_eq!(letters["runs"][0]["id"], failing_id.as_str());
    assert!(cli.text(&["dlq", "list", "payments"]).contains(&failing_id));
    let retried = cli.json(&["dlq", "retry", "payments"]);
    assert_eq!(retried["retried"][0], failing_id.as_str());
    assert_eq!(wait_final(&cli, &failing_id)["status"], "failed");
    let retried = cli.json(&["runs", "retry", &failing_id]);
    assert_eq!(retried["status"], "queued");
    assert_eq!(wait_final(&cli, &failing_id)["status"], "failed");
    let newest = cli.json(&["runs", "list", "--reverse"]);
    assert_eq!(newest["runs"][0]["id"], failing_id.as_str(), "newest first");
    assert_eq!(newest["runs"][1]["id"], id.as_str());
    let purged = cli.json(&["dlq", "purge", "payments"]);
    assert_eq!(purged["purged"], 1);
    // Purged runs are gone: not found (exit 3), and not listed.
    let out = cli.cmd(&["runs", "show", &failing_id]);
    assert_eq!(out.status.code(), Some(3));
    let left = cli.json(&["runs", "list"]);
    assert_eq!(left["runs"].as_array().unwrap().len(), 1, "{left}");
    assert!(
        cli.json(&["dlq", "list", "payments"])["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cli.text(&["dlq", "list", "payments"]).trim_end(),
        "no dead-lettered runs in queue payments"
    );
    assert_eq!(
        cli.text(&["dlq", "purge", "payments"]).trim_end(),
        "purged 0 dead-lettered runs from queue payments"
    );

    let queue = cli.json(&["queue", "set", "payments", "--concurrency", "3"]);
    assert_eq!(queue["concurrency"], 3);
    assert_eq!(cli.json(&["queue", "show", "payments"])["concurrency"], 3);
    assert!(
        cli.text(&["queue", "show", "payments"])
            .starts_with("queue payments: concurrency 3;"),
        "human summary of the queue"
    );

    // Errors: an unknown run (3), a bad token (5), a malformed name (2).
    let out = cli.cmd(&["runs", "show", "run_missing"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let stranger = Cli {
        server: &server,
        token: "sw_nope".into(),
    };
    let out = stranger.cmd(&["runs", "list"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    let out = cli.cmd(&["queue", "show", "no/such"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_name"));
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "runs",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:9") && err.contains("stepwise serve"),
        "{err}"
    );
}

#[tokio::test]
async fn egress_rules_through_the_api_and_the_cli_with_bad_input_refused() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("egress-cli").await;
    let other = api.admin_create_tenant("egress-other").await;
    let cli = Cli {
        server: &server,
        token,
    };
    assert!(
        cli.text(&["egress", "show"])
            .contains("every outbound request is refused")
    );
    let view = cli.json(&["egress", "allow", "API.Stripe.com", "--method", "post"]);
    assert_eq!(
        view["rules"],
        serde_json::json!([{"pattern": "https://api.stripe.com:443", "methods": ["POST"]}])
    );
    cli.json(&["egress", "allow", "http://127.0.0.1:7080"]);
    let view = cli.json(&["egress", "limits", "--max-requests", "20"]);
    assert_eq!(view["effective_limits"]["max_requests"], 20);
    assert_eq!(view["rules"].as_array().unwrap().len(), 2);
    let shown = cli.text(&["egress", "show"]);
    assert!(
        shown.contains("https://api.stripe.com:443 (POST)"),
        "{shown}"
    );
    assert!(shown.contains("20 requests"), "{shown}");

    // Bad input: refused with the stable code, naming what is wrong; nothing changes.
    for (body, says) in [
        (
            serde_json::json!({"rules": [{"pattern": "*.com"}]}),
            "top-level",
        ),
        (
            serde_json::json!({"rules": [{"pattern": "x.com/p"}]}),
            "no path",
        ),
        (
            serde_json::json!({"rules": [], "limits": {"max_requests": 0}}),
            "at least 1",
        ),
        (
            serde_json::json!({"rules": [], "limits": {"max_response_bytes": 1_u64 << 40}}),
            "over the cap",
        ),
    ] {
        let answer = api.put(&cli.token, "/v1/egress", body).await;
        let error = crate::serve_util::assert_error(&answer, 422, "invalid_egress");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
    let answer = api
        .put(
            &cli.token,
            "/v1/egress",
            serde_json::json!({"rules": [], "extra": 1}),
        )
        .await;
    crate::serve_util::assert_error(&answer, 400, "invalid_json");
    let out = cli.cmd(&["egress", "deny", "nowhere.example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no egress rule"));
    let (_, kept) = api.get(&cli.token, "/v1/egress").await;
    assert_eq!(kept["rules"].as_array().unwrap().len(), 2, "{kept}");

    // One tenant's rules never apply to another.
    let (_, theirs) = api.get(&other, "/v1/egress").await;
    assert_eq!(theirs["rules"], serde_json::json!([]));

    let view = cli.json(&["egress", "deny", "api.stripe.com"]);
    assert_eq!(view["rules"].as_array().unwrap().len(), 1);

    // With rules that cover them, the same deploy has no warnings.
    cli.json(&["egress", "allow", "api.payments.example"]);
    cli.json(&["egress", "allow", "http://127.0.0.1:*"]);
    let deployed = cli.json(&["deploy", guests::HTTP_CLIENT]);
    assert_eq!(deployed["warnings"], serde_json::json!([]), "{deployed}");
    assert!(
        !cli.text(&["deploy", guests::HTTP_CLIENT])
            .contains("warning:")
    );
}

#[tokio::test]
async fn secrets_through_the_api_and_the_cli_never_show_a_value() {
    const VALUE: &str = "sk_live_cli_7Hq2Lm";
    let key = stepwise::secrets::SecretKeys::generate();
    let server = Server::start_with_config(&format!("secrets_key = \"{key}\"\n"));
    let api = server.api();
    let cli = Cli {
        server: &server,
        token: api.admin_create_tenant("secrets-cli").await,
    };
    // The value comes from stdin, never from the command line.
    let mut child = Command::new(BIN)
        .args([
            "secrets",
            "set",
            "PAYMENTS_KEY",
            "--host",
            "api.stripe.com",
            "--json",
        ])
        .env("STEPWISE_URL", server.url())
        .env("STEPWISE_TOKEN", &cli.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{VALUE}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["hosts"][0]["pattern"], "https://api.stripe.com:443");
    assert_eq!(set["readable"], false);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(VALUE));

    let listed = cli.text(&["secrets", "list"]);
    assert!(
        listed.contains("PAYMENTS_KEY: bound to https://api.stripe.com:443"),
        "{listed}"
    );
    let (_, all) = api.get(&cli.token, "/v1/secrets").await;
    assert!(!all.to_string().contains(VALUE), "{all}");

    for (body, says) in [
        (serde_json::json!({"value": "v"}), "nothing could use it"),
        (serde_json::json!({"value": "", "readable": true}), "1 to"),
        (
            serde_json::json!({"value": "v", "hosts": [{"pattern": "*.com"}]}),
            "top-level",
        ),
    ] {
        let answer = api.put(&cli.token, "/v1/secrets/K", body).await;
        let error = crate::serve_util::assert_error(&answer, 422, "invalid_secret");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
    let answer = api
        .put(
            &cli.token,
            "/v1/secrets/bad%20name",
            serde_json::json!({"value": "v", "readable": true}),
        )
        .await;
    crate::serve_util::assert_error(&answer, 422, "invalid_secret");
    let out = cli.cmd(&["secrets", "rm", "NOPE"]);
    assert_eq!(out.status.code(), Some(3));
    cli.text(&["secrets", "rm", "PAYMENTS_KEY"]);
    assert!(cli.text(&["secrets", "list"]).contains("no secrets"));
    assert!(
        !server.log().contains(VALUE),
        "the server log holds the value"
    );

    // A server without a key refuses secrets with its own code.
    let keyless = Server::start();
    let api = keyless.api();
    let token = api.admin_create_tenant("no-key").await;
    let answer = api
        .put(
            &token,
            "/v1/secrets/K",
            serde_json::json!({"value": "v", "readable": true}),
        )
        .await;
    crate::serve_util::assert_error(&answer, 503, "secrets_unavailable");
}

/// `runs show --follow` streams a run's state (with the step its attempt is in) and its
/// timeline from the server's events until the run ends, and exits by how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_follow_streams_the_run_until_it_ends() {
    let server = Server::start();
    let api = server.api();
    let token = api.admin_create_tenant("acme").await;
    api.deploy(&token, guests::TESTBED).await;
    let cli = Cli {
        server: &server,
        token: token.clone(),
    };
    // A step that spins until the attempt's 2 s deadline: long enough to be seen executing.
    let spin = serde_json::json!({
        "job": "spin",
        "payload": {"in_step": true},
        "fuel": 1_000_000_000_000u64,
        "timeout_ms": 2_000,
    });
    let id = api.enqueue_new(&token, "q", spin.clone()).await;
    let out = cli.cmd(&["runs", "show", &id, "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a failed run exits 1:\n{text}");
    for expected in [
        "executing attempt 1 in step 'spin'",
        "created",
        "attempt_started  attempt 1",
        "failed",
        &format!("run {id} failed"),
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    // With --json: one object per event, timeline positions in order from 0, the end last.
    let id = api.enqueue_new(&token, "q", spin).await;
    let out = cli.cmd(&["runs", "show", &id, "--follow", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let positions: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "timeline")
        .map(|e| e["data"]["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..positions.len() as u64).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "state" && e["data"]["executing"]["step"] == "spin")
    );
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["data"]["status"]),
        (&"end".into(), &"failed".into())
    );

    // Following a run that does not exist is "not found".
    let out = cli.cmd(&["runs", "show", "run_missing", "--follow"]);
    assert_eq!(out.status.code(), Some(3));

    // A spinning run cancelled from the CLI: the follower sees it end cancelled (exit 1), the
    // timeline says who and why, and a second cancel is a conflict (exit 4).
    let spin = serde_json::json!({
        "job": "spin",
        "payload": {"in_step": true},
        "fuel": 1_000_000_000_000u64,
        "timeout_ms": 60_000,
    });
    let id = api.enqueue_new(&token, "q", spin).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while api.run(&token, &id).await["status"] != "running" {
        assert!(std::time::Instant::now() < deadline, "never running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = cli.json(&["runs", "cancel", &id, "--reason", "stuck in a loop"]);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let out = cli.cmd(&["runs", "show", &id, "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("run {id} cancelled")), "{text}");
    assert!(text.contains("by tenant 'acme': stuck in a loop"), "{text}");
    let out = cli.cmd(&["runs", "cancel", &id]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_cancellable"));
    // The bulk form: nothing matches any more; with neither an id nor a filter it is refused.
    let none = cli.json(&["runs", "cancel", "--queue", "q", "--status", "queued"]);
    assert_eq!(none, serde_json::json!({"cancelled": [], "more": false}));
    assert_eq!(cli.cmd(&["runs", "cancel"]).status.code(), Some(2));
}

/// `stepwise hosts` with the admin token: on the embedded store the one host, `local`, as a
/// table and as one JSON document; a tenant's token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_lists_the_one_embedded_host_to_the_admin_only() {
    let server = Server::start();
    let admin = Cli {
        server: &server,
        token: ADMIN_TOKEN.to_owned(),
    };
    let hosts = admin.json(&["hosts"]);
    assert_eq!(hosts["this_host"], "local", "{hosts}");
    assert_eq!(hosts["hosts"][0]["id"], "local", "{hosts}");
    assert!(
        hosts["hosts"][0]["started_at"].as_u64().unwrap_or(0) > 0,
        "{hosts}"
    );
    let table = admin.text(&["hosts"]);
    assert!(
        table.contains("HOST") && table.contains("local (answered)"),
        "{table}"
    );
    let token = server.api().admin_create_tenant("t").await;
    let tenant = Cli {
        server: &server,
        token,
    };
    let out = tenant.cmd(&["hosts", "--json"]);
    // Exit code 5: the server refused the credentials (README, "Exit codes").
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let error: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(error["error"]["code"], "forbidden", "{error}");
}
