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
#[utoipa::path(get, path = "/v1/workers", tag = "workers", responses((status = 200, description = "The workers heard from in the last day.", body = kairos_core::api::WorkerList)))]
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
) -> Result<Json<WorkerList>, ApiError> {
    let mut list = engine.workers().await?;
    list.workers.retain(|w| access.sees_worker(w));
    Ok(Json(list))
}
use serde::Serialize;

/// `POST /v1/lease` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Leased {
    jobs: Vec<LeasedJob>,
}

/// `POST /v1/lease`: up to `max` jobs, waiting up to `wait` for some.
#[utoipa::path(post, path = "/v1/lease", tag = "workers", request_body(content = kairos_core::api::LeaseRequest, example = json!({"queues": ["email"], "worker": "worker-1", "max": 10, "wait": "30s"})),
    params(("X-Kairos-Worker-Hostname" = Option<String>, Header, description = "Shown in the worker registry."), ("X-Kairos-Worker-Version" = Option<String>, Header, description = "Shown in the worker registry.")),
    responses((status = 200, description = "Up to max jobs (none when wait passed first).", body = Leased)))]
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
#[derive(Serialize, utoipa::ToSchema)]
pub struct Acked {
    results: Vec<AckResult>,
}

/// `POST /v1/ack`.
#[utoipa::path(post, path = "/v1/ack", tag = "workers", request_body(content = kairos_core::api::AckRequest, example = json!({"worker": "worker-1", "results": [{"id": "0190b0e0-0000-7000-8000-000000000001", "lease_token": "5f0c7a52-8f0e-4d5b-9a53-000000000001", "outcome": "completed"}]})),
    responses((status = 200, description = "One result per item, each ok or refused on its own.", body = Acked)))]
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
#[derive(Serialize, utoipa::ToSchema)]
pub struct Extended {
    results: Vec<HeartbeatResult>,
}

/// `POST /v1/heartbeat`.
#[utoipa::path(post, path = "/v1/heartbeat", tag = "workers", request_body(content = kairos_core::api::HeartbeatRequest, example = json!({"worker": "worker-1", "leases": [{"id": "0190b0e0-0000-7000-8000-000000000001", "lease_token": "5f0c7a52-8f0e-4d5b-9a53-000000000001", "extend": "30s"}]})),
    responses((status = 200, description = "One result per lease: its new expiry and whether cancel was requested.", body = Extended)))]
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
