//! A full disk: writes answer 507 `storage-full` with `Retry-After`, readiness fails
//! while they do, nothing accepted is lost, and writes resume by themselves once space is
//! freed. On a small tmpfs, which needs root to mount; elsewhere the test says so and
//! skips.

use crate::support::Kairos;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn fill(path: &PathBuf, bytes: usize) {
    std::fs::write(path, vec![0u8; bytes]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_fails_readiness_and_recovers() {
    let Some(fs) = Tmpfs::mount("8m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here (the disk-full test needs root)");
        return;
    };
    let data = fs.path().join("data");
    let filler = fs.path().join("filler");
    fill(&filler, 2 * 1024 * 1024);
    let server = Kairos::start(&data);
    let client = reqwest::Client::new();
    let ready = || async {
        client
            .get(format!("{}/health/ready", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    let mut accepted = Vec::new();
    let refusal = loop {
        let resp = client
            .post(format!("{}/v1/jobs", server.base))
            .json(&json!({"kind": "k", "payload": {"pad": "x".repeat(5000)}}))
            .send()
            .await
            .unwrap();
        if resp.status() != 201 {
            break resp;
        }
        let job: Value = resp.json().await.unwrap();
        accepted.push(job["id"].as_str().unwrap().to_string());
        assert!(accepted.len() < 10_000, "the disk never filled");
    };
    assert_eq!(refusal.status(), 507);
    assert_eq!(
        refusal.headers()["content-type"],
        "application/problem+json"
    );
    assert!(refusal.headers().contains_key("retry-after"));
    let problem: Value = refusal.json().await.unwrap();
    assert_eq!(problem["type"], "urn:kairos:problem:storage-full");
    assert_eq!(ready().await, 503, "not ready while writes fail");
    let again = client
        .post(format!("{}/v1/jobs", server.base))
        .json(&json!({"kind": "k", "payload": {"pad": "x".repeat(5000)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 507);
    // Reads are still served.
    let first = client
        .get(format!("{}/v1/jobs/{}", server.base, accepted[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(ready().await, 200, "ready again once there is room");
    let resumed = client
        .post(format!("{}/v1/jobs", server.base))
        .json(&json!({"kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 201, "writes resume by themselves");

    // Nothing accepted is lost, across a restart too.
    server.kill9();
    let server = Kairos::start(&data);
    for id in &accepted {
        let got = client
            .get(format!("{}/v1/jobs/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.status(),
            200,
            "job {id} was accepted before the disk filled"
        );
    }
    assert!(server.signal_and_wait("TERM").success());
}
