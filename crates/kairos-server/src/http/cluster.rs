//! `GET /v1/cluster`: the nodes sharing the store, and which one leads.

use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use kairos_core::api::Cluster;

/// `GET /v1/cluster`.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", responses((status = 200, description = "The nodes sharing the store.", body = kairos_core::api::Cluster)))]
pub async fn get(State(engine): State<Engine>) -> Result<Json<Cluster>, ApiError> {
    Ok(Json(engine.cluster().await?))
}
