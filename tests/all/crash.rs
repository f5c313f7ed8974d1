//! A real `stepwise` process killed with SIGKILL between attempts (while waiting out a backoff,
//! and while a run sleeps durably), then `stepwise resume` on the same data dir: nothing
//! acknowledged is lost, no completed step runs again, every run reaches its end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use stepwise_tests::guests;

const BIN: &str = env!("CARGO_BIN_EXE_stepwise-under-test");

fn stepwise(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("STEPWISE_LOG", "info")
        .env("STEPWISE_CACHE_DIR", crate::util::compile_cache());
    cmd
}

/// Starts `stepwise run ...` and kills it with SIGKILL as soon as its log shows `marker`.
fn run_and_kill_at(args: &[&str], marker: &str) -> Vec<String> {
    let mut child: Child = stepwise(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stepwise");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(line) => {
                let hit = line.contains(marker);
                seen.push(line);
                if hit {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("never saw {marker:?}; log:\n{}", seen.join("\n"));
            }
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the process was killed, not finished");
    seen
}

fn resume(data: &str) -> Vec<Value> {
    let out = stepwise(&["resume", "--data", data, "--json"])
        .output()
        .expect("run resume");
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("resume prints JSON")
}

fn count_exec(run: &Value, step: &str) -> usize {
    let exact = format!("exec {step}");
    let prefix = format!("exec {step} ");
    run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .filter(|m| *m == exact || m.starts_with(&prefix))
        .count()
}

fn step_attempts(run: &Value, name: &str) -> u64 {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("step {name} in {run}"))["attempts"]
        .as_u64()
        .unwrap()
}

#[test]
fn killed_while_waiting_for_a_retry_resumes_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let payload = json!({"steps": ["a", "b", "c"], "fail": {"b": 1}}).to_string();
    run_and_kill_at(
        &[
            "run",
            guests::TESTBED,
            "flaky",
            "--payload",
            &payload,
            "--data",
            data,
            "--backoff",
            "1s",
            "--jitter",
            "0",
        ],
        "status=retrying",
    );
    let runs = resume(data);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(
        count_exec(run, "a"),
        1,
        "a completed before the kill and was replayed"
    );
    assert_eq!(count_exec(run, "b"), 2);
    assert_eq!(count_exec(run, "c"), 1);
    assert_eq!(step_attempts(run, "a"), 1);
    assert_eq!(step_attempts(run, "b"), 2);
    assert_eq!(run["attempts"], 2);
    assert_eq!(
        run["payload"],
        json!({"steps": ["a", "b", "c"], "fail": {"b": 1}})
    );
}

#[test]
fn killed_while_sleeping_resumes_after_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    run_and_kill_at(
        &[
            "run",
            guests::TESTBED,
            "sleeper",
            "--payload",
            r#"{"ms":1000}"#,
            "--data",
            data,
        ],
        "status=sleeping",
    );
    let runs = resume(data);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(count_exec(run, "before"), 1);
    assert_eq!(count_exec(run, "after"), 1);
}

#[test]
fn cli_run_prints_the_run_record_and_exit_codes_follow_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = stepwise(&[
        "run",
        guests::TESTBED,
        "flaky",
        "--payload",
        r#"{"steps":["reserve","provision"],"fail":{"provision":2}}"#,
        "--data",
        data,
        "--backoff",
        "10ms",
        "--json",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "id", "job", "status", "attempts", "output", "steps", "timeline",
    ] {
        assert!(run.get(field).is_some(), "missing {field} in {run:#}");
    }
    assert_eq!(run["status"], "completed");
    assert_eq!(step_attempts(&run, "reserve"), 1);
    assert_eq!(step_attempts(&run, "provision"), 3);
    let entry = &run["timeline"][0];
    assert!(entry.get("at").is_some() && entry.get("kind").is_some());

    // The same run, shown again from the data dir, readable.
    let id = run["id"].as_str().unwrap();
    let out = stepwise(&["show", id, "--data", data]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("status completed") && text.contains("provision"),
        "{text}"
    );

    // A failing run exits non-zero and reports its error in JSON.
    let out = stepwise(&[
        "run",
        guests::DIGEST,
        "weekly-digest",
        "--payload",
        r#"{"user_id":"u_9"}"#,
        "--data",
        data,
        "--json",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["kind"], "non_retryable");
    assert!(run["error"]["message"].as_str().unwrap().contains("u_9"));

    // Bad input exits 2 with a message naming the problem.
    let out = stepwise(&["run", guests::WRONG_WORLD, "x", "--data", data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("does not target stepwise:jobs/handler@0.1.2"),
        "{text}"
    );
}
