//! The Kairos server: the engine, and the HTTP API on top of it.
//!
//! - [`engine`]: what the server does, with no HTTP in it: long-poll leasing that wakes
//!   on commit, the timer that promotes due jobs and expires leases exactly on time,
//!   and housekeeping. It talks to storage only through the `Store` trait.
//! - [`http`]: the accept loop and connection timeouts, thin axum handlers that translate
//!   the v1 API to engine calls, the tower layers around them, and the one place where
//!   errors become `application/problem+json`.
//! - [`sink`]: the event log published to RabbitMQ and NATS, at least once and in order.
//! - [`feature`]: what a feature (tasks and notifications) plugs in: routes, their
//!   access rules, duties beside the engine.
//! - [`ui`]: the dashboard under `/ui`: server-rendered pages over the same engine
//!   calls, sessions in a cookie, CSRF tokens.
//! - [`metrics`]: the Prometheus metrics (`GET /metrics`), fed by the store's commits
//!   and the HTTP edge.
//! - [`Server`]: ties it together over a store the caller opened (so the binary picks the
//!   backend and tests pick the clock): start the engine, serve until the shutdown future
//!   resolves, then drain within the deadline and close the store.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store = Arc::new(kairos_store::SqliteStore::open("./kairos-data".as_ref())?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7676").await?;
//! kairos_server::Server::new(store)
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```

pub mod engine;
pub mod feature;
pub mod http;
pub mod metrics;
pub mod sink;
pub mod ui;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use engine::Engine;
use http::conn::ConnLimits;
use http::serve::ServeLimits;
use kairos_core::Limits;
use kairos_store::{Node, Store};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Layer, Service};

/// Server settings; [`Config::default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest job payload (and ack result) in bytes.
    pub max_payload_bytes: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// A request head must arrive within this of its first byte.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this of its head.
    pub body_timeout: Duration,
    /// An answer must be ready within this of the request's head (long-polls: plus
    /// their `wait`).
    pub request_timeout: Duration,
    /// A keep-alive connection without a request for this long is closed.
    pub idle_timeout: Duration,
    /// A client that reads none of an answer for this long is cut off.
    pub write_timeout: Duration,
    /// Most connections open at once; more are refused with 503 at once.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight before dropping them.
    pub shutdown_timeout: Duration,
    /// How long finished jobs are kept (completed and cancelled; dead).
    pub retention: kairos_core::Retention,
    /// The address this node advertises to the others (`GET /v1/cluster`); `None`: the
    /// address it listens on.
    pub advertise: Option<String>,
    /// Requests slower than this are logged (faster ones only at debug level).
    pub log_slow: Duration,
    /// The per-client rate limit; `None`: unlimited.
    pub rate_limit: Option<http::layers::limit::RateLimitConfig>,
    /// Metrics, request ids and the request log (off only to measure what they cost).
    pub instrument: bool,
    /// Bearer tokens and how they are checked; `None`: everything is allowed (refuse
    /// that off loopback: see [`http::layers::auth`]).
    pub auth: Option<http::layers::auth::AuthConfig>,
    /// Brokers the event log is published to.
    pub sinks: Vec<sink::SinkConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_payload_bytes: 1024 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            retention: kairos_core::Retention::default(),
            advertise: None,
            log_slow: Duration::from_secs(1),
            auth: None,
            rate_limit: None,
            instrument: true,
            sinks: Vec::new(),
        }
    }
}

/// Why the server could not run, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configured token key cannot be used.
    #[error(transparent)]
    Key(#[from] http::layers::auth::KeyError),
    /// The store did not close within the shutdown deadline.
    #[error("the store did not close within the shutdown deadline")]
    StoreCloseTimeout,
}

type RouterLayer = Box<dyn FnOnce(Router) -> Router + Send>;

/// A server over a store: `Server::new(store).layer(..).serve(listener, shutdown)`.
pub struct Server {
    store: Arc<dyn Store>,
    config: Config,
    layers: Vec<RouterLayer>,
    features: Vec<Arc<dyn feature::Feature>>,
}

