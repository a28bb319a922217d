//! Damaged data files are refused, not served: the real binary on damaged copies of a
//! real store, `kairos check`, and `--accept-data-loss`.

use crate::support::{Kairos, Refused};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// A store with `n` jobs, left by `kill -9` (its WAL and wal-index in place) or by a
/// clean stop (everything checkpointed into kairos.db). Answers the job ids.
async fn store_with_jobs(dir: &Path, n: usize, crash: bool) -> Vec<String> {
    let server = Kairos::start(dir);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(100) {
        let jobs: Vec<Value> = (0..100.min(n - chunk * 100))
            .map(|i| json!({"kind": "k", "payload": {"i": i, "pad": "p".repeat(300)}}))
            .collect();
        let resp = client
            .post(format!("{}/v1/jobs/batch", server.base))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        ids.extend(
            body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
    }
    if crash {
        server.kill9();
    } else {
        assert!(server.signal_and_wait("TERM").success());
    }
    ids
}

fn refused(dir: &Path, extra: &[&str]) -> Refused {
    match Kairos::try_start(dir, extra) {
        Ok(_) => panic!("kairos served a damaged store in {}", dir.display()),
        Err(r) => r,
    }
}

fn assert_refusal(r: &Refused, says: &str) {
    assert!(!r.status.success(), "{r:?}");
    assert!(
        r.stdout.is_empty(),
        "no listening line for a store that did not open: {r:?}"
    );
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
    assert!(r.stderr.contains(says), "says {says:?}: {}", r.stderr);
    assert!(
        r.stderr.contains("--accept-data-loss") || r.stderr.contains("recover"),
        "says what the operator can do: {}",
        r.stderr
    );
}

/// `kairos check`: exit status and what it printed.
fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["check", "--data-dir"])
        .arg(dir)
        .env("RUST_BACKTRACE", "0")
        .env("KAIROS_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

async fn jobs_found(server: &Kairos, ids: &[String]) -> usize {
    let client = reqwest::Client::new();
    let mut found = 0;
    for id in ids {
        let resp = client
            .get(format!("{}/v1/jobs/{id}", server.base))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            found += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scribbled_wal_is_refused_and_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ids = store_with_jobs(dir.path(), 500, true).await;
    let wal = dir.path().join("kairos.db-wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    assert!(len > 100_000, "the crash left a WAL ({len} bytes)");
    overwrite(&wal, len / 3, &[0xA5; 512]);
    assert_refusal(&refused(dir.path(), &[]), "write-ahead log");
    let (ok, said) = check(dir.path());
    assert!(!ok && said.contains("write-ahead log"), "{said}");

    // Accepting the loss: the WAL is copied aside, and the store serves what it holds
    // up to the damage (some of the jobs, not none, and not a refusal).
    let server = Kairos::try_start(dir.path(), &["--accept-data-loss"]).expect("starts");
    let found = jobs_found(&server, &ids).await;
    assert!(
        found < ids.len(),
        "the loss is real: {found} of {}",
        ids.len()
    );
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged WAL is kept for inspection");
    assert!(server.signal_and_wait("TERM").success());
    let (ok, said) = check(dir.path());
    assert!(ok, "sound again after accepting: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_jobs(dir.path(), 500, true).await;
    let wal = dir.path().join("kairos.db-wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_refusal(&refused(dir.path(), &[]), "cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_or_missing_database_is_refused() {
    for how in ["truncated", "deleted"] {
        let dir = tempfile::tempdir().unwrap();
        store_with_jobs(dir.path(), 100, false).await;
        let db = dir.path().join("kairos.db");
        match how {
            "truncated" => std::fs::File::create(&db).unwrap().set_len(0).unwrap(),
            _ => std::fs::remove_file(&db).unwrap(),
        }
        let r = refused(dir.path(), &[]);
        assert_refusal(&r, if how == "deleted" { "missing" } else { "empty" });
        let (ok, _) = check(dir.path());
        assert!(!ok, "{how}: check fails too");
        // Accepting the loss starts a new, empty store; the remains are set aside.
        let server = Kairos::try_start(dir.path(), &["--accept-data-loss"]).expect("starts");
        let page: Value = reqwest::get(format!("{}/v1/jobs", server.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["jobs"], json!([]), "{how}");
        assert!(server.signal_and_wait("TERM").success());
        // And from then on it is an ordinary store that starts without the flag.
        let again = Kairos::start(dir.path());
        assert!(again.signal_and_wait("TERM").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_in_the_database_are_found_at_open() {
    let dir = tempfile::tempdir().unwrap();
    store_with_jobs(dir.path(), 2_000, false).await;
    let db = dir.path().join("kairos.db");
    let pages = std::fs::metadata(&db).unwrap().len() / 4096;
    assert!(pages > 50, "a store of many pages ({pages})");
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    overwrite(&db, (pages / 2) * 4096 + 100, &noise);
    let r = refused(dir.path(), &["--accept-data-loss"]);
    assert_refusal(&r, "kairos.db is damaged");
    let (ok, said) = check(dir.path());
    assert!(!ok && said.contains("damaged"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_store_checks_clean_and_a_running_one_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    store_with_jobs(dir.path(), 100, true).await;
    let (ok, said) = check(dir.path());
    assert!(ok, "a store left by kill -9 is sound: {said}");
    assert!(said.contains("100 jobs"), "{said}");
    let server = Kairos::start(dir.path());
    let (ok, said) = check(dir.path());
    assert!(!ok && said.contains("another Kairos server"), "{said}");
    assert!(server.signal_and_wait("TERM").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_lock_cannot_be_deleted_away() {
    let dir = tempfile::tempdir().unwrap();
    let first = Kairos::start(dir.path());
    // Whatever files there are, deleting the ones that are not the store's data does not
    // let a second server in (there is no lock file to delete: the lock is on the
    // directory itself).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".lock") {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    let second = match Kairos::try_start(dir.path(), &[]) {
        Ok(_) => panic!("a second server opened a directory in use"),
        Err(r) => r,
    };
    assert!(!second.status.success());
    assert!(second.stdout.is_empty(), "{second:?}");
    assert!(
        second.stderr.contains("another Kairos server"),
        "{}",
        second.stderr
    );
    assert!(first.signal_and_wait("TERM").success());
}
