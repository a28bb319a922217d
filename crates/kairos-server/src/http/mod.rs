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
use axum::routing::{get, post};
use kairos_core::validate::MAX_WAIT;
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

/// The whole API as a router, over a running engine, its requests observed by `observed`.
pub fn app(engine: Engine, limits: RouteLimits, observed: Observe) -> Router {
    let normal = Deadlines {
        body: limits.body_timeout,
        request: limits.request_timeout,
    };
    let long_poll = Deadlines {
        request: limits.request_timeout + MAX_WAIT.as_std(),
        ..normal
    };
    let leasing = Router::new()
        .route("/v1/lease", post(workers::lease))
        .layer(from_fn_with_state(long_poll, deadline));
    Router::new()
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/jobs/batch", post(jobs::enqueue_batch))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/ack", post(workers::ack))
        .route("/v1/heartbeat", post(workers::heartbeat))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}", get(queues::get).patch(queues::patch))
        .route("/v1/queues/{name}/retry-dead", post(queues::retry_dead))
        .route(
            "/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route("/v1/schedules/preview", post(schedules::preview))
        .route(
            "/v1/schedules/{id}",
            get(schedules::get)
                .patch(schedules::patch)
                .delete(schedules::delete),
        )
        .route("/v1/schedules/{id}/trigger", post(schedules::trigger))
        .route("/v1/cluster", get(cluster::get))
        .route("/v1/workers", get(workers::list))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health", get(health::ready))
        .route("/metrics", get(metrics::get))
        .layer(from_fn_with_state(normal, deadline))
        .merge(leasing)
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::Extension(observed.metrics.clone()))
        .layer(from_fn_with_state(observed, observe))
        .with_state(engine)
}
