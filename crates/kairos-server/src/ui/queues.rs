//! `/ui/queues` and `/ui/queues/{name}`: counts by state, paused or not, limits, the
//! last hour's throughput; **Pause**, **Resume** and **Retry all dead** (the API's
//! `PATCH /v1/queues/{name}` and `POST /v1/queues/{name}/retry-dead`, admins only).

use super::Ui;
use super::page::{self, action, badge};
use super::session::Viewer;
use crate::http::problem::ApiError;
use crate::metrics::minute_now;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use kairos_core::api::QueuePatch;
use kairos_core::{JobState, Queue};
use maud::{Markup, html};

/// `GET /ui/queues`.
pub async fn list(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    let mut queues = match ui.engine.queues().await {
        Ok(mut q) => {
            q.retain(|q| viewer.access.sees(&q.name));
            q
        }
        Err(e) => return page::failed_page(&viewer, "Queues", e.into()),
    };
    let more = page::cap(&mut queues);
    page::ok(page::frame(
        Some(&viewer),
        "Queues",
        "Queues",
        html! {
            h1 { "Queues" }
            div #queues-live data-live {
                @if queues.is_empty() { p.muted { "No queue has held a job yet." } }
                @else { (table(&queues)) (more) }
            }
        },
    ))
}

/// Every queue's counts by state, each count linking to its jobs.
pub fn table(queues: &[Queue]) -> Markup {
    html! {
        div.scroll { table #queue-table {
            thead { tr {
                th { "Queue" }
                @for s in JobState::ALL { th.num { (s.as_str()) } }
                th { "Status" }
            } }
            tbody {
                @for q in queues {
                    tr data-queue=(q.name) {
                        td { a href={ "/ui/queues/" (page::encode(&q.name)) } { (q.name) } }
                        @for s in JobState::ALL {
                            td.num data-state=(s.as_str()) {
                                a href={ "/ui/jobs" (page::query(&[("queue", Some(&q.name)), ("state", Some(s.as_str()))])) } { (q.counts.get(s)) }
                            }
                        }
                        td { @if q.paused { (badge("paused")) } @else { span.muted { "active" } } }
                    }
                }
            }
        } }
    }
}

/// `GET /ui/queues/{name}`.
pub async fn page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Response {
    let q = match visible(&ui, &viewer, &name).await {
        Ok(q) => q,
        Err(e) => return page::failed_page(&viewer, "Queues", e),
    };
    let minutes = ui.metrics.recent(minute_now(), |label| label == q.name);
    let oldest = match ui.engine.oldest_available(&q.name).await {
        Ok(o) => o,
        Err(e) => return page::failed_page(&viewer, "Queues", e.into()),
    };
    let now = ui.engine.store().now();
    let completed: u64 = minutes.iter().map(|m| m.completed).sum();
    let failed: u64 = minutes.iter().map(|m| m.failed).sum();
    let path = format!("/ui/queues/{}", page::encode(&q.name));
    let limit = |v: Option<String>| v.unwrap_or_else(|| "none".to_string());
    let admin = viewer.may("PATCH", "/v1/queues/{name}");
    page::ok(page::frame(
        Some(&viewer),
        &q.name,
        "Queues",
        html! {
            h1 { "Queue " (q.name) }
            @if admin {
                div.actions {
                    @if q.paused {
                        (action(&viewer, &format!("{path}/resume"), "Resume", None))
                    } @else {
                        (action(&viewer, &format!("{path}/pause"), "Pause", None))
                    }
                    @if viewer.may("POST", "/v1/queues/{name}/retry-dead") && q.counts.dead > 0 {
                        (action(&viewer, &format!("{path}/retry-dead"), "Retry all dead",
                            Some(&format!("Retry all {} dead jobs of {}?", q.counts.dead, q.name))))
                    }
                }
            }
            div #queue-live data-live {
                dl.fields {
                    dt { "Status" } dd #queue-status { @if q.paused { (badge("paused")) " leasing is paused; enqueue still works" } @else { "active" } }
                    dt { "max_depth" } dd { (limit(q.limits.max_depth.map(|d| d.to_string()))) }
                    dt { "concurrency" } dd { (limit(q.limits.concurrency.map(|c| c.to_string()))) }
                    dt { "rate" } dd { (limit(q.limits.rate.map(|r| r.to_string()))) }
                    dt { "Oldest waiting job" } dd #queue-oldest { @if let Some(at) = oldest { "available since " (page::time(at, now)) } @else { "none waiting" } }
                    dt { "Last hour" } dd { (completed) " completed, " (failed) " failed attempts (this node)" }
                }
                h2 { "Jobs by state" }
                (table(std::slice::from_ref(&q)))
            }
        },
    ))
}

/// The queue named in the path, absent (404) unless the viewer may see it.
async fn visible(ui: &Ui, viewer: &Viewer, name: &str) -> Result<Queue, ApiError> {
    viewer.access.reveal(name)?;
    Ok(ui.engine.queue(name).await?)
}

/// `POST /ui/queues/{name}/{pause|resume|retry-dead}`.
pub async fn act(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path((name, verb)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let done = async {
        let api = match verb.as_str() {
            "pause" | "resume" => ("PATCH", "/v1/queues/{name}"),
            "retry-dead" => ("POST", "/v1/queues/{name}/retry-dead"),
            _ => return Err(ApiError::NoRoute),
        };
        viewer.must(api.0, api.1)?;
        visible(&ui, &viewer, &name).await?;
        match verb.as_str() {
            "retry-dead" => {
                ui.engine.retry_dead(&name).await?;
            }
            v => {
                let patch = QueuePatch {
                    paused: Some(v == "pause"),
                    ..QueuePatch::default()
                };
                ui.engine.change_queue(&name, patch).await?;
            }
        }
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(&format!("/ui/queues/{}", page::encode(&name))).into_response(),
        Err(e) => page::failed_action(&viewer, &headers, "Queues", e),
    }
}
