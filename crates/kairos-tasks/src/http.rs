//! The feature's routes: `/v1/tasks` (create, list, read, change, delete, complete) and
//! `/v1/notifications` (list, read one, read all, and the live stream). Thin, like the
//! server's own handlers: they translate to [`Tasks`] calls, and errors become problem
//! answers through the server's one mapping.
//!
//! Tasks are not in any queue: a token limited to some queues reads and changes them
//! like any other token of its role.

use crate::Tasks;
use crate::model::{
    Notification, NotificationPage, NotificationQuery, Task, TaskPage, TaskPatch, TaskQuery,
    TaskRequest,
};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use kairos_core::event::{EventQuery, EventType};
use kairos_server::engine::Engine;
use kairos_server::http::access::{PRODUCE, READ, Rule};
use kairos_server::http::events::{resume_after, stream_of};
use kairos_server::http::extract::{ApiJson, ApiQuery, PathId};
use kairos_server::http::problem::ApiError;
use kairos_server::http::reply::Json;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Who may call each route: reads for any role, changes for admins and producers.
pub const RULES: &[Rule] = &[
    ("POST", "/v1/tasks", PRODUCE),
    ("GET", "/v1/tasks", READ),
    ("GET", "/v1/tasks/{id}", READ),
    ("PATCH", "/v1/tasks/{id}", PRODUCE),
    ("DELETE", "/v1/tasks/{id}", PRODUCE),
    ("POST", "/v1/tasks/{id}/complete", PRODUCE),
    ("GET", "/v1/notifications", READ),
    ("POST", "/v1/notifications/{id}/read", PRODUCE),
    ("POST", "/v1/notifications/read-all", PRODUCE),
    ("GET", "/v1/notifications/stream", READ),
];

/// The routes, with `tasks` for their handlers.
pub fn routes(tasks: Tasks) -> OpenApiRouter<Engine> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, patch, delete))
        .routes(routes!(complete))
        .routes(routes!(notifications))
        .routes(routes!(read))
        .routes(routes!(read_all))
        .routes(routes!(stream))
        .layer(Extension(tasks))
}

/// `POST /v1/tasks`: 201 with the task, its reminder scheduled.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks",
    request_body(content = TaskRequest, example = json!({"title": "Send the quarterly report", "due_at": "2027-01-15T09:00:00Z", "remind_before": "15m", "tags": ["finance"]})),
    responses((status = 503, description = "The reminder queue (kairos.tasks) is at its max_depth, or the store is unavailable: nothing was created; retry after Retry-After."), (status = 201, description = "Created; its reminder is scheduled for remind_at.", body = Task)))]
pub async fn create(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
    body: ApiJson<TaskRequest>,
) -> Result<Response, ApiError> {
    let task = tasks.create(&engine, body.value).await?;
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

/// `GET /v1/tasks`.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, description = "A page of tasks, soonest due first.", body = TaskPage)))]
pub async fn list(
    Extension(tasks): Extension<Tasks>,
    ApiQuery(query): ApiQuery<TaskQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    Ok(Json(tasks.tasks(query).await?))
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = uuid::Uuid, Path, description = "The task's id.")),
    responses((status = 404, description = "No such task."), (status = 200, description = "The task.", body = Task)))]
pub async fn get(
    Extension(tasks): Extension<Tasks>,
    PathId(id): PathId,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(tasks.task(id).await?))
}

/// `PATCH /v1/tasks/{id}`.
#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = uuid::Uuid, Path, description = "The task's id.")),
    request_body(content = TaskPatch, example = json!({"due_at": "2027-01-16T09:00:00Z"})),
    responses((status = 404, description = "No such task."), (status = 503, description = "The reminder queue (kairos.tasks) is at its max_depth, or the store is unavailable: nothing was changed; retry after Retry-After."), (status = 200, description = "The task as changed; a new remind time reschedules its reminder.", body = Task)))]
pub async fn patch(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
    PathId(id): PathId,
    body: ApiJson<TaskPatch>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(tasks.change(&engine, id, body.value).await?))
}

/// `DELETE /v1/tasks/{id}`.
#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = uuid::Uuid, Path, description = "The task's id.")),
    responses((status = 404, description = "No such task."), (status = 204, description = "Deleted, with its notifications; its reminder is cancelled.")))]
pub async fn delete(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    tasks.delete(&engine, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/tasks/{id}/complete`.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "tasks", params(("id" = uuid::Uuid, Path, description = "The task's id.")),
    responses((status = 404, description = "No such task."), (status = 200, description = "The task, done; its reminder is cancelled.", body = Task)))]
pub async fn complete(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
    PathId(id): PathId,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(tasks.complete(&engine, id).await?))
}

/// `GET /v1/notifications`.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(NotificationQuery),
    responses((status = 200, description = "A page of notifications, newest first.", body = NotificationPage)))]
pub async fn notifications(
    Extension(tasks): Extension<Tasks>,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    Ok(Json(tasks.notifications(query).await?))
}

/// `POST /v1/notifications/{id}/read`.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", params(("id" = uuid::Uuid, Path, description = "The notification's id.")),
    responses((status = 404, description = "No such notification."), (status = 200, description = "The notification, read (read_at kept from the first time).", body = Notification)))]
pub async fn read(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
    PathId(id): PathId,
) -> Result<Json<Notification>, ApiError> {
    Ok(Json(tasks.read(&engine, id).await?))
}

/// `POST /v1/notifications/read-all`'s answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadAll {
    /// How many notifications were unread.
    pub read: u64,
}

/// `POST /v1/notifications/read-all`.
#[utoipa::path(post, path = "/v1/notifications/read-all", tag = "notifications",
    responses((status = 200, description = "Every unread notification is read now.", body = ReadAll)))]
pub async fn read_all(
    State(engine): State<Engine>,
    Extension(tasks): Extension<Tasks>,
) -> Result<Json<ReadAll>, ApiError> {
    Ok(Json(ReadAll {
        read: tasks.read_all(&engine).await?,
    }))
}

/// `GET /v1/notifications/stream` query parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this event id (`Last-Event-ID` wins); default: new notifications only.
    #[serde(default, deserialize_with = "kairos_core::api::empty_as_none")]
    #[param(value_type = Option<String>, pattern = r"^\+?[0-9]*$")]
    pub after: Option<u64>,
}

/// `GET /v1/notifications/stream`: Server-Sent Events, one per notification made
/// (`id:` the event id to resume after, `data:` the notification).
#[utoipa::path(get, path = "/v1/notifications/stream", tag = "notifications",
    params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (wins over after).")),
    responses((status = 200, description = "A text/event-stream: each notification as `id: <event id>` and `data: <the notification JSON>`.", content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(engine): State<Engine>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    let after = resume_after(&headers, query.after)?;
    let filter = EventQuery {
        types: Some(EventType::NotificationCreated.as_str().to_string()),
        ..EventQuery::default()
    }
    .validate()?;
    let tail = engine.tail(filter, after).await?;
    Ok(stream_of(tail, |e| e.data.get().to_string()))
}
