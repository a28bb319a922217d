//! `GET /metrics`: the Prometheus exposition (OpenMetrics text), its gauges read from the
//! kept counts, the worker registry and the writer's queue at scrape time.

use crate::engine::Engine;
use crate::http::problem::ApiError;
use crate::metrics::Metrics;
use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "Prometheus metrics, OpenMetrics text.", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub async fn get(
    State(engine): State<Engine>,
    Extension(metrics): Extension<Arc<Metrics>>,
) -> Result<Response, ApiError> {
    let queues = engine.queues().await?;
    let workers = engine.workers().await?.workers;
    let body = metrics.render(&queues, &workers, engine.store().waiting_writes());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}
