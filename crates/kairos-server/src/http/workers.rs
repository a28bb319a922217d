//! Handlers for the worker protocol: lease, ack, heartbeat. Ack and heartbeat answer per
//! item; one refused item (stale token, unknown job) does not refuse the others.

use super::access::Access;
use super::extract::ApiJson;
use super::problem::{ApiError, item_problem};
use super::reply::Json;
use crate::engine::{Caller, Engine};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use kairos_core::api::{
    AckRequest, AckResult, HeartbeatRequest, HeartbeatResult, LeaseRequest, LeasedJob, WorkerList,
};

/// What a worker's headers say about it.
fn caller(headers: &HeaderMap) -> Caller {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    Caller {
        hostname: text("x-kairos-worker-hostname"),
        version: text("x-kairos-worker-version"),
    }
}

/// `GET /v1/workers`: the workers heard from in the last day (for a token limited to
/// some queues, those working any of them).
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
) -> Result<Json<WorkerList>, ApiError> {
    let mut list = engine.workers().await?;
    if access.is_limited() {
        list.workers
            .retain(|w| w.queues.iter().any(|q| access.sees(q)));
    }
    Ok(Json(list))
}
use serde::Serialize;

/// `POST /v1/lease` answer.
#[derive(Serialize)]
pub struct Leased {
    jobs: Vec<LeasedJob>,
}

/// `POST /v1/lease`: up to `max` jobs, waiting up to `wait` for some.
pub async fn lease(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: ApiJson<LeaseRequest>,
) -> Result<Json<Leased>, ApiError> {
    for (i, q) in body.value.queues.iter().enumerate() {
        access.check(&format!("queues[{i}]"), q)?;
    }
    let jobs = engine.lease(body.value, &caller(&headers)).await?;
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
    headers: HeaderMap,
    body: ApiJson<AckRequest>,
) -> Result<Json<Acked>, ApiError> {
    let results = engine
        .ack(body.value, &caller(&headers))
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
    headers: HeaderMap,
    body: ApiJson<HeartbeatRequest>,
) -> Result<Json<Extended>, ApiError> {
    let results = engine
        .heartbeat(body.value, &caller(&headers))
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
