//! `kairos bench` smoke test: every workload runs once at a small size and accounts for
//! every job. Figures are printed, never asserted against a threshold.

use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("kairos bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kairos bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn assert_accounted(r: &Value, jobs: u64) {
    println!("{r}");
    assert_eq!(r["system"], "kairos");
    assert_eq!(r["jobs"], jobs);
    assert_eq!(r["completed"], jobs, "every job completed");
    assert_eq!(
        (r["lost"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["ok"], true);
    assert!(r["settings"]["cores"].as_u64().unwrap() >= 1);
}

#[test]
fn throughput_smoke() {
    let r = bench(&[
        "--workload",
        "throughput",
        "--jobs",
        "3000",
        "--batch",
        "500",
        "--lease-batch",
        "100",
    ]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["workload"], "W1");
    assert_accounted(&r[0], 3000);
    assert!(r[0]["enqueue_jobs_per_s"].as_f64().unwrap() > 0.0);
    assert!(r[0]["process_jobs_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn latency_smoke() {
    let r = bench(&["--workload", "latency", "--latency-secs", "1"]);
    assert_eq!(r[0]["workload"], "W2");
    assert_accounted(&r[0], 500);
    let (p50, p99, max) = (
        r[0]["p50_ms"].as_f64().unwrap(),
        r[0]["p99_ms"].as_f64().unwrap(),
        r[0]["max_ms"].as_f64().unwrap(),
    );
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= max,
        "ordered percentiles"
    );
}

#[test]
fn delayed_smoke() {
    let r = bench(&["--workload", "delayed", "--delayed-jobs", "200"]);
    assert_eq!(r[0]["workload"], "W3");
    assert_accounted(&r[0], 200);
    assert_eq!(
        r[0]["early_count"], 0,
        "no delayed job starts before its time"
    );
    assert!(r[0]["p99_ms"].as_f64().is_some());
}

#[test]
fn cron_smoke() {
    let r = bench(&[
        "--workload",
        "cron",
        "--schedules",
        "20",
        "--cron-secs",
        "2",
    ]);
    assert_eq!(r[0]["workload"], "W4");
    assert_accounted(&r[0], 40);
    assert!(
        r[0]["p99_ms"].as_f64().unwrap() >= 0.0,
        "runs start after their fire time"
    );
}

#[test]
fn cron_with_another_expression_counts_its_fire_times() {
    // Every other second: two fire times in any four seconds.
    let r = bench(&[
        "--workload",
        "cron",
        "--schedules",
        "5",
        "--cron",
        "*/2 * * * * *",
        "--cron-secs",
        "4",
    ]);
    assert_accounted(&r[0], 10);
    // An expression that does not fire in the window is refused, not reported as a pass.
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["bench", "--workload", "cron", "--schedules", "1"])
        .args(["--cron", "0 0 1 1 *", "--cron-secs", "1", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("raise --cron-secs"));
}
