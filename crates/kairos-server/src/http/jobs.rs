//! Handlers for `/v1/jobs`: enqueue (one and batch, with `Idempotency-Key`), read, list,
//! cancel, retry, delete.

use super::extract::{ApiJson, ApiQuery, PathId};
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::Engine;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kairos_core::api::{BatchRequest, EnqueueRequest, JobBatch, ListQuery};
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

/// `POST /v1/jobs`: 201 with the new job, or 200 with the unfinished job holding the
/// same unique key.
pub async fn enqueue(
    State(engine): State<Engine>,
    headers: HeaderMap,
    body: ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency(&headers, "jobs", body.fingerprint)?;
    let mut out = engine.enqueue(body.value, key).await?;
    let (job, created) = out.jobs.remove(0);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job)).into_response())
}

/// `POST /v1/jobs/batch`: 201 with the jobs in request order, all or nothing.
pub async fn enqueue_batch(
    State(engine): State<Engine>,
    headers: HeaderMap,
    body: ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency(&headers, "batch", body.fingerprint)?;
    let out = engine.enqueue_batch(body.value, key).await?;
    let jobs = out.jobs.into_iter().map(|(j, _)| j).collect();
    Ok((StatusCode::CREATED, Json(JobBatch { jobs })).into_response())
}

/// `GET /v1/jobs/{id}`.
pub async fn get(State(engine): State<Engine>, PathId(id): PathId) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.job(id).await?))
}

/// `GET /v1/jobs?queue=&state=&kind=&limit=&cursor=`: newest first.
pub async fn list(
    State(engine): State<Engine>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let filter = query.validate()?;
    Ok(Json(engine.list_jobs(filter).await?).into_response())
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.cancel(id).await?))
}

/// `POST /v1/jobs/{id}/retry`.
pub async fn retry(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.retry(id).await?))
}

/// `DELETE /v1/jobs/{id}`: 204.
pub async fn delete(
    State(engine): State<Engine>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    engine.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
