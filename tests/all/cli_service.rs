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

#[test]
fn the_cli_drives_the_service_end_to_end() {
    let server = Server::start();
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
    assert_eq!(module["jobs"][0]["name"], "provision-after-payment");
    let listing = cli.text(&["modules"]);
    assert!(
        listing.contains(&module["hash"].as_str().unwrap()[..12]),
        "{listing}"
    );

    let payload = r#"{"payment_id":"pay_123","fail_provision_times":2}"#;
    let enqueue = [
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        payload,
        "--idempotency-key",
        "pay_123",
        "--backoff",
        "20ms",
    ];
    let first = cli.json(&enqueue);
    assert_eq!(first["deduplicated"], false);
    let id = first["id"].as_str().unwrap().to_owned();
    let second = cli.json(&enqueue);
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["id"], id.as_str());

    // The same key with another payload: exit 2, the server's code and the holder's id.
    let out = cli.cmd(&[
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        r#"{"payment_id":"other"}"#,
        "--idempotency-key",
        "pay_123",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idempotency_conflict") && err.contains(&id),
        "{err}"
    );

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

    // A run that exhausts its attempts lands in the dead-letter list; retry and purge it.
    let failing = cli.json(&[
        "enqueue",
        "payments",
        "provision-after-payment",
        "--payload",
        r#"{"payment_id":"pay_456","fail_provision_times":9}"#,
        "--max-attempts",
        "2",
        "--backoff",
        "10ms",
    ]);
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&cli, &failing_id)["status"], "failed");
    let letters = cli.json(&["dlq", "list", "payments"]);
    assert_eq!(letters["runs"][0]["id"], failing_id.as_str());
    assert!(cli.text(&["dlq", "list", "payments"]).contains(&failing_id));
    let retried = cli.json(&["dlq", "retry", "payments"]);
    assert_eq!(retried["retried"][0], failing_id.as_str());
    assert_eq!(wait_final(&cli, &failing_id)["status"], "failed");
    let retried = cli.json(&["runs", "retry", &failing_id]);
    assert_eq!(retried["status"], "queued");
    assert_eq!(wait_final(&cli, &failing_id)["status"], "failed");
    let purged = cli.json(&["dlq", "purge", "payments"]);
    assert_eq!(purged["purged"], 1);
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

    // Errors: an unknown run, a bad token.
    let out = cli.cmd(&["runs", "show", "run_missing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let stranger = Cli {
        server: &server,
        token: "sw_nope".into(),
    };
    let out = stranger.cmd(&["runs", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
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
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:9") && err.contains("stepwise serve"),
        "{err}"
    );
}
