//! Health probes: `live` answers while the process serves; `ready` also checks the store.

use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /health/live`.
#[utoipa::path(get, path = "/health/live", tag = "health", security(()), responses((status = 200, description = "The process serves HTTP.", body = Object, example = json!({"status": "ok"}))))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/ready` (and `GET /health`, the path many tools probe): 503 when the store
/// does not answer, its disk is full, or its files are damaged.
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()), responses((status = 200, description = "The store answers, its disk has room, no damage was met.", body = Object, example = json!({"status": "ok"}))))]
pub async fn ready(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    engine
        .ready()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store does not answer: {e}")))?;
    Ok(Json(json!({"status": "ok"})))
}

/// `GET /health`: the same as `GET /health/ready`, on the path many tools probe.
#[utoipa::path(get, path = "/health", tag = "health", security(()), responses((status = 200, description = "As /health/ready.", body = Object, example = json!({"status": "ok"}))))]
pub async fn probe(engine: State<Engine>) -> Result<Json<Value>, ApiError> {
    ready(engine).await
}
