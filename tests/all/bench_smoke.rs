//! A tiny run of every benchmark workload through the real CLI: each prints one JSON line with
//! the contract's fields, and the self-checks (retry10's step counts, enqueue_idem's second
//! pass) hold. Figures are not asserted: performance is measured by `scripts/bench.sh`.

use std::process::Command;

use serde_json::Value;
use stepwise::bench::CONTRACT_FIELDS;
use stepwise_tests::guests;

const BIN: &str = env!("CARGO_BIN_EXE_stepwise-under-test");

fn bench(workload: &str, jobs: &str) -> Value {
    bench_with(workload, jobs, &[])
}

fn bench_with(workload: &str, jobs: &str, extra: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["bench", workload, "--jobs", jobs, "--concurrency", "4"])
        .args(["--component", guests::BENCH_JOBS])
        .args(extra)
        .output()
        .expect("run stepwise bench");
    assert!(
        out.status.success(),
        "{workload}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    for key in CONTRACT_FIELDS {
        assert!(
            report.get(key).is_some(),
            "{workload}: missing {key} in {report}"
        );
    }
    assert_eq!(report["system"], "stepwise");
    assert_eq!(report["workload"], workload);
    report
}

#[test]
fn every_workload_runs_and_checks_itself() {
    for workload in ["noop", "steps3"] {
        let r = bench(workload, "40");
        assert_eq!(r["jobs"], 40);
        assert!(r["commits"].as_u64().unwrap() > 0);
        assert!(r["writer_busy_pct"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Three steps per job: the engine measured the gaps between durable step completions.
    let r = bench_with("steps3", "40", &["--cache-mb", "16"]);
    assert!(
        r["step_to_step_p50_ms_at_most"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert_eq!(r["cache_mb"], 16);
    let r = bench("retry10", "40");
    assert_eq!(r["completed_steps_run_twice"], 0);
    assert_eq!(r["second_step_executions"], 44);
    assert_eq!(
        r["second_step_executions"],
        r["expected_second_step_executions"]
    );
    let r = bench("enqueue_idem", "20");
    assert_eq!(r["created_first_pass"], 20);
    assert_eq!(r["created_second_pass"], 0);
    let r = bench("replay1000", "50");
    assert_eq!(r["steps"], 50);
    assert!(r.get("replay_ms").is_some());
    let r = bench("instantiate", "50");
    assert!(r["us_per_instance"].as_f64().unwrap() > 0.0);
    // The native baseline: the same job logic, the same self-checks.
    let r = bench_with("steps3", "40", &["--native"]);
    assert_eq!(r["handler"], "native");
    let r = bench_with("retry10", "40", &["--native"]);
    assert_eq!(r["completed_steps_run_twice"], 0);
    assert_eq!(r["second_step_executions"], 44);
    let wasm = bench("replay1000", "30");
    let native = bench_with("replay1000", "30", &["--native"]);
    // Both journal every step: the same rows. (How many commits those take depends on when
    // the attempt's start, which is not awaited, meets the first step at the writer.)
    let rows = |r: &Value| {
        (r["commits"].as_f64().unwrap() * r["rows_per_commit"].as_f64().unwrap()).round()
    };
    // `rows_per_commit` is rounded to a tenth on both sides, so each product is off by up to
    // 0.05 per commit and the two may differ by the sum.
    let slack = 0.05 * (wasm["commits"].as_f64().unwrap() + native["commits"].as_f64().unwrap());
    assert!(
        (rows(&wasm) - rows(&native)).abs() <= slack + 1.0,
        "{wasm} / {native}"
    );
    assert!(wasm["commits"].as_u64().unwrap() >= 30, "{wasm}");
    let out = Command::new(BIN)
        .args(["bench", "instantiate", "--native"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no native variant"));

    let r = bench("sleepers", "20");
    assert_eq!(r["jobs"], 20);
    assert!(r["max_wake_lateness_ms"].as_f64().is_some());

    // Two tenants: B's throughput alone, beside A's hogs and behind A's backlog.
    let r = bench("noisy", "20");
    for key in [
        "solo_jobs_per_s",
        "hostile_ratio",
        "backlog_ratio",
        "hostile_p50_ms",
        "deploy_ms_solo",
        "deploy_ms_beside_hogs",
    ] {
        assert!(r[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {r}");
    }
    assert_eq!(r["hostile_series"].as_array().unwrap().len(), 3, "{r}");
}
