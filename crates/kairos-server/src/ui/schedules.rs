//! `/ui/schedules` and `/ui/schedules/{id}`: cron, zone, DST policies, misfire and
//! overlap, the last run with its job, the next 10 fire times in local and UTC time
//! (those a DST rule placed marked "DST"), recent runs; **Pause**, **Resume** and
//! **Trigger now** (the API's `PATCH /v1/schedules/{id}` and `POST …/trigger`).

use super::Ui;
use super::page::{self, action, badge, state, time, word};
use super::session::Viewer;
use crate::http::problem::ApiError;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use kairos_core::api::JobFilter;
use kairos_core::schedule::{PreviewRequest, Schedule, SchedulePatch};
use kairos_core::timetable::DstRule;
use maud::html;

/// Fire times shown on a schedule's page.
pub const NEXT_FIRES: u32 = 10;
/// Runs listed on a schedule's page.
pub const RECENT_RUNS: u32 = 10;

/// `GET /ui/schedules`.
pub async fn list(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    let mut schedules = match ui.engine.schedules().await {
        Ok(mut s) => {
            s.retain(|s| viewer.access.sees(&s.job.queue));
            s
        }
        Err(e) => return page::failed_page(&viewer, "Schedules", e.into()),
    };
    let more = page::cap(&mut schedules);
    let now = ui.engine.store().now();
    page::ok(page::frame(
        Some(&viewer),
        "Schedules",
        "Schedules",
        html! {
            h1 { "Schedules" }
            @if schedules.is_empty() {
                p.muted { "No schedule." }
            } @else {
                div.scroll #schedules-live data-live { table #schedule-table {
                    thead { tr { th { "Schedule" } th { "Cron" } th.hide-narrow { "Zone" } th { "Next run" } th.hide-narrow { "Last run" } th { "Status" } } }
                    tbody {
                        @for s in &schedules {
                            tr data-schedule=(s.id) {
                                td { a href={ "/ui/schedules/" (s.id) } { (s.name) } }
                                td { code { (s.cron) } }
                                td.hide-narrow { (s.timezone) }
                                td { @if let Some(at) = s.next_run_at { (time(at, now)) } @else { "—" } }
                                td.hide-narrow { @if let Some(at) = s.last_run_at { (page::ago(at, now)) } @else { "never" } }
                                td { @if s.active { span.muted { "active" } } @else { (badge("paused")) } }
                            }
                        }
                    }
                } }
                (more)
            }
        },
    ))
}

/// The schedule in the path, absent (404) unless the viewer may see its runs' queue.
async fn visible(ui: &Ui, viewer: &Viewer, id: &str) -> Result<Schedule, ApiError> {
    let s = ui.engine.schedule(page::path_id(id, "schedule")?).await?;
    viewer.access.reveal(&s.job.queue)?;
    Ok(s)
}

/// `GET /ui/schedules/{id}`.
pub async fn page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    match render(&ui, &viewer, &id).await {
        Ok((title, m)) => page::ok(page::frame(Some(&viewer), &title, "Schedules", m)),
        Err(e) => page::failed_page(&viewer, "Schedules", e),
    }
}

