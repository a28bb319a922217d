//! The one place where errors become HTTP answers: `application/problem+json` (RFC 9457)
//! with a stable `type` per kind of problem, and `errors[]` naming fields for validation.

use crate::engine::EngineError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::api::{Problem, ProblemField};
use kairos_core::{Invalid, TransitionError};
use kairos_store::{ItemError, StoreError};

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON.
    MalformedJson(String),
    /// Fields are missing, unknown or invalid.
    Invalid(Invalid),
    /// The body is over the configured limit.
    BodyTooLarge,
    /// The engine or store refused.
    Engine(EngineError),
    /// The job (or queue) does not exist.
    NotFound,
    /// No such route.
    NoRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The store does not answer.
    Unavailable(String),
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(i) => ApiError::Invalid(i),
            e => ApiError::Engine(e),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::Invalid(i)
    }
}

fn problem(code: &str, title: &str, status: StatusCode, detail: String) -> Problem {
    Problem {
        kind: format!("urn:kairos:problem:{code}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
    }
}

fn conflict(e: &TransitionError) -> Problem {
    let code = match e {
        TransitionError::StaleLease => "stale-lease",
        TransitionError::LeaseExpired => "lease-expired",
        TransitionError::AlreadyReported(_) => "already-reported",
        _ => "wrong-state",
    };
    problem(
        code,
        "Conflict with the job's state",
        StatusCode::CONFLICT,
        e.to_string(),
    )
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::NotFound => not_found(),
        StoreError::Conflict(t) => conflict(t),
        StoreError::IdempotencyMismatch => {
            let mut p = problem(
                "idempotency-key-reused",
                "Idempotency-Key reused",
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
            );
            p.errors.push(ProblemField {
                field: "Idempotency-Key".into(),
                message: "was first used for a different request".into(),
            });
            p
        }
        StoreError::Invalid(i) => validation(i),
        StoreError::Duplicate(m) => problem(
            "duplicate",
            "Already exists",
            StatusCode::CONFLICT,
            m.clone(),
        ),
        StoreError::InvalidCursor => {
            validation(&Invalid::field("cursor", "not a cursor this server made"))
        }
        StoreError::Closed => problem(
            "unavailable",
            "Service unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down".into(),
        ),
        StoreError::Backend(m) => {
            tracing::error!(error = %m, "storage failure");
            problem(
                "storage-failure",
                "Storage failure",
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; retrying the request is safe".into(),
            )
        }
    }
}

fn not_found() -> Problem {
    problem(
        "not-found",
        "Not found",
        StatusCode::NOT_FOUND,
        "no such resource".into(),
    )
}

fn validation(i: &Invalid) -> Problem {
    let (code, title, status) = if i.is_too_large() {
        (
            "too-large",
            "Payload too large",
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    } else {
        (
            "validation",
            "Invalid request",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let mut p = problem(code, title, status, i.to_string());
    p.errors =
        i.0.iter()
            .map(|e| ProblemField {
                field: e.field.clone(),
                message: e.message.clone(),
            })
            .collect();
    p
}

/// The problem for one refused item of an ack or heartbeat.
pub fn item_problem(e: &ItemError) -> Problem {
    match e {
        ItemError::NotFound => not_found(),
        ItemError::Conflict(t) => conflict(t),
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::MalformedJson(m) => problem(
                "malformed-json",
                "Malformed JSON",
                StatusCode::BAD_REQUEST,
                m.clone(),
            ),
            ApiError::Invalid(i) => validation(i),
            ApiError::BodyTooLarge => problem(
                "too-large",
                "Payload too large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is over the configured limit".into(),
            ),
            ApiError::Engine(EngineError::Invalid(i)) => validation(i),
            ApiError::Engine(EngineError::Store(s)) => store_problem(s),
            ApiError::NotFound => not_found(),
            ApiError::NoRoute => problem(
                "no-route",
                "Not found",
                StatusCode::NOT_FOUND,
                "no such route".into(),
            ),
            ApiError::MethodNotAllowed => problem(
                "method-not-allowed",
                "Method not allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method".into(),
            ),
            ApiError::Unavailable(m) => problem(
                "unavailable",
                "Service unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                m.clone(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.problem();
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&p).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}
