//! Request deadlines. The body must have arrived within the body timeout of the request's
//! head ([`BodyDeadline`], enforced where the body is read: `extract::ApiJson`, 408
//! `request-timeout`), and the answer must be ready within the request timeout (503
//! `timeout`). A long-poll lease's bound is its route's timeout plus the longest `wait`.
//!
//! A request cut off by its timeout may still have been applied (a write that reached the
//! store commits): writes are safe to retry, as after any lost answer.

use crate::http::problem::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::time::Instant;

/// When the request's body must have arrived whole; a request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// The two timeouts of a route.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the head to the body's end.
    pub body: Duration,
    /// From the head to the answer.
    pub request: Duration,
}

/// The middleware: sets the body deadline and bounds the whole answer.
pub async fn deadline(State(limits): State<Deadlines>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    req.extensions_mut()
        .insert(BodyDeadline(start + limits.body));
    match tokio::time::timeout_at(start + limits.request, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
