//! The SQLite backend: the conformance suite on a real file, plus durability across reopen.

use kairos_core::api::{EnqueueRequest, LeaseSpec};
use kairos_core::{Limits, ManualClock, QueueChange};
use kairos_store::conformance::{Env, start};
use kairos_store::{SqliteStore, Store};
use std::sync::Arc;

async fn make_env() -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let store = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    Some(Env {
        store: Arc::new(store),
        clock,
        _guard: Box::new(dir),
    })
}

kairos_store::conformance_suite!(make_env);

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
    let limits = QueueChange {
        max_depth: Some(Some(100)),
        concurrency: Some(Some(3)),
        ..QueueChange::default()
    };
    store.change_queue("default", limits).await.unwrap();
    // No close: dropping the store is as close to a crash as a test process can get here;
    // the kill -9 test in the kairos crate covers the real thing.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    for (job, _) in &out.jobs {
        assert_eq!(store.job(job.id).await.unwrap().unwrap().kind, job.kind);
    }
    let q = store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.paused, q.counts.available), (true, 100));
    assert_eq!(
        (q.limits.max_depth, q.limits.concurrency),
        (Some(100), Some(3))
    );
    // The reopened writer enforces them too.
    store.set_paused("default", false).await.unwrap();
    let spec = LeaseSpec {
        queues: vec!["default".into()],
        worker: "w".into(),
        max: 10,
        wait: kairos_core::Duration::ZERO,
        lease: None,
    };
    assert_eq!(store.lease(spec).await.unwrap().len(), 3);
    let one = EnqueueRequest {
        kind: "k".into(),
        ..Default::default()
    }
    .validate("", &Limits::default())
    .unwrap();
    assert!(matches!(
        store.enqueue(vec![one], None).await,
        Err(kairos_store::StoreError::QueueFull(_))
    ));
    store.close().await;
    assert!(
        store.job(out.jobs[0].0.id).await.is_err(),
        "closed store refuses work"
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(dir.path()).unwrap();
    let second = SqliteStore::open(dir.path());
    assert!(
        matches!(second, Err(kairos_store::StoreError::Backend(m)) if m.contains("another Kairos server"))
    );
    first.close().await;
    drop(first);
    SqliteStore::open(dir.path()).expect("free again once the first is gone");
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

/// A restart test for each misfire policy: the store is closed across five hourly fire
/// times, and reopened (with the clock moved on) it fires what each policy says.
#[tokio::test]
async fn misfire_policies_after_a_restart() {
    use kairos_core::schedule::{JobTemplateRequest, Misfire, ScheduleRequest};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let store = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    let mut ids = Vec::new();
    for (name, misfire) in [
        ("skip", Misfire::Skip),
        ("once", Misfire::RunOnce),
        ("all", Misfire::RunAll),
    ] {
        let req = ScheduleRequest {
            name: name.into(),
            cron: "0 * * * *".into(),
            job: JobTemplateRequest {
                kind: "k".into(),
                ..Default::default()
            },
            misfire: Some(misfire),
            ..Default::default()
        };
        ids.push(
            store
                .create_schedule(req, Limits::default())
                .await
                .unwrap()
                .id,
        );
    }
    store.close().await;
    drop(store);
    clock.advance(std::time::Duration::from_secs(5 * 3600 + 1800));
    let store = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    let t = store.tick().await.unwrap();
    assert_eq!(t.fired, 1 + 5);
    let runs = |id| {
        let store = &store;
        async move {
            let f = kairos_core::api::JobFilter {
                schedule_id: Some(id),
                limit: 50,
                ..Default::default()
            };
            let mut jobs = store.list_jobs(f).await.unwrap().jobs;
            jobs.sort_by_key(|j| j.scheduled_for);
            jobs.iter()
                .map(|j| j.scheduled_for.unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(
        runs(ids[0]).await.is_empty(),
        "skip fires nothing for missed times"
    );
    assert_eq!(
        runs(ids[1]).await,
        ["2030-01-01T05:00:00Z"],
        "run_once: the latest missed time"
    );
    assert_eq!(
        runs(ids[2]).await,
        [
            "2030-01-01T01:00:00Z",
            "2030-01-01T02:00:00Z",
            "2030-01-01T03:00:00Z",
            "2030-01-01T04:00:00Z",
            "2030-01-01T05:00:00Z"
        ]
    );
    for id in &ids {
        let s = store.schedule(*id).await.unwrap().unwrap();
        assert_eq!(
            s.next_run_at.unwrap().to_string(),
            "2030-01-01T06:00:00Z",
            "next_run_at is true after a restart"
        );
    }
    assert_eq!(store.tick().await.unwrap().fired, 0, "nothing fires twice");
}

/// Past the write queue's limit a write fails at once with `Overloaded`, reads still
/// answer, and the store's own upkeep is not refused; once the writer catches up, writes
/// are taken again. The writer is held up by another connection's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_refuses_writes_at_once() {
    use kairos_store::sqlite::Options;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open_with(
            dir.path(),
            Options {
                write_queue_limit: 4,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let blocker = rusqlite::Connection::open(dir.path().join("kairos.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let job = || {
        EnqueueRequest {
            kind: "k".into(),
            ..Default::default()
        }
        .validate("", &Limits::default())
        .unwrap()
    };
    // The writer takes one operation and waits for the lock; the rest queue up to the limit.
    let mut waiting = Vec::new();
    let refused = loop {
        let store = store.clone();
        let mut task = tokio::spawn(async move { store.enqueue(vec![job()], None).await });
        // A refusal is immediate; an accepted write waits behind the lock.
        match tokio::time::timeout(std::time::Duration::from_millis(200), &mut task).await {
            Ok(answer) => break answer.unwrap(),
            Err(_) => waiting.push(task),
        }
        assert!(waiting.len() <= 5, "the queue never filled");
    };
    assert!(
        matches!(refused, Err(kairos_store::StoreError::Overloaded)),
        "{refused:?}"
    );
    assert!(store.queues().await.is_ok(), "reads are still served");
    let upkeep = {
        let store = store.clone();
        tokio::spawn(async move { store.tick().await })
    };
    blocker.execute_batch("COMMIT").unwrap();
    upkeep
        .await
        .unwrap()
        .expect("the timer's tick is never refused for a full queue");
    for w in waiting {
        w.await
            .unwrap()
            .expect("queued writes are applied once the writer is free");
    }
    store.enqueue(vec![job()], None).await.expect("taken again");
    let q = store.queue("default").await.unwrap().unwrap();
    assert_eq!(q.counts.available, 6);
}

/// A stored schedule whose zone no longer parses (a newer tzdb, an old row) is made
/// inactive with `last_error` by the first tick, instead of staying due and spinning the
/// timer; the other schedules go on firing.
#[tokio::test]
async fn a_schedule_that_no_longer_parses_is_deactivated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let store = SqliteStore::open_with_clock(dir.path(), clock.clone()).unwrap();
    let mut ids = Vec::new();
    for name in ["broken", "fine"] {
        let req = kairos_store::conformance::schedule_req(name, "* * * * *");
        ids.push(
            store
                .create_schedule(req, Limits::default())
                .await
                .unwrap()
                .id,
        );
    }
    let raw = rusqlite::Connection::open(dir.path().join("kairos.db")).unwrap();
    raw.execute(
        "UPDATE schedules SET body = json_set(body, '$.timezone', 'Atlantis/Capital') \
         WHERE name = 'broken'",
        [],
    )
    .unwrap();
    drop(raw);
    clock.advance(std::time::Duration::from_secs(61));
    let tick = store.tick().await.unwrap();
    assert_eq!(tick.fired, 1, "the sound schedule fires");
    let broken = store.schedule(ids[0]).await.unwrap().unwrap();
    assert!(!broken.active);
    assert_eq!(broken.next_run_at, None);
    assert!(broken.last_error.unwrap().contains("Atlantis/Capital"));
    let fine = store.schedule(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        tick.next_due, fine.next_run_at,
        "nothing is due now: the timer sleeps until the next real fire time"
    );
    let again = store.tick().await.unwrap();
    assert_eq!(again.fired, 0);
}
