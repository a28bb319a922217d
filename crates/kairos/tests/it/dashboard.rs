//! The dashboard in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/dashboard.mjs`), against two real `kairos server` processes, one
//! open on loopback and one with a JWT secret. Screenshots of every page land in
//! `target/ui-screenshots/`.
//!
//! Needs Node.js and `/usr/bin/chromium` (`.ci/run` installs Chromium when missing);
//! without them the test says so and passes, unless `KAIROS_REQUIRE_SERVICES=1` (set by
//! CI) makes that a failure. playwright-core is installed from `package-lock.json` on
//! the first run.

use crate::support::Kairos;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "a-dashboard-test-secret-of-32-bytes-or-more";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run may take this long before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn required() -> bool {
    std::env::var("KAIROS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn mint(args: &[&str]) -> String {
    let mut all = vec!["--ttl", "1h"];
    all.extend(args);
    crate::support::mint(SECRET, &all)
}

/// `tests/browser`, with playwright-core installed (from its lock file) when missing.
fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

#[test]
fn every_page_and_action_works_in_chromium() {
    let node = Command::new("node").arg("--version").output();
    if node.is_err() || !Path::new(CHROMIUM).exists() {
        let why = format!("the dashboard's browser test needs node and {CHROMIUM}");
        assert!(!required(), "{why} (KAIROS_REQUIRE_SERVICES=1)");
        eprintln!("skipped: {why} (apt-get install chromium)");
        return;
    }
    let dir = browser_dir();
    let open_data = tempfile::tempdir().unwrap();
    let secured_data = tempfile::tempdir().unwrap();
    let open = Kairos::start(open_data.path());
    let secured = Kairos::try_start(secured_data.path(), &["--jwt-secret", SECRET])
        .unwrap_or_else(|r| panic!("{r:?}"));
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    // This run's screenshots only.
    let _ = std::fs::remove_dir_all(&shots);
    let mut child = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&dir)
        .env("OPEN", &open.base)
        .env("SECURED", &secured.base)
        .env("ADMIN", mint(&["--role", "admin"]))
        .env("READER", mint(&["--role", "reader"]))
        .env(
            "LIMITED",
            mint(&["--role", "producer", "--queues", "billing"]),
        )
        .env("SHOTS", &shots)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser run took over {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "a dashboard check failed (its output is above; screenshots in {})",
        shots.display()
    );
    for page in [
        "overview", "jobs", "job", "dead", "schedule", "workers", "login",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
