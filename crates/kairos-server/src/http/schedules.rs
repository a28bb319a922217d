//! Handlers for `/v1/schedules`: create, list, read, change, delete, trigger, preview.

use super::access::Access;
use super::extract::{ApiJson, PathId};
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kairos_core::api::DEFAULT_QUEUE;
use kairos_core::schedule::{Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest};
use serde::Serialize;

/// `GET /v1/schedules` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    schedules: Vec<Schedule>,
}

/// `POST /v1/schedules`: 201 with `next_run_at` filled; 409 for a taken name.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body(content = kairos_core::schedule::ScheduleRequest, example = json!({"name": "weekday-report", "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "job": {"kind": "report"}})),
    responses((status = 409, description = "The name is taken, or a run would share an unfinished job's unique_key."), (status = 201, description = "Created, with next_run_at.", body = kairos_core::schedule::Schedule)))]
pub async fn create(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    body: ApiJson<ScheduleRequest>,
) -> Result<Response, ApiError> {
    access.check(
        "job.queue",
        body.value.job.queue.as_deref().unwrap_or(DEFAULT_QUEUE),
    )?;
    let s = engine.create_schedule(body.value).await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", responses((status = 200, description = "Every schedule, by name.", body = ScheduleList)))]
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
) -> Result<Json<ScheduleList>, ApiError> {
    let mut schedules = engine.schedules().await?;
    schedules.retain(|s| access.sees(&s.job.queue));
    Ok(Json(ScheduleList { schedules }))
}

/// A schedule by id, absent unless the caller may see its runs' queue.
async fn visible(engine: &Engine, access: &Access, id: uuid::Uuid) -> Result<Schedule, ApiError> {
    let s = engine.schedule(id).await?;
    access.reveal(&s.job.queue)?;
    Ok(s)
}

#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = uuid::Uuid, Path, description = "The schedule's id.")), responses((status = 404, description = "No such schedule (or not one this token may see)."), (status = 200, description = "The schedule.", body = kairos_core::schedule::Schedule)))]
pub async fn get(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(visible(&engine, &access, id).await?))
}

#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = uuid::Uuid, Path, description = "The schedule's id.")), request_body(content = kairos_core::schedule::SchedulePatch, example = json!({"active": false})),
    responses((status = 404, description = "No such schedule (or not one this token may see)."), (status = 409, description = "The name is taken."), (status = 200, description = "The schedule as changed.", body = kairos_core::schedule::Schedule)))]
pub async fn patch(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
    body: ApiJson<SchedulePatch>,
) -> Result<Json<Schedule>, ApiError> {
    if access.is_limited() {
        visible(&engine, &access, id).await?;
        if let Some(job) = &body.value.job {
            access.check("job.queue", job.queue.as_deref().unwrap_or(DEFAULT_QUEUE))?;
        }
    }
    Ok(Json(engine.update_schedule(id, body.value).await?))
}

#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = uuid::Uuid, Path, description = "The schedule's id.")), responses((status = 404, description = "No such schedule (or not one this token may see)."), (status = 204, description = "Deleted; the runs it made stay.")))]
pub async fn delete(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    if access.is_limited() {
        visible(&engine, &access, id).await?;
    }
    engine.delete_schedule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/schedules/{id}/trigger", tag = "schedules", params(("id" = uuid::Uuid, Path, description = "The schedule's id.")), responses((status = 404, description = "No such schedule (or not one this token may see)."), (status = 201, description = "One run now, outside the timetable.", body = kairos_core::Job)))]
pub async fn trigger(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    if access.is_limited() {
        visible(&engine, &access, id).await?;
    }
    let job = engine.trigger_schedule(id).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[utoipa::path(post, path = "/v1/schedules/preview", tag = "schedules", request_body(content = kairos_core::schedule::PreviewRequest, example = json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "count": 5})),
    responses((status = 200, description = "The next fire times; nothing is created.", body = kairos_core::schedule::Preview)))]
pub async fn preview(
    State(engine): State<Engine>,
    body: ApiJson<PreviewRequest>,
) -> Result<Json<Preview>, ApiError> {
    Ok(Json(engine.preview(body.value).await?))
}
