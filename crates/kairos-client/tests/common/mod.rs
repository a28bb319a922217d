//! What the client's test targets share: a real server on an ephemeral port.

use kairos_client::Client;
use kairos_core::RawValue;
use kairos_core::api::EnqueueRequest;

/// A server on a fresh SQLite store; it stops when the sender is dropped.
pub async fn server() -> (Client, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let (c, dir, stop, _serving) = stoppable_server().await;
    (c, dir, stop)
}

/// A server as [`server`], and its task: it has stopped serving when the task ends.
pub async fn stoppable_server() -> (
    Client,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), kairos_server::ServeError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let store = kairos_store::SqliteStore::open(&dir.path().join("data")).unwrap();
    let server = kairos_server::Server::new(std::sync::Arc::new(store));
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    (Client::new(&base).unwrap(), dir, tx, serving)
}

/// A job of `kind` on queue `q`.
pub fn job(kind: &str) -> EnqueueRequest {
    EnqueueRequest {
        queue: Some("q".into()),
        kind: kind.into(),
        payload: Some(RawValue::from_string(r#"{"x":1}"#.into()).unwrap()),
        ..Default::default()
    }
}
