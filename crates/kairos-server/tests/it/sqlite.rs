//! What only the embedded store does over HTTP: its bounded write queue.

use crate::support::{TestServer, assert_problem};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_overloaded_and_reads_go_on() {
    let s = TestServer::start_sqlite(
        |_| {},
        kairos_store::sqlite::Options {
            write_queue_limit: 2,
            ..Default::default()
        },
    )
    .await;
    // Another connection's write lock holds the writer up, so writes queue.
    let blocker = rusqlite::Connection::open(s.data_dir().join("kairos.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut queued = Vec::new();
    let refused = loop {
        let mut w = s.spawn_post("/v1/jobs", json!({"kind": "k"}));
        match tokio::time::timeout(std::time::Duration::from_millis(300), &mut w).await {
            Ok(answer) => break answer.unwrap(),
            Err(_) => queued.push(w),
        }
        assert!(queued.len() <= 3, "the write queue never filled");
    };
    assert_problem(&refused, 503, None);
    assert_eq!(refused.body["type"], "urn:kairos:problem:overloaded");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(s.get("/v1/queues").await.status, 200, "reads are served");
    assert_eq!(s.get("/health/live").await.status, 200);
    blocker.execute_batch("COMMIT").unwrap();
    for w in queued {
        assert_eq!(w.await.unwrap().status, 201, "queued writes complete");
    }
    s.stop().await;
}
