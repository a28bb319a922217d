//! The dashboard, under `/ui`: server-rendered pages over the same engine calls as the
//! API, with its assets compiled into the binary (no CDN, no external font).
//!
//! - [`session`]: sessions (the caller's token in an `HttpOnly` cookie), CSRF tokens, and
//!   the layer checking both.
//! - [`page`]: the frame every page shares, failures as pages or problems, small pieces
//!   of markup.
//! - [`overview`], [`queues`], [`jobs`], [`schedules`], [`workers`]: the pages, and the
//!   actions they offer, by resource.
//!
//! Pages are plain HTML (written with maud, so every value is escaped at compile time)
//! and work without JavaScript; `assets/kairos.js` adds confirmation, in-place problem
//! details and the live refresh. An action is offered only where the viewer's role may
//! make the same API call ([`session::Viewer::may`]), and refused the same way when
//! forged.

pub mod jobs;
pub mod overview;
pub mod page;
pub mod queues;
pub mod schedules;
pub mod session;
pub mod workers;

use crate::engine::Engine;
use crate::http::problem::ApiError;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, extract::DefaultBodyLimit};
use maud::html;
use serde::Deserialize;
use session::{COOKIE, Form, Sessions, Viewer};
use std::sync::Arc;

/// What the pages need.
#[derive(Debug, Clone)]
pub struct Ui {
    /// The engine every page reads and every action calls.
    pub engine: Engine,
    /// The server's metrics (the overview's chart).
    pub metrics: Arc<Metrics>,
    /// How callers are checked.
    pub sessions: Arc<Sessions>,
    /// The per-client rate limit the API's callers share (`None`: unlimited).
    pub limiter: Option<crate::http::layers::limit::Limiter>,
}

/// The dashboard's routes (`/`, `/favicon.ico` and everything under `/ui`), behind the
/// session layer, then the API's per-client rate limit (a session's subject, or the
/// peer's address, counts as one client with its API calls).
pub fn router(ui: Ui) -> Router<Engine> {
    let sessions = ui.sessions.clone();
    let limiter = ui.limiter.clone();
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/queues", get(queues::list))
        .route("/ui/queues/{name}", get(queues::page))
        .route("/ui/queues/{name}/{action}", post(queues::act))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/bulk", post(jobs::bulk))
        .route("/ui/jobs/{id}", get(jobs::page))
        .route("/ui/jobs/{id}/{action}", post(jobs::act))
        .route("/ui/dead", get(jobs::dead))
        .route("/ui/dead/retry", post(jobs::retry_group))
        .route("/ui/schedules", get(schedules::list))
        .route("/ui/schedules/{id}", get(schedules::page))
        .route("/ui/schedules/{id}/{action}", post(schedules::act))
        .route("/ui/workers", get(workers::list))
        .route("/ui/assets/{file}", get(asset))
        .route("/favicon.ico", get(favicon))
        .layer(from_fn_with_state(
            limiter,
            crate::http::layers::limit::limit,
        ))
        .layer(from_fn_with_state(sessions, session::check))
        .layer(DefaultBodyLimit::max(session::MAX_FORM_BYTES))
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .with_state(ui)
}

/// The files every page loads, compiled in.
fn asset_bytes(file: &str) -> Option<(&'static [u8], &'static str)> {
    Some(match file {
        "kairos.css" => (
            include_bytes!("assets/kairos.css").as_slice(),
            "text/css; charset=utf-8",
        ),
        "kairos.js" => (
            include_bytes!("assets/kairos.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        "favicon.svg" => (
            include_bytes!("assets/favicon.svg").as_slice(),
            "image/svg+xml",
        ),
        _ => return None,
    })
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let Some((bytes, kind)) = asset_bytes(&file) else {
        return ApiError::NoRoute.into_response();
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The binary is the version: an hour's caching, revalidated after.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A browser's automatic request for `/favicon.ico`: the same icon.
async fn favicon() -> Response {
    asset(axum::extract::Path("favicon.svg".to_string())).await
}

/// `?next=` of the login page: where to go once signed in.
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go once signed in: `next` when it is a dashboard path, else the overview.
fn safe_next(next: Option<&str>) -> &str {
    page::dashboard_path(next).unwrap_or("/ui")
}

fn login_form(viewer: &Viewer, next: &str, refusal: Option<maud::Markup>) -> maud::Markup {
    html! {
        div.login {
            h1 { "Sign in" }
            @if let Some(r) = refusal { (r) }
            p { "Paste a Kairos token (" code { "kairos token create" } "). The dashboard keeps it in a cookie until it expires or you log out, and it allows exactly what the token allows." }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                input type="hidden" name="next" value=(next);
                p { label for="token" { "Token" } br; textarea #token name="token" required autocomplete="off" spellcheck="false" {} }
                button type="submit" { "Sign in" }
            }
        }
    }
}

/// `GET /ui/login`.
async fn login_page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<Next>,
) -> Response {
    if !ui.sessions.required() {
        return Redirect::to("/ui").into_response();
    }
    let next = safe_next(q.next.as_deref());
    page::ok(page::frame(
        None,
        "Sign in",
        "",
        login_form(&viewer, next, None),
    ))
}

/// `POST /ui/login` with `token` (and `next`): the session cookie, or the form again
/// with why the token was refused (401).
async fn login(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Extension(form): Extension<Form>,
    headers: HeaderMap,
) -> Response {
    let next = safe_next(form.get("next")).to_string();
    let token = form.get("token").unwrap_or("").trim();
    let refused = |error: ApiError| {
        page::refuse(Some(&headers), error, |p| {
            page::frame(
                None,
                "Sign in",
                "",
                login_form(&viewer, &next, Some(page::problem_box(p, None))),
            )
        })
    };
    if token.is_empty() {
        return refused(ApiError::Unauthorized("paste a token to sign in".into()));
    }
    let (_, exp) = match ui.sessions.admit(token) {
        Ok(admitted) => admitted,
        Err(e) => return refused(e),
    };
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let max_age = exp.saturating_sub(now);
    let secure = if session::over_tls(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    let mut resp = Redirect::to(&next).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        Err(_) => refused(ApiError::Unauthorized(
            "the token has characters a cookie cannot carry".into(),
        )),
    }
}

/// `POST /ui/logout`: clears the cookie.
async fn logout() -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("a plain header value"),
    );
    resp
}
