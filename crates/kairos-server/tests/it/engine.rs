//! The engine without HTTP: shutdown releases long-polls.

use kairos_core::Limits;
use kairos_core::api::LeaseRequest;
use kairos_server::engine::Engine;
use kairos_store::{SqliteStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn shutdown_answers_waiting_leases_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let engine = Engine::start(store.clone(), Limits::default());
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .lease(LeaseRequest {
                    queues: vec!["q".into()],
                    worker: "w".into(),
                    wait: Some("60s".parse().unwrap()),
                    ..Default::default()
                })
                .await
        })
    };
    let started = Instant::now();
    engine.begin_shutdown();
    let jobs = waiting.await.unwrap().unwrap();
    assert!(jobs.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait out the long-poll"
    );
    engine.stopped().await;
    store.close().await;
}
