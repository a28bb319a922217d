//! Handlers for the worker protocol: lease, ack, heartbeat. Ack and heartbeat answer per
//! item; one refused item (stale token, unknown job) does not refuse the others.

use super::extract::ApiJson;
use super::problem::{ApiError, item_problem};
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use kairos_core::api::{
    AckRequest, AckResult, HeartbeatRequest, HeartbeatResult, LeaseRequest, LeasedJob,
};
use serde::Serialize;

/// `POST /v1/lease` answer.
#[derive(Serialize)]
pub struct Leased {
    jobs: Vec<LeasedJob>,
}

/// `POST /v1/lease`: up to `max` jobs, waiting up to `wait` for some.
pub async fn lease(
    State(engine): State<Engine>,
    body: ApiJson<LeaseRequest>,
) -> Result<Json<Leased>, ApiError> {
    let jobs = engine.lease(body.value).await?;
    Ok(Json(Leased { jobs }))
}

/// `POST /v1/ack` answer.
#[derive(Serialize)]
pub struct Acked {
    results: Vec<AckResult>,
}

/// `POST /v1/ack`.
pub async fn ack(
    State(engine): State<Engine>,
    body: ApiJson<AckRequest>,
) -> Result<Json<Acked>, ApiError> {
    let results = engine
        .ack(body.value)
        .await?
        .into_iter()
        .map(|(id, r)| match r {
            Ok(state) => AckResult {
                id,
                ok: true,
                state: Some(state),
                error: None,
            },
            Err(e) => AckResult {
                id,
                ok: false,
                state: None,
                error: Some(item_problem(&e)),
            },
        })
        .collect();
    Ok(Json(Acked { results }))
}

/// `POST /v1/heartbeat` answer.
#[derive(Serialize)]
pub struct Extended {
    results: Vec<HeartbeatResult>,
}

/// `POST /v1/heartbeat`.
pub async fn heartbeat(
    State(engine): State<Engine>,
    body: ApiJson<HeartbeatRequest>,
) -> Result<Json<Extended>, ApiError> {
    let results = engine
        .heartbeat(body.value)
        .await?
        .into_iter()
        .map(|(id, r)| match r {
            Ok(e) => HeartbeatResult {
                id,
                ok: true,
                lease_expires_at: Some(e.lease_expires_at),
                cancel_requested: Some(e.cancel_requested),
                error: None,
            },
            Err(e) => HeartbeatResult {
                id,
                ok: false,
                lease_expires_at: None,
                cancel_requested: None,
                error: Some(item_problem(&e)),
            },
        })
        .collect();
    Ok(Json(Extended { results }))
}
