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
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
) -> Result<Json<QueueList>, ApiError> {
    let mut queues = engine.queues().await?;
    queues.retain(|q| access.sees(&q.name));
    Ok(Json(QueueList { queues }))
}

/// `GET /v1/queues/{name}`: 404 for a queue that never held a job and was never patched.
pub async fn get(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathName(name): PathName,
) -> Result<Json<Queue>, ApiError> {
    access.check("name", &name)?;
    Ok(Json(engine.queue(&name).await?))
}

/// `PATCH /v1/queues/{name}` with any of `paused`, `max_depth`, `concurrency`, `rate`.
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
#[derive(Serialize)]
pub struct Retried {
    retried: u64,
}

/// `POST /v1/queues/{name}/retry-dead`.
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
