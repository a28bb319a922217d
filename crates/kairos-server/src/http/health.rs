//! Health probes: `live` answers while the process serves; `ready` also checks the store.

use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/ready` (and `GET /health`, the path many tools probe): 503 when the store
/// does not answer, its disk is full, or its files are damaged.
pub async fn ready(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    engine
        .ready()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the store does not answer: {e}")))?;
    Ok(Json(json!({"status": "ok"})))
}
