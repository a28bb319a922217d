//! The PostgreSQL backend: the conformance suite on a real server, one schema per test,
//! plus what only a database shared by many nodes needs (migrations racing, a schema
//! newer than the binary).

use kairos_core::ManualClock;
use kairos_store::conformance::database::TestDatabase;
use kairos_store::conformance::{Env, start};
use kairos_store::postgres::{Options, PostgresStore};
use std::sync::Arc;

fn options(db: &TestDatabase, clock: Option<Arc<ManualClock>>) -> Options {
    Options {
        schema: db.schema.clone(),
        clock: clock.map(|c| c as _),
        ..Options::default()
    }
}

async fn make_env() -> Option<Env> {
    let db = TestDatabase::create().await?;
    let clock = Arc::new(ManualClock::new(start()));
    let store = PostgresStore::connect(&db.url, options(&db, Some(clock.clone())))
        .await
        .unwrap();
    Some(Env {
        store: Arc::new(store),
        clock,
        _guard: Box::new(db),
    })
}

kairos_store::conformance_suite!(make_env);

/// Nodes starting at once on a new database: each migrates or finds it done, none fails.
#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut starting = Vec::new();
    for _ in 0..6 {
        let (url, opts) = (db.url.clone(), options(&db, None));
        starting.push(tokio::spawn(async move {
            PostgresStore::connect(&url, opts).await
        }));
    }
    for s in starting {
        s.await.unwrap().expect("every node starts");
    }
    let (applied, version) = PostgresStore::migrate(&db.url, options(&db, None))
        .await
        .unwrap();
    assert!(applied.is_empty(), "nothing left to apply");
    assert_eq!(version, kairos_store::postgres::schema::latest());
}

/// A schema migrated by a newer binary is refused, not guessed at.
#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    PostgresStore::migrate(&db.url, options(&db, None))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            &format!(
                "INSERT INTO \"{}\".schema_migrations (version) VALUES (999)",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let refused = PostgresStore::connect(&db.url, options(&db, None)).await;
    match refused {
        Err(kairos_store::StoreError::Backend(m)) => {
            assert!(m.contains("version 999") && m.contains("newer"), "{m}")
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

/// The database's clock judges time, not this machine's: a database whose clock reads
/// 2031 (pinned for the session through the URL, as `kairos_now()` allows) makes jobs
/// created in 2031.
#[tokio::test]
async fn time_is_the_database_clock() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}options=-c%20kairos.clock%3D2031-01-01T00%3A00%3A00Z",
        db.url
    );
    let store = PostgresStore::connect(&url, options(&db, None))
        .await
        .unwrap();
    let spec = kairos_core::api::EnqueueRequest {
        kind: "k".into(),
        ..Default::default()
    }
    .validate("", &kairos_core::Limits::default())
    .unwrap();
    let out = kairos_store::Store::enqueue(&store, vec![spec], None)
        .await
        .unwrap();
    let expected: jiff::Timestamp = "2031-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(out.jobs[0].0.created_at, expected);
    assert!(
        kairos_store::Store::now(&store) > expected,
        "now() is this machine's estimate of the database clock (from the last reading)"
    );
}

fn job_in(queue: &str, delay: Option<kairos_core::Duration>) -> kairos_core::NewJob {
    kairos_core::api::EnqueueRequest {
        queue: Some(queue.into()),
        kind: "k".into(),
        delay,
        ..Default::default()
    }
    .validate("", &kairos_core::Limits::default())
    .unwrap()
}

/// Two nodes on one database: a job enqueued through one wakes a lease waiting on the
/// other (LISTEN/NOTIFY), and a delayed job made through one moves the other's timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_wakes_the_other() {
    use kairos_store::Store;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = PostgresStore::connect(&db.url, options(&db, None))
        .await
        .unwrap();
    let b = PostgresStore::connect(&db.url, options(&db, None))
        .await
        .unwrap();
    // Wait until b listens: its listener wakes everything once it does, so a watch
    // registered before sees that wake-up (or the job's, whichever comes first).
    let signals = b.signals();
    let watch = signals.watch("mail");
    for round in 0.. {
        let woken = watch.notify().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        a.enqueue(vec![job_in("mail", None)], None).await.unwrap();
        if tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .is_ok()
        {
            break;
        }
        assert!(round < 10, "node b was never woken by node a's commits");
    }
    // Now that b listens, every commit of a wakes it: five in a row.
    for _ in 0..5 {
        let woken = watch.notify().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        a.enqueue(vec![job_in("mail", None)], None).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), woken)
            .await
            .expect("a's enqueue wakes b's waiter");
    }
    signals.set_next_due(None);
    let delayed = a
        .enqueue(
            vec![job_in("mail", Some(kairos_core::Duration::from_secs(3600)))],
            None,
        )
        .await
        .unwrap()
        .jobs
        .remove(0)
        .0;
    // The timer's notifier keeps one permit, so a wake-up can be an older one: wait
    // on it until b's next due time is the delayed job's.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while signals.next_due() != Some(delayed.run_at) {
        tokio::time::timeout_at(deadline, signals.due_changed().notified())
            .await
            .expect("a's delayed job wakes b's timer");
    }
    a.close().await;
    b.close().await;
}

