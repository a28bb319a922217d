//! The Kairos server: the engine, and the HTTP API on top of it.
//!
//! - [`engine`]: what the server does, with no HTTP in it: long-poll leasing that wakes
//!   on commit, the timer that promotes due jobs and expires leases exactly on time,
//!   and housekeeping. It talks to storage only through the `Store` trait.
//! - [`http`]: thin axum handlers that translate the v1 API to engine calls, plus the
//!   one place where errors become `application/problem+json`.
//! - [`run`]: binds it all together: open the store, start the engine, serve until the
//!   shutdown future resolves, then drain and close.

pub mod engine;
pub mod http;

use engine::Engine;
use kairos_core::Limits;
use kairos_store::{SqliteStore, Store, StoreError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// Largest job payload (and ack result) in bytes.
    pub max_payload_bytes: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl Config {
    /// Defaults: 1 MiB payloads, 32 MiB request bodies.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            max_payload_bytes: 1024 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the embedded store in `config.data_dir` and serves the API on `listener` until
/// `shutdown` resolves; then stops accepting, finishes in-flight requests (waiting
/// leases answer at once), and closes the store cleanly.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir)?);
    let limits = Limits {
        max_payload_bytes: config.max_payload_bytes,
    };
    let engine = Engine::start(store.clone(), limits);
    let app = http::app(engine.clone(), config.max_body_bytes);
    let stopping = engine.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            stopping.begin_shutdown();
        })
        .await;
    engine.begin_shutdown();
    engine.stopped().await;
    store.close().await;
    tracing::info!("store closed");
    served.map_err(ServeError::Io)
}
