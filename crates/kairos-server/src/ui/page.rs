//! What every dashboard page shares: the frame (header, navigation, **Log out**, the
//! place where a failed action's problem shows), the answers for failures, and small
//! pieces of markup (states, times, action buttons).

use super::session::{Viewer, wants_page};
use crate::http::problem::{ApiError, problem_response};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_core::api::Problem;
use kairos_core::{JobState, Timestamp};
use maud::{DOCTYPE, Markup, html};

/// The sections of the navigation, with their paths.
const SECTIONS: [(&str, &str); 6] = [
    ("Overview", "/ui"),
    ("Queues", "/ui/queues"),
    ("Jobs", "/ui/jobs"),
    ("Dead", "/ui/dead"),
    ("Schedules", "/ui/schedules"),
    ("Workers", "/ui/workers"),
];

/// A whole page: `title`, the navigation with `section` current, and `content`.
pub fn frame(viewer: Option<&Viewer>, title: &str, section: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kairos" }
                link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/kairos.css";
                script src="/ui/assets/kairos.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui" { "Kairos" }
                    @if viewer.is_some() {
                        nav aria-label="Sections" {
                            @for (name, path) in SECTIONS {
                                @if name == section {
                                    a href=(path) aria-current="page" { (name) }
                                } @else {
                                    a href=(path) { (name) }
                                }
                            }
                        }
                    }
                    @if let Some(v) = viewer.filter(|v| v.signed_in) {
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf_token" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    div #problem .problem role="alert" hidden {}
                    (content)
                }
            }
        }
    }
}

/// An HTML answer with the headers every page carries: no caching (pages show live
/// state and a session's CSRF token), no framing, scripts and styles from this server
/// only.
pub fn answer(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A page that is fine.
pub fn ok(markup: Markup) -> Response {
    answer(StatusCode::OK, markup)
}

/// A failed request's answer: its problem rendered into a page by `render` (with the
/// problem's status) when the request asked for a page, or always when `headers` is
/// `None` (a page load); else the problem document itself (`application/problem+json`,
/// as the API answers it).
pub fn refuse(
    headers: Option<&HeaderMap>,
    error: ApiError,
    render: impl FnOnce(&Problem) -> Markup,
) -> Response {
    let mut p = error.problem();
    p.request_id = crate::http::layers::observe::current_request_id();
    if headers.is_some_and(|h| !wants_page(h)) {
        return problem_response(&p);
    }
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(status, render(&p))
}

/// A refusal before any page (no session, no CSRF token): [`refuse`] with a bare frame.
pub fn failure(headers: &HeaderMap, error: ApiError) -> Response {
    refuse(Some(headers), error, |p| {
        frame(None, &p.title, "", problem_box(p, Some("/ui")))
    })
}

/// A page that could not be made, for a viewer on the dashboard.
pub fn failed_page(viewer: &Viewer, section: &str, error: ApiError) -> Response {
    refuse(None, error, |p| {
        frame(Some(viewer), &p.title, section, problem_box(p, None))
    })
}

/// An action that failed: [`refuse`] with the dashboard's frame.
pub fn failed_action(
    viewer: &Viewer,
    headers: &HeaderMap,
    section: &str,
    error: ApiError,
) -> Response {
    refuse(Some(headers), error, |p| {
        frame(Some(viewer), &p.title, section, problem_box(p, None))
    })
}

/// A problem's details, as the API would answer them.
pub fn problem_box(p: &Problem, back: Option<&str>) -> Markup {
    let code = p.kind.rsplit('/').next().unwrap_or("");
    html! {
        div.problem {
            h2 { (p.status) " " (p.title) }
            p { (p.detail) }
            @if !p.errors.is_empty() {
                ul { @for e in &p.errors { li { code { (e.field) } ": " (e.message) } } }
            }
            p.muted {
                "code: " code { (code) }
                @if let Some(id) = &p.request_id { " · request " code { (id) } }
            }
            @if let Some(back) = back { p { a href=(back) { "Back to the dashboard" } } }
        }
    }
}

/// The id in a page's path, or the API's 422 naming `id` (`what`: job, schedule).
pub fn path_id(text: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| {
        ApiError::Invalid(kairos_core::Invalid::field(
            "id",
            format!("must be a {what} id (a UUID)"),
        ))
    })
}

/// Most rows a page lists of what it shows whole (queues, schedules).
pub const MAX_ROWS: usize = 1_000;

/// Keeps the first [`MAX_ROWS`] of `items`, and says how many there were when that cut.
pub fn cap<T>(items: &mut Vec<T>) -> Markup {
    let total = items.len();
    items.truncate(MAX_ROWS);
    html! {
        @if total > MAX_ROWS { p.muted.capped { "Showing the first " (MAX_ROWS) " of " (total) "." } }
    }
}

/// A job state as a badge.
pub fn state(s: JobState) -> Markup {
    html! { span class={ "state state-" (s.as_str()) } { (s.as_str()) } }
}

/// A badge with any word (paused, online, offline, inactive).
pub fn badge(word: &str) -> Markup {
    html! { span class={ "state state-" (word) } { (word) } }
}

/// A time in UTC to the second, with how long ago (or ahead of) `now` it is.
pub fn time(at: Timestamp, now: Timestamp) -> Markup {
    let text = at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(at.to_string()) title=(text) { (text) " " span.muted { "(" (ago(at, now)) ")" } } }
}

/// `at` relative to `now`, in the largest whole unit: `5 s ago`, `in 3 min`.
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - at.as_second();
    let n = secs.unsigned_abs();
    let amount = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86_400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if secs >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// From `start` to `end`: milliseconds under a second, else as [`span`].
pub fn duration(start: Timestamp, end: Timestamp) -> String {
    let ms = end.as_millisecond() - start.as_millisecond();
    if (0..1000).contains(&ms) {
        format!("{ms} ms")
    } else {
        span(ms / 1000)
    }
}

/// A seconds count as the largest whole unit (`42 s`, `3 min`, `2 h`, `5 d`).
pub fn span(secs: i64) -> String {
    let n = secs.max(0);
    match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..86_400 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    }
}

/// A button posting to `action` with the viewer's CSRF token; `confirm` asks first.
pub fn action(viewer: &Viewer, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    let danger = matches!(label, "Cancel" | "Delete");
    html! {
        form method="post" action=(action) data-confirm=[confirm] {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            button type="submit" class=[danger.then_some("danger")] { (label) }
        }
    }
}

/// JSON text laid out for reading (as stored when it is not valid JSON).
pub fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_string())
}

/// `next` when it is a path of the dashboard itself: where a login or an action may send
/// the browser after (never another site, never `//host` or a backslash trick).
pub fn dashboard_path(next: Option<&str>) -> Option<&str> {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\'))
}

/// `text` percent-encoded for a query string.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A query string from the pairs whose value is present.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// A policy's name as the API writes it (`shift`, `run_once`, `skip`).
pub fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