fn node(name: &str) -> kairos_store::Node {
    kairos_store::Node {
        id: uuid::Uuid::now_v7(),
        address: name.into(),
        started_at: start(),
    }
}

/// One leader at a time, judged by the database's clock: a leader that stops renewing is
/// replaced once its lead expires, and one that resigns at once.
#[tokio::test]
async fn one_node_leads_and_another_takes_over() {
    use kairos_store::Store;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(start()));
    let a = PostgresStore::connect(&db.url, options(&db, Some(clock.clone())))
        .await
        .unwrap();
    let b = PostgresStore::connect(&db.url, options(&db, Some(clock.clone())))
        .await
        .unwrap();
    let (na, nb) = (node("a:1"), node("b:1"));
    assert!(a.beat(&na).await.unwrap(), "the first node leads");
    assert!(!b.beat(&nb).await.unwrap(), "a second does not");
    clock.advance(std::time::Duration::from_secs(3));
    assert!(a.beat(&na).await.unwrap(), "the leader renews");
    assert!(!b.beat(&nb).await.unwrap());
    let nodes = b
        .nodes()
        .await
        .unwrap()
        .expect("a shared store lists its nodes");
    let listed: Vec<(&str, bool)> = nodes
        .iter()
        .map(|n| (n.address.as_str(), n.leader))
        .collect();
    assert_eq!(listed, vec![("a:1", true), ("b:1", false)]);
    // a stops renewing (it died): b takes over once a's lead has expired.
    clock.advance(std::time::Duration::from_secs(4));
    assert!(!b.beat(&nb).await.unwrap(), "not before the lead expires");
    clock.advance(std::time::Duration::from_secs(2));
    assert!(b.beat(&nb).await.unwrap(), "after it, the other node leads");
    assert!(
        !a.beat(&na).await.unwrap(),
        "and the old leader knows it no longer does"
    );
    // A clean stop hands the lead over at once.
    b.resign(&nb).await.unwrap();
    assert!(a.beat(&na).await.unwrap());
    let nodes = a.nodes().await.unwrap().unwrap();
    assert_eq!(nodes.len(), 1, "a resigned node is forgotten");
}

/// An operation whose first query fails inside its opening round trip (here: a row lock
/// it waited on past `lock_timeout`) leaves its connection clean: the next operation on
/// the same connection (a pool of one) works.
#[tokio::test]
async fn a_failed_opening_query_leaves_the_connection_clean() {
    use kairos_store::Store;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20lock_timeout%3D200", db.url);
    let opts = Options {
        pool_size: 1,
        ..options(&db, None)
    };
    let store = PostgresStore::connect(&url, opts).await.unwrap();
    let job = store
        .enqueue(vec![job_in("locked", None)], None)
        .await
        .unwrap()
        .jobs
        .remove(0)
        .0;
    let (mut holder, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        &format!(
            "SELECT 1 FROM \"{}\".jobs WHERE id = $1 FOR UPDATE",
            db.schema
        ),
        &[&job.id],
    )
    .await
    .unwrap();
    let refused = store.cancel(job.id).await;
    assert!(refused.is_err(), "the lock wait ran out: {refused:?}");
    tx.rollback().await.unwrap();
    let cancelled = store
        .cancel(job.id)
        .await
        .expect("the next operation works");
    assert_eq!(cancelled.state, kairos_core::JobState::Cancelled);
}

/// The node's estimate of the database clock stays right when an operation's answer
/// comes late: here its first query waits a second for a row lock, and the transaction's
/// start time (the clock reading it carries) is a second older than the answer. Before
/// the fix the estimate fell behind by the wait, and the timer slept past due jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_does_not_set_the_clock_back() {
    use kairos_store::Store;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PostgresStore::connect(&db.url, options(&db, None))
        .await
        .unwrap();
    let job = store
        .enqueue(vec![job_in("locked", None)], None)
        .await
        .unwrap()
        .jobs
        .remove(0)
        .0;
    let (mut holder, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let schema = db.schema.clone();
    let id = job.id;
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    // The lock is held for one second: that is the wait under test, not synchronisation.
    let hold = tokio::spawn(async move {
        let tx = holder.transaction().await.unwrap();
        tx.execute(
            &format!("SELECT 1 FROM \"{schema}\".jobs WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .unwrap();
        locked_tx.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        tx.rollback().await.unwrap();
    });
    locked.await.unwrap();
    let cancelled = store
        .cancel(job.id)
        .await
        .expect("the cancel waits, then goes through");
    assert_eq!(cancelled.state, kairos_core::JobState::Cancelled);
    hold.await.unwrap();
    let skew = jiff::Timestamp::now().duration_since(store.now()).abs();
    assert!(
        skew < jiff::SignedDuration::from_millis(300),
        "the estimate is off by {skew:?}"
    );
}
