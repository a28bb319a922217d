//! The SQLite backend: the conformance suite on a real file, plus durability across reopen.

use crate::conformance::{Env, start};
use kairos_core::api::EnqueueRequest;
use kairos_core::{Limits, ManualClock};
use kairos_store::{SqliteStore, Store};
use std::sync::Arc;

async fn make_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let store = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    Env {
        store: Arc::new(store),
        clock,
        _guard: Box::new(dir),
    }
}

crate::conformance_suite!(make_env);

#[tokio::test]
async fn committed_jobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let jobs = (0..100)
        .map(|i| {
            EnqueueRequest {
                kind: format!("k{i}"),
                ..Default::default()
            }
            .validate("", &Limits::default())
            .unwrap()
        })
        .collect();
    let out = store.enqueue(jobs, None).await.unwrap();
    store.set_paused("default", true).await.unwrap();
    // No close: dropping the store is as close to a crash as a test process can get here;
    // the kill -9 test in the kairos crate covers the real thing.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    for (job, _) in &out.jobs {
        assert_eq!(store.job(job.id).await.unwrap().unwrap().kind, job.kind);
    }
    let q = store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.paused, q.counts.available), (true, 100));
    store.close().await;
    assert!(
        store.job(out.jobs[0].0.id).await.is_err(),
        "closed store refuses work"
    );
}

#[tokio::test]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let job = EnqueueRequest {
                    kind: format!("t{t}-{i}"),
                    ..Default::default()
                }
                .validate("", &Limits::default())
                .unwrap();
                store.enqueue(vec![job], None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = store.queue("default").await.unwrap().unwrap();
    assert_eq!(q.counts.available, 640);
}
