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
    let (base, stop, serving) = serve(dir.path(), "127.0.0.1:0").await;
    (Client::new(&base).unwrap(), dir, stop, serving)
}

/// A server on the store in `dir`, listening on `addr` (again, after a stop): its base
/// URL, what stops it, and its task.
pub async fn serve(
    dir: &std::path::Path,
    addr: &str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), kairos_server::ServeError>>,
) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let store = kairos_store::SqliteStore::open(&dir.join("data")).unwrap();
    let server = kairos_server::Server::new(std::sync::Arc::new(store));
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    (base, tx, serving)
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
