//! Tasks with reminders and notifications: the task manager of seeds 000 and 001, as a
//! Kairos feature built only on the engine's public API and its event bus.
//!
//! The flow: `POST /v1/tasks` stores a task and schedules its reminder, a delayed job in
//! the reserved queue [`model::REMINDER_QUEUE`] whose unique key names the task and its
//! remind time ([`tasks`]). When the job comes due, the built-in reminder worker
//! ([`reminder`]) checks the task still reminds at that time and emits `task.due` into
//! the event log. The notifications side ([`notifications`]), a durable subscriber of
//! the bus, turns each `task.due` into one notification per (task, remind time) and
//! announces it as `notification.created`, which the live stream follows. The two sides
//! share nothing but events: either could leave as its own service.
//!
//! - [`model`]: tasks, notifications and their rules.
//! - [`store`]: the feature's own tables ([`store::SqliteTasks`], [`store::PostgresTasks`]).
//! - [`http`]: the routes (`/v1/tasks`, `/v1/notifications`).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn kairos_store::Store>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let tasks = kairos_tasks::store::SqliteTasks::open("./kairos-data/tasks.sqlite3".as_ref())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7676").await?;
//! kairos_server::Server::new(store)
//!     .feature(kairos_tasks::Tasks::new(Arc::new(tasks)))
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```

pub mod http;
pub mod model;
pub mod notifications;
pub mod reminder;
pub mod store;
pub mod tasks;

use kairos_server::engine::Engine;
use kairos_server::feature::Feature;
use kairos_server::http::access::Rule;
use std::sync::Arc;
use store::TaskStore;
use utoipa_axum::router::OpenApiRouter;

/// The feature, over its store: serve it with [`kairos_server::Server::feature`].
#[derive(Clone)]
pub struct Tasks {
    store: Arc<dyn TaskStore>,
}

impl Tasks {
    /// The feature keeping its tasks and notifications in `store`.
    pub fn new(store: Arc<dyn TaskStore>) -> Tasks {
        Tasks { store }
    }
}

impl Feature for Tasks {
    fn routes(&self) -> OpenApiRouter<Engine> {
        http::routes(self.clone())
    }

    fn rules(&self) -> Vec<Rule> {
        http::RULES.to_vec()
    }

    fn start(&self, engine: &Engine) {
        engine.spawn(reminder::run(engine.clone(), self.store.clone()));
        engine.spawn(notifications::run(engine.clone(), self.store.clone()));
        let store = self.store.clone();
        let mut shutdown = engine.shutting_down();
        engine.spawn(async move {
            let _ = shutdown.wait_for(|s| *s).await;
            store.close().await;
        });
    }
}

/// How a duty of the feature waits after failing: [`kairos_core::Backoff::reconnect`],
/// and a warning once per outage (then quietly until it recovers).
pub(crate) struct Retry {
    backoff: kairos_core::Backoff,
    failures: u32,
    what: &'static str,
}

impl Retry {
    pub(crate) fn new(what: &'static str) -> Retry {
        Retry {
            backoff: kairos_core::Backoff::reconnect(),
            failures: 0,
            what,
        }
    }

    /// The duty works again.
    pub(crate) fn recovered(&mut self) {
        self.failures = 0;
    }

    /// Waits out the backoff after `error`; `false`: shutdown began meanwhile.
    pub(crate) async fn failed(
        &mut self,
        error: &(dyn std::fmt::Display + Sync),
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(error = %error, "{} failed; retrying with backoff", self.what);
        } else {
            tracing::debug!(error = %error, attempt = self.failures, "{} still failing", self.what);
        }
        let delay = self.backoff.delay(self.failures, fastrand::f64()).as_std();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.wait_for(|s| *s) => false,
        }
    }
}

/// The engine's clock to the microsecond, as the stores keep times.
pub(crate) fn now(engine: &Engine) -> kairos_core::Timestamp {
    let now = engine.store().now();
    kairos_core::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}
