//! Handlers for `/v1/jobs`: enqueue (one and batch, with `Idempotency-Key`), read, list,
//! cancel, retry, delete.

use super::access::Access;
use super::extract::{ApiJson, ApiQuery, PathId};
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kairos_core::api::{
    BatchRequest, DEFAULT_QUEUE, EnqueueRequest, EnqueuedJob, JobBatch, JobBatchMinimal, ListQuery,
};
use kairos_core::{Invalid, Job};
use kairos_store::IdempotencyKey;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` header, scoped to the route so one key can't replay another route.
fn idempotency(
    headers: &HeaderMap,
    scope: &str,
    fingerprint: u64,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            Invalid::field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
            )
        })?;
    Ok(Some(IdempotencyKey {
        key: format!("{scope}:{key}"),
        fingerprint,
    }))
}

/// The producer's W3C trace context (a malformed `traceparent` is ignored).
fn trace(headers: &HeaderMap) -> Option<kairos_core::Trace> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    kairos_core::Trace::from_headers(text("traceparent"), text("tracestate"))
}

/// `POST /v1/jobs`: 201 with the new job, or 200 with the unfinished job holding the
/// same unique key.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body(content = kairos_core::api::EnqueueRequest, example = json!({"queue": "email", "kind": "send_welcome", "payload": {"user": 42}, "delay": "10m"})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeat of this request within 24 h answer the first answer, creating nothing (1 to 255 visible ASCII characters)."), ("traceparent" = Option<String>, Header, description = "W3C trace context, stored with the job and handed to its worker."), ("tracestate" = Option<String>, Header, description = "W3C trace state, with traceparent.")),
    responses((status = 503, description = "Transient: retry after Retry-After; `queue-full` when the queue holds its max_depth."), (status = 422, description = "Invalid fields, or an Idempotency-Key reused for a different body."), (status = 201, description = "Created.", body = kairos_core::Job), (status = 200, description = "An unfinished job of the queue holds the same unique_key: that job.", body = kairos_core::Job)))]
pub async fn enqueue(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    access.check(
        "queue",
        body.value.queue.as_deref().unwrap_or(DEFAULT_QUEUE),
    )?;
    let key = idempotency(&headers, &access.key_scope("jobs"), body.fingerprint)?;
    let mut out = engine.enqueue(body.value, key, trace(&headers)).await?;
    let (job, created) = out.jobs.remove(0);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job)).into_response())
}

/// `POST /v1/jobs/batch`: 201 with the jobs in request order, all or nothing.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body(content = kairos_core::api::BatchRequest, example = json!({"jobs": [{"kind": "resize", "payload": {"image": 1}}, {"kind": "resize", "payload": {"image": 2}}]})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeat of this request within 24 h answer the first answer, creating nothing (1 to 255 visible ASCII characters)."), ("traceparent" = Option<String>, Header, description = "W3C trace context, stored with the job and handed to its worker."), ("tracestate" = Option<String>, Header, description = "W3C trace state, with traceparent."),
        ("Prefer" = Option<String>, Header, description = "`return=minimal`: answer only each job's id, state and whether this request created it (`Preference-Applied: return=minimal` says it was applied).")),
    responses((status = 503, description = "Transient: retry after Retry-After; `queue-full` when a queue would pass its max_depth."), (status = 422, description = "Invalid fields (named `jobs[i].field`), or an Idempotency-Key reused for a different body."), (status = 201, description = "All created (or deduplicated), in request order; all or nothing. The whole jobs, or with `Prefer: return=minimal` their ids, states and `created`.", body = BatchAnswer)))]
pub async fn enqueue_batch(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    for (i, job) in body.value.jobs.iter().enumerate() {
        let queue = job.queue.as_deref().unwrap_or(DEFAULT_QUEUE);
        access.check(&format!("jobs[{i}].queue"), queue)?;
    }
    let key = idempotency(&headers, &access.key_scope("batch"), body.fingerprint)?;
    let out = engine
        .enqueue_batch(body.value, key, trace(&headers))
        .await?;
    if prefers_minimal(&headers) {
        let jobs = out
            .jobs
            .iter()
            .map(|(j, created)| EnqueuedJob::of(j, *created))
            .collect();
        let applied = [("preference-applied", "return=minimal")];
        let answer = BatchAnswer::Minimal(JobBatchMinimal { jobs });
        return Ok((StatusCode::CREATED, applied, Json(answer)).into_response());
    }
    let jobs = out.jobs.into_iter().map(|(j, _)| j).collect();
    let answer = BatchAnswer::Whole(JobBatch { jobs });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The answer of `POST /v1/jobs/batch`: the whole jobs, or the lean form a client asked
/// for with `Prefer: return=minimal`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchAnswer {
    Whole(JobBatch),
    Minimal(JobBatchMinimal),
}

/// Whether the request's `Prefer` headers (RFC 7240: comma-separated preferences, each
/// `token[=value]` with optional `;` parameters, the token case-insensitive) ask for
/// `return=minimal`.
fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| pref.split(';').next())
        .filter_map(|pref| pref.split_once('='))
        .any(|(token, value)| {
            token.trim().eq_ignore_ascii_case("return")
                && value
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("minimal")
        })
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses((status = 404, description = "No such job (or not one this token may see)."), (status = 200, description = "The job.", body = kairos_core::Job)))]
pub async fn get(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    let job = engine.job(id).await?;
    access.reveal(&job.queue)?;
    Ok(Json(job))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(kairos_core::api::ListQuery), responses((status = 200, description = "Newest first; pass next_cursor as cursor for the next page.", body = kairos_core::api::JobPage)))]
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    access.check_listing("queue", query.queue.as_deref())?;
    let filter = query.validate()?;
    Ok(Json(engine.list_jobs(filter).await?).into_response())
}

/// A job by id may be changed only by a caller who may see it (else it is absent).
async fn visible(engine: &Engine, access: &Access, id: uuid::Uuid) -> Result<(), ApiError> {
    if access.is_limited() {
        let job = engine.job(id).await?;
        access.reveal(&job.queue)?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses((status = 404, description = "No such job (or not one this token may see)."), (status = 409, description = "The job's state does not allow it."), (status = 200, description = "Cancelled (a running job: cancel_requested, its worker is told on its next heartbeat).", body = kairos_core::Job)))]
pub async fn cancel(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    visible(&engine, &access, id).await?;
    Ok(Json(engine.cancel(id).await?))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses((status = 404, description = "No such job (or not one this token may see)."), (status = 409, description = "The job's state does not allow it."), (status = 200, description = "Available again now.", body = kairos_core::Job)))]
pub async fn retry(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    visible(&engine, &access, id).await?;
    Ok(Json(engine.retry(id).await?))
}

#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses((status = 404, description = "No such job (or not one this token may see)."), (status = 409, description = "The job's state does not allow it."), (status = 204, description = "Deleted.")))]
pub async fn delete(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    visible(&engine, &access, id).await?;
    engine.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
