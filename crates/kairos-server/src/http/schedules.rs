//! Handlers for `/v1/schedules`: create, list, read, change, delete, trigger, preview.

use super::extract::{ApiJson, PathId};
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_core::schedule::{Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest};
use serde::Serialize;

/// `GET /v1/schedules` answer.
#[derive(Serialize)]
pub struct ScheduleList {
    schedules: Vec<Schedule>,
}

/// `POST /v1/schedules`: 201 with `next_run_at` filled; 409 for a taken name.
pub async fn create(
    State(engine): State<Engine>,
    body: ApiJson<ScheduleRequest>,
) -> Result<Response, ApiError> {
    let s = engine.create_schedule(body.value).await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// `GET /v1/schedules`.
pub async fn list(State(engine): State<Engine>) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList {
        schedules: engine.schedules().await?,
    }))
}

/// `GET /v1/schedules/{id}`.
pub async fn get(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(engine.schedule(id).await?))
}

/// `PATCH /v1/schedules/{id}`.
pub async fn patch(
    State(engine): State<Engine>,
    PathId(id): PathId,
    body: ApiJson<SchedulePatch>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(engine.update_schedule(id, body.value).await?))
}

/// `DELETE /v1/schedules/{id}`: 204; the runs it made stay.
pub async fn delete(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    engine.delete_schedule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/schedules/{id}/trigger`: 201 with the job of a run made now.
pub async fn trigger(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let job = engine.trigger_schedule(id).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// `POST /v1/schedules/preview`: the next fire times, creating nothing.
pub async fn preview(
    State(engine): State<Engine>,
    body: ApiJson<PreviewRequest>,
) -> Result<Json<Preview>, ApiError> {
    Ok(Json(engine.preview(body.value).await?))
}
