//! Handlers for `/v1/queues`: list, read, pause/resume and limits, and redrive of dead jobs.

use super::access::Access;
use super::extract::{ApiJson, PathName};
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::Extension;
use axum::extract::State;
use kairos_core::Queue;
use kairos_core::api::{QueueList, QueuePatch};
use serde::Serialize;

/// `GET /v1/queues`.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", responses((status = 200, description = "Every queue, by name.", body = kairos_core::api::QueueList)))]
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
) -> Result<Json<QueueList>, ApiError> {
    let mut queues = engine.queues().await?;
    queues.retain(|q| access.sees(&q.name));
    Ok(Json(QueueList { queues }))
}

/// `GET /v1/queues/{name}`: 404 for a queue that never held a job and was never patched.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues", params(("name" = String, Path, description = "The queue's name.", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")), responses((status = 404, description = "No such queue (it never held a job and was never patched)."), (status = 200, description = "The queue.", body = kairos_core::Queue)))]
pub async fn get(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathName(name): PathName,
) -> Result<Json<Queue>, ApiError> {
    access.check("name", &name)?;
    Ok(Json(engine.queue(&name).await?))
}

/// `PATCH /v1/queues/{name}` with any of `paused`, `max_depth`, `concurrency`, `rate`.
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues", params(("name" = String, Path, description = "The queue's name.", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")), request_body(content = kairos_core::api::QueuePatch, example = json!({"concurrency": 20, "rate": "100/s", "max_depth": null})),
    responses((status = 200, description = "The queue as changed (created if new).", body = kairos_core::Queue)))]
pub async fn patch(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathName(name): PathName,
    body: ApiJson<QueuePatch>,
) -> Result<Json<Queue>, ApiError> {
    access.check("name", &name)?;
    Ok(Json(engine.change_queue(&name, body.value).await?))
}

/// `POST /v1/queues/{name}/retry-dead` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Retried {
    retried: u64,
}

/// `POST /v1/queues/{name}/retry-dead`.
#[utoipa::path(post, path = "/v1/queues/{name}/retry-dead", tag = "queues", params(("name" = String, Path, description = "The queue's name.", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")), responses((status = 404, description = "No such queue (it never held a job and was never patched)."), (status = 200, description = "How many dead jobs went back to available.", body = Retried)))]
pub async fn retry_dead(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathName(name): PathName,
) -> Result<Json<Retried>, ApiError> {
    access.check("name", &name)?;
    Ok(Json(Retried {
        retried: engine.retry_dead(&name).await?,
    }))
}
