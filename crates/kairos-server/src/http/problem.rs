//! The one place where errors become HTTP answers: `application/problem+json` (RFC 9457)
//! with a stable `type` per kind of problem, and `errors[]` naming fields for validation.

use crate::engine::EngineError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::api::{Problem, ProblemField};
use kairos_core::{Invalid, ProblemCode, TransitionError};
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
    /// The request body did not arrive within the body timeout.
    BodyTimeout,
    /// The answer was not ready within the request timeout.
    Timeout,
    /// No token, or one that does not verify (401).
    Unauthorized(String),
    /// The token's role or queues do not allow this (403).
    Forbidden(String),
    /// The client is over its rate limit (429).
    RateLimited,
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

fn problem(code: ProblemCode, detail: impl Into<String>) -> Problem {
    Problem::new(code, detail)
}

fn conflict(e: &TransitionError) -> Problem {
    let code = match e {
        TransitionError::StaleLease => ProblemCode::StaleLease,
        TransitionError::LeaseExpired => ProblemCode::LeaseExpired,
        TransitionError::AlreadyReported(_) => ProblemCode::AlreadyReported,
        _ => ProblemCode::WrongState,
    };
    problem(code, e.to_string())
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::NotFound => not_found(),
        StoreError::Conflict(t) => conflict(t),
        StoreError::IdempotencyMismatch => {
            let mut p = problem(ProblemCode::IdempotencyKeyReused, e.to_string());
            p.errors.push(ProblemField {
                field: "Idempotency-Key".into(),
                message: "was first used for a different request".into(),
            });
            p
        }
        StoreError::Invalid(i) => validation(i),
        StoreError::Duplicate(m) => problem(ProblemCode::Duplicate, m.clone()),
        StoreError::QueueFull(full) => {
            let mut p = problem(
                ProblemCode::QueueFull,
                format!("{full}; nothing was enqueued; retry after Retry-After seconds"),
            );
            p.errors.push(ProblemField {
                field: "queue".into(),
                message: format!("{:?} is full (max_depth {})", full.queue, full.max_depth),
            });
            p
        }
        StoreError::InvalidCursor => {
            validation(&Invalid::field("cursor", "not a cursor this server made"))
        }
        StoreError::Closed => problem(ProblemCode::Unavailable, "the server is shutting down"),
        StoreError::Unavailable(m) => {
            tracing::debug!(error = %m, "store unreachable");
            problem(
                ProblemCode::Unavailable,
                "the store is unreachable; retry shortly",
            )
        }
        StoreError::Overloaded => problem(
            ProblemCode::Overloaded,
            "too many writes are waiting for the store; retry shortly",
        ),
        StoreError::Contended(m) => {
            tracing::warn!(error = %m, "a store operation kept meeting concurrent ones");
            problem(
                ProblemCode::Overloaded,
                "the store is contended; nothing was written; retry shortly",
            )
        }
        StoreError::Full(m) => {
            // Logged once per episode by the store; an answer per request is enough here.
            tracing::debug!(error = %m, "storage full");
            problem(
                ProblemCode::StorageFull,
                "the store's disk is full; nothing was written; retry once space is freed",
            )
        }
        StoreError::Backend(m) | StoreError::Damaged(m) => {
            tracing::error!(error = %m, "storage failure");
            problem(
                ProblemCode::StorageFailure,
                "the store failed; retrying the request is safe",
            )
        }
    }
}

fn not_found() -> Problem {
    problem(ProblemCode::NotFound, "no such resource")
}

fn validation(i: &Invalid) -> Problem {
    let code = if i.is_too_large() {
        ProblemCode::TooLarge
    } else {
        ProblemCode::Validation
    };
    let mut p = problem(code, i.to_string());
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
    /// The problem this error answers (the one mapping; the dashboard renders it too).
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::MalformedJson(m) => problem(ProblemCode::MalformedJson, m.clone()),
            ApiError::Invalid(i) => validation(i),
            ApiError::BodyTooLarge => problem(
                ProblemCode::TooLarge,
                "the request body is over the configured limit",
            ),
            ApiError::BodyTimeout => problem(
                ProblemCode::RequestTimeout,
                "the request body did not arrive within the body timeout",
            ),
            ApiError::Timeout => problem(
                ProblemCode::Timeout,
                "the server did not answer within its request timeout; if the request \
                 was a write it may have been applied, and retrying it is safe",
            ),
            ApiError::Engine(EngineError::Invalid(i)) => validation(i),
            ApiError::Engine(EngineError::Store(s)) => store_problem(s),
            ApiError::NotFound => not_found(),
            ApiError::NoRoute => problem(ProblemCode::NoRoute, "no such route"),
            ApiError::MethodNotAllowed => problem(
                ProblemCode::MethodNotAllowed,
                "this route does not take that method",
            ),
            ApiError::Unavailable(m) => problem(ProblemCode::Unavailable, m.clone()),
            ApiError::Unauthorized(m) => problem(ProblemCode::Unauthorized, m.clone()),
            ApiError::Forbidden(m) => problem(ProblemCode::Forbidden, m.clone()),
            ApiError::RateLimited => problem(
                ProblemCode::RateLimited,
                "this client is over its rate limit; retry after Retry-After seconds",
            ),
        }
    }
}

/// Seconds a client should wait before retrying a transient problem (which codes are
/// transient is the core table's rule): a full disk is not freed within a second.
fn retry_after(code: ProblemCode) -> Option<&'static str> {
    match code {
        ProblemCode::StorageFull => Some("10"),
        c if c.is_transient() => Some("1"),
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut p = self.problem();
        p.request_id = crate::http::layers::observe::current_request_id();
        let mut resp = problem_response(&p);
        if let ApiError::Unauthorized(_) = self {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kairos\", error=\"invalid_token\""),
            );
        }
        resp
    }
}

/// A problem as an HTTP answer: its status, `application/problem+json`, and
/// `Retry-After` for transient problems.
pub fn problem_response(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(p).unwrap_or_default();
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(secs) = p.code().and_then(retry_after) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    if p.code() == Some(ProblemCode::RequestTimeout) {
        // The rest of the body is still on its way: the connection cannot be reused.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A whole HTTP/1.1 answer carrying a problem of `code`, ending the connection: for
/// answers written to a socket directly (a refused connection, a request head hyper
/// could not parse), outside the router.
pub fn problem_response_bytes(code: ProblemCode, detail: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&Problem::new(code, detail)).unwrap_or_default();
    let reason = StatusCode::from_u16(code.status())
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        code.status(),
        body.len()
    );
    if let Some(secs) = retry_after(code) {
        out.push_str(&format!("retry-after: {secs}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}
