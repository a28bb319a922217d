//! The v1 HTTP API: routes, and thin handlers that translate requests to engine calls.
//!
//! - [`extract`]: the JSON and query extractors, so malformed input gets our problem
//!   answer naming the field.
//! - [`problem`]: the single mapping from errors to `application/problem+json`.
//! - [`reply`]: JSON answers.
//! - [`jobs`], [`workers`], [`queues`], [`schedules`], [`health`]: the handlers, by resource.

pub mod extract;
pub mod health;
pub mod jobs;
pub mod problem;
pub mod queues;
pub mod reply;
pub mod schedules;
pub mod workers;

use crate::engine::Engine;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use problem::ApiError;

/// The whole API as a router, over a running engine.
pub fn app(engine: Engine, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route("/v1/jobs/batch", post(jobs::enqueue_batch))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/lease", post(workers::lease))
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
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(engine)
}