impl Server {
    /// A server over `store`, with the default configuration.
    pub fn new(store: Arc<dyn Store>) -> Server {
        Server {
            store,
            config: Config::default(),
            layers: Vec::new(),
            features: Vec::new(),
        }
    }

    /// Serves `feature` too: its routes beside the API's, its duties beside the engine.
    pub fn feature(mut self, feature: impl feature::Feature) -> Server {
        self.features.push(Arc::new(feature));
        self
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// Wraps every route in `layer` (the first added is innermost), like
    /// [`axum::Router::layer`]: for metrics, auth and the like.
    pub fn layer<L>(mut self, layer: L) -> Server
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |r: Router| r.layer(layer)));
        self
    }

    /// Serves the API on `listener` until `shutdown` resolves; then stops accepting,
    /// ends waiting long-polls at once, lets in-flight requests finish within the
    /// shutdown deadline, and closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let c = self.config;
        let limits = Limits {
            max_payload_bytes: c.max_payload_bytes,
        };
        let node = Node {
            id: uuid::Uuid::now_v7(),
            address: match (&c.advertise, listener.local_addr()) {
                (Some(a), _) => a.clone(),
                (None, Ok(addr)) => addr.to_string(),
                (None, Err(_)) => "unknown".to_string(),
            },
            started_at: self.store.now(),
        };
        let verifier = match &c.auth {
            Some(a) => Some(Arc::new(http::layers::auth::Verifier::new(a)?)),
            None => None,
        };
        let metrics = Arc::new(metrics::Metrics::new());
        if c.instrument {
            self.store.signals().observe(metrics.clone());
        }
        let engine = Engine::start(self.store.clone(), limits, node, c.retention);
        sink::start(&engine, &c.sinks, metrics.clone());
        for f in &self.features {
            f.start(&engine);
        }
        // One limiter for the API and the dashboard: a client's budget is one.
        let limiter = c.rate_limit.as_ref().map(http::layers::limit::Limiter::new);
        let dashboard = ui::router(ui::Ui {
            engine: engine.clone(),
            metrics: metrics.clone(),
            sessions: Arc::new(ui::session::Sessions::new(
                c.auth.as_ref(),
                verifier.clone(),
                metrics.clone(),
            )),
            limiter: limiter.clone(),
        });
        let mut app = http::app(
            engine.clone(),
            dashboard,
            &self.features,
            http::RouteLimits {
                max_body_bytes: c.max_body_bytes,
                body_timeout: c.body_timeout,
                request_timeout: c.request_timeout,
            },
            http::layers::auth::Guard {
                verifier,
                metrics: metrics.clone(),
                rules: Default::default(),
            },
            limiter,
            http::layers::observe::Observe {
                metrics,
                log_slow: c.log_slow,
                throttled: Default::default(),
            },
            c.instrument,
        );
        for layer in self.layers {
            app = layer(app);
        }
        let serve_limits = ServeLimits {
            conn: ConnLimits {
                header_read_timeout: c.header_read_timeout,
                idle_timeout: c.idle_timeout,
                write_timeout: c.write_timeout,
                max_header_bytes: c.max_header_bytes,
            },
            max_connections: c.max_connections,
            shutdown_timeout: c.shutdown_timeout,
        };
        let stopping = engine.clone();
        // Serving ends only once this has run: long-polls are released before draining.
        let drained = http::serve::serve(listener, app, serve_limits, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            stopping.begin_shutdown();
        })
        .await;
        engine.stopped().await;
        // The store gets what is left of the deadline, and a few seconds at least.
        let close_by = (drained.stopping_since + c.shutdown_timeout)
            .max(tokio::time::Instant::now() + Duration::from_secs(5));
        match tokio::time::timeout_at(close_by, self.store.close()).await {
            Ok(()) => {
                tracing::info!(dropped_connections = drained.dropped, "store closed");
                Ok(())
            }
            Err(_) => {
                tracing::error!("the store did not close within the shutdown deadline");
                Err(ServeError::StoreCloseTimeout)
            }
        }
    }
}
