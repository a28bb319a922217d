//! Handlers for `/v1/events`: pages of the event log, and its live stream as Server-Sent
//! Events (`id: <id>` and `data: <the event JSON>` per event, a comment every 15 s to
//! keep idle connections open, resumable with `Last-Event-ID`). A stream ends at once
//! when the server shuts down, so it never holds the server past its deadline.
//!
//! A token limited to some queues must name one of them (`queue`): the log holds every
//! queue's events.

use super::access::Access;
use super::extract::ApiQuery;
use super::problem::ApiError;
use super::reply::Json;
use crate::engine::{Engine, Tail};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use futures_util::Stream;
use kairos_core::Invalid;
use kairos_core::event::{Event, EventPage, EventQuery, EventStreamQuery, MAX_EVENT_ID};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// How often an idle stream gets a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events`.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery), responses((status = 200, description = "Events with ids greater than after, oldest first; the next page starts after next_after.", body = EventPage)))]
pub async fn list(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    access.check_listing("queue", query.queue.as_deref())?;
    Ok(Json(engine.events(query).await?))
}

/// `GET /v1/events/stream`: Server-Sent Events.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(EventStreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (wins over after).")),
    responses((status = 200, description = "A text/event-stream: each event as `id: <id>` and `data: <the event JSON>`.", content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(engine): State<Engine>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventStreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    access.check_listing("queue", query.queue.as_deref())?;
    let after = resume_after(&headers, query.after)?;
    let tail = engine.tail(query.validate()?, after).await?;
    Ok(stream_of(tail, |e| {
        serde_json::to_string(e).unwrap_or_default()
    }))
}

/// Where a stream starts: after `Last-Event-ID` when the client sends one (it wins),
/// else after `after`; `None`: new events only.
pub fn resume_after(headers: &HeaderMap, after: Option<u64>) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|id| *id <= MAX_EVENT_ID)
                .ok_or_else(|| {
                    Invalid::field("Last-Event-ID", "must be an event id (an integer)")
                })?,
        )),
        None => Ok(after),
    }
}

/// A tail as Server-Sent Events: each event as `id: <event id>` and `data:` what
/// `render` makes of it, a comment every 15 s while idle; ends with the tail (at
/// shutdown, or when the store fails: the client reconnects with the last id it saw).
pub fn stream_of(
    tail: Tail,
    render: impl Fn(&Event) -> String + Send + 'static,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    Sse::new(events(tail, render)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The tail's events, one SSE event each, until it ends.
fn events(
    tail: Tail,
    render: impl Fn(&Event) -> String + Send + 'static,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    futures_util::stream::unfold(
        (tail, VecDeque::<Event>::new(), render),
        |(mut tail, mut ready, render)| async move {
            loop {
                if let Some(e) = ready.pop_front() {
                    let out = sse::Event::default().id(e.id.to_string()).data(render(&e));
                    return Some((Ok(out), (tail, ready, render)));
                }
                match tail.next().await? {
                    Ok(batch) => ready.extend(batch),
                    Err(e) => {
                        // The client reconnects with the last id it saw.
                        tracing::warn!(error = %e, after = tail.cursor(), "an event stream ended: the store failed");
                        return None;
                    }
                }
            }
        },
    )
}
