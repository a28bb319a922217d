//! The v1 HTTP API: routes, and thin handlers that translate requests to engine calls.
//!
//! - [`serve`] and [`conn`]: the accept loop and each connection's timeouts (on hyper).
//! - [`layers`]: cross-cutting tower layers (deadlines; request ids, metrics and logs).
//! - [`extract`]: the JSON, query and path extractors, so malformed input gets our
//!   problem answer naming the field.
//! - [`problem`]: the single mapping from errors to `application/problem+json`.
//! - [`reply`]: JSON answers.
//! - [`jobs`], [`workers`], [`queues`], [`schedules`], [`events`], [`cluster`],
//!   [`health`], [`metrics`]: the handlers, by resource, each with its `#[utoipa::path]`.
//! - [`openapi`]: the OpenAPI document those annotations make, and Swagger UI.

pub mod access;
pub mod cluster;
pub mod conn;
pub mod events;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod queues;
pub mod reply;
pub mod schedules;
pub mod serve;
pub mod workers;

use crate::engine::Engine;
use crate::feature::Feature;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use kairos_core::validate::MAX_WAIT;
use layers::auth::{Guard, authorize};
use layers::deadline::{Deadlines, deadline};
use layers::observe::{Observe, observe};
use problem::ApiError;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

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

/// The API's routes and the document describing them, with `features`' routes: every
/// route is registered through `utoipa_axum`'s `routes!`, so none is served undescribed;
/// and none without an access rule (this panics on one, so a test catches it before
/// anyone serves it).
pub fn routes(features: &[Arc<dyn Feature>]) -> Routes {
    let leasing = OpenApiRouter::new().routes(routes!(workers::lease));
    let normal = OpenApiRouter::new()
        .routes(routes!(jobs::enqueue, jobs::list))
        .routes(routes!(jobs::enqueue_batch))
        .routes(routes!(jobs::get, jobs::delete))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(workers::ack))
        .routes(routes!(workers::heartbeat))
        .routes(routes!(queues::list))
        .routes(routes!(queues::get, queues::patch))
        .routes(routes!(queues::retry_dead))
        .routes(routes!(schedules::create, schedules::list))
        .routes(routes!(schedules::preview))
        .routes(routes!(schedules::get, schedules::patch, schedules::delete))
        .routes(routes!(schedules::trigger))
        .routes(routes!(events::list))
        .routes(routes!(events::stream))
        .routes(routes!(cluster::get))
        .routes(routes!(workers::list))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::probe))
        .routes(routes!(metrics::get));
    let normal = features
        .iter()
        .fold(normal, |routes, f| routes.merge(f.routes()));
    let rules = access::Rules::with(features.iter().flat_map(|f| f.rules()).collect());
    let (leasing, leasing_doc) = leasing.split_for_parts();
    let (normal, mut doc) = normal.split_for_parts();
    doc.merge(leasing_doc);
    let doc = openapi::finish(doc);
    for (method, path) in openapi::routes(&doc) {
        assert!(
            rules.rule(&method, &path).is_some(),
            "route {method} {path} has no rule in http::access::RULES (or its feature's)"
        );
    }
    Routes {
        normal,
        leasing,
        doc,
        rules,
    }
}

/// What [`routes`] makes.
pub struct Routes {
    /// Every route but the long-polls.
    pub normal: Router<Engine>,
    /// The long-polls (their deadline is longer).
    pub leasing: Router<Engine>,
    /// The OpenAPI document describing them all.
    pub doc: utoipa::openapi::OpenApi,
    /// Who may call each.
    pub rules: access::Rules,
}

/// The whole API as a router (`features`' routes included), over a running engine: its
/// callers checked by `guard` (with the routes' rules), its requests observed by
/// `observed` (unless `instrument` is off). `dashboard` (the `/ui` routes, which check
/// their own sessions) is served beside it, under the same deadlines and observation.
#[allow(clippy::too_many_arguments)]
pub fn app(
    engine: Engine,
    dashboard: Router<Engine>,
    features: &[Arc<dyn Feature>],
    limits: RouteLimits,
    mut guard: Guard,
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
    let Routes {
        normal: routes,
        leasing,
        doc,
        rules,
    } = routes(features);
    guard.rules = rules;
    let leasing = leasing.layer(from_fn_with_state(long_poll, deadline));
    let docs: Router<Engine> = SwaggerUi::new(openapi::UI_PATH)
        .url(openapi::DOCUMENT_PATH, doc)
        .into();
    let app = routes
        .merge(docs)
        .layer(from_fn_with_state(normal, deadline))
        .merge(leasing)
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(from_fn_with_state(limiter, layers::limit::limit))
        .layer(from_fn_with_state(guard, authorize))
        .merge(dashboard.layer(from_fn_with_state(normal, deadline)))
        .layer(axum::Extension(observed.metrics.clone()));
    let app = if instrument {
        app.layer(from_fn_with_state(observed, observe))
    } else {
        app
    };
    app.with_state(engine)
}
