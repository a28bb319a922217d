//! What every request leaves behind: its id, its metrics and, when it deserves one, a
//! log line.
//!
//! - **Request id**: the request's `X-Request-Id` when it is sane (1 to 128 visible
//!   ASCII characters), else a fresh one; echoed in the answer's `X-Request-Id`, in a
//!   problem body's `request_id`, and on every log line of the request (its span, which
//!   also carries the trace id of a W3C `traceparent` the request sent).
//! - **Metrics**: `kairos_http_requests_total{method,route,status}` and
//!   `kairos_http_request_duration_seconds{method,route}`, the route being the path
//!   template the router matched (`unmatched` for none).
//! - **Log**: quiet under load. One line for an answer of 500 or more (warn), of 400 or
//!   more (info; 429s one in [`LOG_EVERY_429`]; 401/403 are logged by the auth layer,
//!   with their reason), or slower than the slow threshold (info); every other request
//!   only at debug level.

use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Longest request id kept from a request.
pub const MAX_REQUEST_ID: usize = 128;
/// One 429 in this many is logged: a client being throttled must not flood the log.
pub const LOG_EVERY_429: u64 = 100;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being answered on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// The layer's state.
#[derive(Debug, Clone)]
pub struct Observe {
    /// Where the request metrics go.
    pub metrics: Arc<Metrics>,
    /// Requests slower than this are logged.
    pub log_slow: Duration,
    /// 429s answered, to sample their log lines.
    pub throttled: Arc<AtomicU64>,
}

fn sane(v: &HeaderValue) -> Option<Arc<str>> {
    let b = v.as_bytes();
    let ok = !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic());
    if !ok {
        return None;
    }
    std::str::from_utf8(b).ok().map(Arc::from)
}

fn fresh() -> Arc<str> {
    Arc::from(uuid::Uuid::new_v4().simple().to_string())
}

/// The middleware.
pub async fn observe(State(o): State<Observe>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(sane)
        .unwrap_or_else(fresh);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    // The caller's trace id, when it sent a W3C traceparent, goes on every line too.
    let trace = kairos_core::Trace::from_headers(
        req.headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
        None,
    );
    let trace_id = trace.as_ref().map_or("", |t| t.trace_id());
    let span = tracing::info_span!("request", request_id = %id, trace_id);
    let mut resp = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span.clone()))
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let took = start.elapsed();
    let status = resp.status().as_u16();
    o.metrics.request(
        method.as_str(),
        route.as_deref(),
        status,
        took.as_secs_f64(),
    );
    let _in = span.enter();
    let route = route.as_deref().unwrap_or("unmatched");
    let ms = took.as_secs_f64() * 1e3;
    if status >= 500 {
        tracing::warn!(%method, route, status, ms, "answered");
    } else if status == 429 {
        if o.throttled.fetch_add(1, Ordering::Relaxed) % LOG_EVERY_429 == 0 {
            tracing::info!(%method, route, status, ms, "answered (429s are logged one in 100)");
        }
    } else if status == 401 || status == 403 {
        // The auth layer logged the denial with its reason.
        tracing::debug!(%method, route, status, ms, "answered");
    } else if status >= 400 || took >= o.log_slow {
        tracing::info!(%method, route, status, ms, "answered");
    } else {
        tracing::debug!(%method, route, status, ms, "answered");
    }
    resp
}
