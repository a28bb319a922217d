//! The v1 HTTP API: routes, and thin handlers that translate requests to engine calls.
//!
//! - [`serve`] and [`conn`]: the accept loop and each connection's timeouts (on hyper).
//! - [`layers`]: cross-cutting tower layers (deadlines; request ids, metrics and logs).
//! - [`extract`]: the JSON, query and path extractors, so malformed input gets our
//!   problem answer naming the field.
//! - [`problem`]: the single mapping from errors to `application/problem+json`.
//! - [`reply`]: JSON answers.
//! - [`jobs`], [`workers`], [`queues`], [`schedules`], [`cluster`], [`health`],
//!   [`metrics`]: the handlers, by resource.

pub mod access;
pub mod cluster;
pub mod conn;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod layers;
pub mod metrics;
pub mod problem;
pub mod queues;
pub mod reply;
pub mod schedules;
pub mod serve;
pub mod workers;

use crate::engine::Engine;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::MethodRouter;
use axum::routing::{get, post};
use kairos_core::validate::MAX_WAIT;
use layers::auth::{Guard, authorize};
use layers::deadline::{Deadlines, deadline};
use layers::observe::{Observe, observe};
use problem::ApiError;
use std::time::Duration;

/// What the routes need to know of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// From a request's head to its body's end.
    pub body_timeout: Duration,
    /// From a request's head to its answer (long-polls: plus their `wait`).
    pub request_timeout: Duration,
}

/// Routes that cannot exist without an access rule.
trait Guarded {
    /// [`Router::route`], refusing a path the access table has no rule for.
    fn at(self, path: &'static str, methods: MethodRouter<Engine>) -> Self;
}

impl Guarded for Router<Engine> {
    fn at(self, path: &'static str, methods: MethodRouter<Engine>) -> Self {
        assert!(
            !access::methods(path).is_empty(),
            "route {path} has no rule in http::access::RULES"
        );
        self.route(path, methods)
    }
}

/// The whole API as a router, over a running engine: its callers checked by `guard`,
/// its requests observed by `observed` (unless `instrument` is off).
pub fn app(
    engine: Engine,
    limits: RouteLimits,
    guard: Guard,
    limiter: Option<layers::limit::Limiter>,
    observed: Observe,
    instrument: bool,
) -> Router {
    let normal = Deadlines {
        body: limits.body_timeout,
        request: limits.request_timeout,
    };
    let long_poll = Deadlines {
        request: limits.request_timeout + MAX_WAIT.as_std(),
        ..normal
    };
    let leasing = Router::new()
        .at("/v1/lease", post(workers::lease))
        .layer(from_fn_with_state(long_poll, deadline));
    let app = Router::new()
        .at("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .at("/v1/jobs/batch", post(jobs::enqueue_batch))
        .at("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .at("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .at("/v1/jobs/{id}/retry", post(jobs::retry))
        .at("/v1/ack", post(workers::ack))
        .at("/v1/heartbeat", post(workers::heartbeat))
        .at("/v1/queues", get(queues::list))
        .at("/v1/queues/{name}", get(queues::get).patch(queues::patch))
        .at("/v1/queues/{name}/retry-dead", post(queues::retry_dead))
        .at(
            "/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .at("/v1/schedules/preview", post(schedules::preview))
        .at(
            "/v1/schedules/{id}",
            get(schedules::get)
                .patch(schedules::patch)
                .delete(schedules::delete),
        )
        .at("/v1/schedules/{id}/trigger", post(schedules::trigger))
        .at("/v1/cluster", get(cluster::get))
        .at("/v1/workers", get(workers::list))
        .at("/health/live", get(health::live))
        .at("/health/ready", get(health::ready))
        .at("/health", get(health::ready))
        .at("/metrics", get(metrics::get))
        .layer(from_fn_with_state(normal, deadline))
        .merge(leasing)
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(from_fn_with_state(limiter, layers::limit::limit))
        .layer(from_fn_with_state(guard, authorize))
        .layer(axum::Extension(observed.metrics.clone()));
    let app = if instrument {
        app.layer(from_fn_with_state(observed, observe))
    } else {
        app
    };
    app.with_state(engine)
}