async fn render(ui: &Ui, viewer: &Viewer, id: &str) -> Result<(String, maud::Markup), ApiError> {
    let s = visible(ui, viewer, id).await?;
    let now = ui.engine.store().now();
    let preview = ui
        .engine
        .preview(PreviewRequest {
            cron: s.cron.clone(),
            timezone: Some(s.timezone.clone()),
            dst_skipped: Some(s.dst_skipped),
            dst_repeated: Some(s.dst_repeated),
            count: Some(NEXT_FIRES),
            after: None,
        })
        .await
        .map_err(|e| ApiError::from(e).problem());
    let runs = ui
        .engine
        .list_jobs(JobFilter {
            schedule_id: Some(s.id),
            limit: RECENT_RUNS,
            ..JobFilter::default()
        })
        .await?
        .jobs;
    let path = format!("/ui/schedules/{}", s.id);
    let v = viewer;
    let markup = html! {
        h1 { "Schedule " (s.name) " " @if !s.active { (badge("paused")) } }
        @if v.may("PATCH", "/v1/schedules/{id}") || v.may("POST", "/v1/schedules/{id}/trigger") {
            div.actions {
                @if v.may("PATCH", "/v1/schedules/{id}") {
                    @if s.active { (action(v, &format!("{path}/pause"), "Pause", None)) }
                    @else { (action(v, &format!("{path}/resume"), "Resume", None)) }
                }
                @if v.may("POST", "/v1/schedules/{id}/trigger") {
                    (action(v, &format!("{path}/trigger"), "Trigger now", None))
                }
            }
        }
        dl.fields #fields {
            @if let Some(d) = &s.description { dt { "description" } dd { (d) } }
            dt { "cron" } dd { code { (s.cron) } }
            dt { "timezone" } dd { (s.timezone) }
            dt { "dst_skipped" } dd { (word(&s.dst_skipped)) }
            dt { "dst_repeated" } dd { (word(&s.dst_repeated)) }
            dt { "misfire" } dd { (word(&s.misfire)) }
            dt { "overlap" } dd { (word(&s.overlap)) }
            dt { "job" } dd { "kind " code { (s.job.kind) } " on queue " a href={ "/ui/queues/" (page::encode(&s.job.queue)) } { (s.job.queue) } }
            dt { "last run" } dd {
                @if let Some(at) = s.last_run_at {
                    (time(at, now))
                    @if let Some(j) = runs.iter().find(|j| j.scheduled_for == Some(at)) {
                        " → " a href={ "/ui/jobs/" (j.id) } { "its job" } " " (state(j.state))
                    }
                } @else { "never" }
            }
            dt { "next run" } dd { @if let Some(at) = s.next_run_at { (time(at, now)) } @else { "—" } }
            @if let Some(e) = &s.last_error { dt { "last error" } dd { (e) } }
        }
        h2 { "Next " (NEXT_FIRES) " fire times" }
        @if !s.active { p.muted { "Paused: these are the times it fires at once resumed." } }
        @match &preview {
            Ok(p) => {
                div.scroll { table #next-fires {
                    thead { tr { th { "Local (" (s.timezone) ")" } th { "UTC" } th { "DST" } } }
                    tbody {
                        @for (i, at) in p.times.iter().enumerate() {
                            @let mark = p.dst.get(i).cloned().flatten();
                            tr {
                                td { (p.local_times.get(i).map_or("", String::as_str)) }
                                td { (at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()) }
                                td { @if let Some(m) = mark {
                                    "DST " span.muted { (match m.rule {
                                        DstRule::Shifted => "shifted out of the spring-forward gap",
                                        DstRule::RepeatedFirst => "first of a repeated hour",
                                        DstRule::RepeatedSecond => "second of a repeated hour",
                                    }) " (wall time " (m.wall_time) ")" }
                                } }
                            }
                        }
                    }
                } }
                @if !p.dropped.is_empty() {
                    p.muted { "DST: wall times that fire nothing of their own: " (p.dropped.join(", ")) }
                }
            },
            Err(p) => { (page::problem_box(p, None)) },
        }
        h2 { "Recent runs" }
        @if runs.is_empty() { p.muted { "No run yet." } } @else {
            div.scroll { table #runs {
                thead { tr { th { "Job" } th { "For" } th { "State" } th { "Created" } } }
                tbody {
                    @for j in &runs {
                        tr {
                            td { a href={ "/ui/jobs/" (j.id) } { code { (j.id) } } }
                            td { @if let Some(at) = j.scheduled_for { (time(at, now)) } @else { "triggered" } }
                            td { (state(j.state)) }
                            td { (page::ago(j.created_at, now)) }
                        }
                    }
                }
            } }
        }
    };
    Ok((format!("Schedule {}", s.name), markup))
}

/// `POST /ui/schedules/{id}/{pause|resume|trigger}`.
pub async fn act(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let done = async {
        let (method, route) = match verb.as_str() {
            "pause" | "resume" => ("PATCH", "/v1/schedules/{id}"),
            "trigger" => ("POST", "/v1/schedules/{id}/trigger"),
            _ => return Err(ApiError::NoRoute),
        };
        viewer.must(method, route)?;
        let s = visible(&ui, &viewer, &id).await?;
        match verb.as_str() {
            "trigger" => drop(ui.engine.trigger_schedule(s.id).await?),
            v => {
                let patch = SchedulePatch {
                    active: Some(v == "resume"),
                    ..SchedulePatch::default()
                };
                ui.engine.update_schedule(s.id, patch).await?;
            }
        }
        Ok::<_, ApiError>(s.id)
    };
    match done.await {
        Ok(id) => Redirect::to(&format!("/ui/schedules/{id}")).into_response(),
        Err(e) => page::failed_action(&viewer, &headers, "Schedules", e),
    }
}
