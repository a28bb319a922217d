//! `/ui/jobs`, `/ui/jobs/{id}` and `/ui/dead`: jobs filtered and paged newest first, with
//! bulk **Retry**, **Cancel** and **Delete**; one job's every field, its attempts and
//! **Why isn't it running?**; dead jobs grouped by error fingerprint and kind, with
//! **Retry group**. Every action is the API's own engine call (`retry`, `cancel`,
//! `delete`), allowed to the roles the API allows.

use super::Ui;
use super::page::{self, action, state, time};
use super::session::{Form, Viewer};
use crate::http::problem::ApiError;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use kairos_core::api::{JobFilter, ListQuery};
use kairos_core::diagnosis::why_not_running;
use kairos_core::fingerprint::fingerprint;
use kairos_core::validate::MAX_SEARCH_SCAN;
use kairos_core::worker::WorkerState;
use kairos_core::{Invalid, Job, JobState, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::HashMap;
use uuid::Uuid;

/// Jobs per page of `/ui/jobs`.
pub const PAGE: u32 = 50;
/// Most jobs one bulk action names.
pub const MAX_SELECTED: usize = 100;
/// Most dead jobs `/ui/dead` reads (newest first) to group, and **Retry group** retries.
pub const MAX_DEAD_SCANNED: usize = 5_000;

/// `/ui/jobs` filters.
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    queue: Option<String>,
    state: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// `GET /ui/jobs?queue=&state=&kind=&cursor=`.
pub async fn list(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<JobsQuery>,
) -> Response {
    match render_list(&ui, &viewer, &q).await {
        Ok(m) => page::ok(page::frame(Some(&viewer), "Jobs", "Jobs", m)),
        Err(e) => page::failed_page(&viewer, "Jobs", e),
    }
}

async fn render_list(ui: &Ui, viewer: &Viewer, q: &JobsQuery) -> Result<Markup, ApiError> {
    let now = ui.engine.store().now();
    let mut queues = ui.engine.queues().await?;
    queues.retain(|x| viewer.access.sees(&x.name));
    // The queue menu lists the first MAX_ROWS (a longer list is no menu); any queue can
    // still be named in the URL.
    queues.truncate(page::MAX_ROWS);
    let queue = blank(&q.queue);
    // A token limited to some queues lists one queue at a time (as the API does).
    let must_choose = viewer.access.is_limited() && queue.is_none();
    let page_of = if must_choose {
        None
    } else {
        if let Some(name) = queue {
            viewer.access.check("queue", name)?;
        }
        let filter = ListQuery {
            queue: queue.map(str::to_string),
            state: blank(&q.state).map(str::to_string),
            kind: blank(&q.kind).map(str::to_string),
            schedule_id: None,
            limit: Some(PAGE),
            cursor: blank(&q.cursor).map(str::to_string),
            q: blank(&q.q).map(str::to_string),
        }
        .validate()?;
        Some(ui.engine.list_jobs(filter).await?)
    };
    let here = format!(
        "/ui/jobs{}",
        page::query(&[
            ("queue", queue),
            ("state", blank(&q.state)),
            ("kind", blank(&q.kind)),
            ("q", blank(&q.q)),
            ("cursor", blank(&q.cursor)),
        ])
    );
    let act = viewer.may("POST", "/v1/jobs/{id}/retry");
    Ok(html! {
        h1 { "Jobs" }
        form.filters method="get" action="/ui/jobs" {
            label { "Queue" select name="queue" {
                @if !viewer.access.is_limited() { option value="" { "every queue" } }
                @for x in &queues {
                    option value=(x.name) selected[queue == Some(x.name.as_str())] { (x.name) }
                }
                @if let Some(name) = queue.filter(|n| !queues.iter().any(|x| x.name == *n)) {
                    option value=(name) selected { (name) }
                }
            } }
            label { "State" select name="state" {
                option value="" { "every state" }
                @for s in JobState::ALL {
                    option value=(s.as_str()) selected[blank(&q.state) == Some(s.as_str())] { (s.as_str()) }
                }
            } }
            label { "Kind" input name="kind" value=[blank(&q.kind)] placeholder="any kind" size="14"; }
            label { "Search" input type="search" name="q" value=[blank(&q.q)] placeholder="id, kind, unique key, tag" size="24"; }
            button type="submit" { "Filter" }
        }
        @match &page_of {
            None => p { "This token is limited to some queues: choose one above." },
            Some(p) if p.jobs.is_empty() && p.next_cursor.is_none() => p.muted { "No job matches." },
            Some(p) => {
                @if act {
                    form #bulk .actions method="post" action="/ui/jobs/bulk" data-bulk {
                        input type="hidden" name="csrf_token" value=(viewer.csrf);
                        input type="hidden" name="next" value=(here);
                        button type="submit" name="action" value="retry" { "Retry" }
                        button.danger type="submit" name="action" value="cancel" { "Cancel" }
                        button.danger type="submit" name="action" value="delete" { "Delete" }
                    }
                }
                div.scroll { table #job-table {
                    thead { tr {
                        @if act { th { span.muted { "select" } } }
                        th { "Job" } th { "Kind" } th { "Queue" } th { "State" }
                        th.num { "Attempt" } th.hide-narrow { "Created" } th.hide-narrow { "Last error" }
                    } }
                    tbody {
                        @for j in &p.jobs {
                            tr data-job=(j.id) data-state=(j.state.as_str()) data-kind=(j.kind) {
                                @if act { td { input type="checkbox" name="id" value=(j.id) form="bulk" aria-label={ "select " (j.id) }; } }
                                td { a href={ "/ui/jobs/" (j.id) } { code { (short(j.id)) } } }
                                td { (j.kind) }
                                td { a href={ "/ui/queues/" (page::encode(&j.queue)) } { (j.queue) } }
                                td { (state(j.state)) }
                                td.num { (j.attempt) "/" (j.max_attempts) }
                                td.hide-narrow { (page::ago(j.created_at, now)) }
                                td.hide-narrow { @if let Some(e) = j.errors.last() { (cut(&e.error, 120)) } }
                            }
                        }
                    }
                } }
                @if let Some(next) = &p.next_cursor {
                    p.pager {
                        @if blank(&q.q).is_some() && p.jobs.len() < PAGE as usize {
                            span.muted { "This page looked at the newest " (MAX_SEARCH_SCAN) " jobs it could. " }
                        }
                        a rel="next" href={ "/ui/jobs" (page::query(&[("queue", queue), ("state", blank(&q.state)), ("kind", blank(&q.kind)), ("q", blank(&q.q)), ("cursor", Some(next))])) } { "Older jobs →" }
                    }
                }
            }
        }
    })
}

/// The first 8 characters of a UUID's text, then an ellipsis: the rest is on its page.
fn short(id: Uuid) -> String {
    let text = id.to_string();
    format!("{}…{}", &text[..8], &text[text.len() - 4..])
}

/// `text` cut to at most `n` characters.
fn cut(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A job by id, absent (404) unless the viewer may see its queue.
async fn visible(ui: &Ui, viewer: &Viewer, id: &str) -> Result<Job, ApiError> {
    let job = ui.engine.job(page::path_id(id, "job")?).await?;
    viewer.access.reveal(&job.queue)?;
    Ok(job)
}

/// `GET /ui/jobs/{id}`.
pub async fn page(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    match render_job(&ui, &viewer, &id).await {
        Ok((title, m)) => page::ok(page::frame(Some(&viewer), &title, "Jobs", m)),
        Err(e) => page::failed_page(&viewer, "Jobs", e),
    }
}

async fn render_job(ui: &Ui, viewer: &Viewer, id: &str) -> Result<(String, Markup), ApiError> {
    let job = visible(ui, viewer, id).await?;
    let now = ui.engine.store().now();
    let queue = ui.engine.queue(&job.queue).await?;
    let online = ui
        .engine
        .workers()
        .await?
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Online && w.queues.contains(&job.queue))
        .count();
    let reasons = why_not_running(&job, &queue, online, now);
    let may = job.operator_actions();
    let path = format!("/ui/jobs/{}", job.id);
    let v = viewer;
    let markup = html! {
        h1 { "Job " code { (job.id) } " " (state(job.effective_state(now))) }
        div.actions {
            @if may.retry && v.may("POST", "/v1/jobs/{id}/retry") { (action(v, &format!("{path}/retry"), "Retry", None)) }
            @if may.cancel && v.may("POST", "/v1/jobs/{id}/cancel") { (action(v, &format!("{path}/cancel"), "Cancel", Some("Cancel this job?"))) }
            @if may.delete && v.may("DELETE", "/v1/jobs/{id}") { (action(v, &format!("{path}/delete"), "Delete", Some("Delete this job for good?"))) }
        }
        section.why #why {
            h2 { "Why isn't it running?" }
            ul { @for r in &reasons { li { (r.to_string()) } } }
        }
        h2 { "Fields" }
        dl.fields #fields {
            dt { "queue" } dd { a href={ "/ui/queues/" (page::encode(&job.queue)) } { (job.queue) } }
            dt { "kind" } dd { (job.kind) }
            dt { "state" } dd { (job.state.as_str()) }
            dt { "priority" } dd { (job.priority) }
            dt { "attempt" } dd { (job.attempt) " of " (job.max_attempts) }
            dt { "failures" } dd { (job.failures) }
            dt { "run_at" } dd { (time(job.run_at, now)) }
            dt { "created_at" } dd { (time(job.created_at, now)) }
            dt { "started_at" } dd { (opt_time(job.started_at, now)) }
            dt { "finished_at" } dd { (opt_time(job.finished_at, now)) }
            dt { "timeout" } dd { (job.timeout.to_string()) }
            dt { "backoff" } dd { code { (serde_json::to_string(&job.backoff).unwrap_or_default()) } }
            dt { "unique_key" } dd { (job.unique_key.as_deref().unwrap_or("—")) }
            dt { "tags" } dd { @if job.tags.is_empty() { "—" } @else { (job.tags.join(", ")) } }
            dt { "cancel_requested" } dd { (job.cancel_requested) }
            dt { "schedule" } dd {
                @if let Some(s) = job.schedule_id { a href={ "/ui/schedules/" (s) } { code { (s) } } }
                @else { "—" }
                @if let Some(at) = job.scheduled_for { " for " (time(at, now)) }
            }
            dt { "trace id" } dd { @if let Some(t) = &job.trace { code { (t.trace_id()) } } @else { "—" } }
            @if let (Some(l), JobState::Running) = (&job.lease, job.state) {
                dt { "lease" } dd { "worker " code { (l.worker) } ", until " (time(l.expires_at, now)) }
            }
        }
        h2 { "Payload" }
        pre #payload { (page::pretty(job.payload.get())) }
        @if let Some(r) = &job.result {
            h2 { "Result" }
            pre #result { (page::pretty(r.get())) }
        }
        h2 { "Attempts" }
        (attempts(&job, now))
    };
    Ok((format!("Job {}", job.id), markup))
}

/// Each attempt: its failures (the latest 20 kept: start, how long it ran, worker,
/// error), and the one running now or completed (its start, duration and worker).
fn attempts(job: &Job, now: Timestamp) -> Markup {
    let last_ok = job.state == JobState::Completed;
    html! {
        @if job.attempt == 0 && job.errors.is_empty() {
            p.muted { "Not attempted yet." }
        } @else {
            div.scroll { table #attempts {
                thead { tr { th.num { "Attempt" } th { "When" } th { "Duration" } th { "Worker" } th { "Outcome" } } }
                tbody {
                    @for e in &job.errors {
                        tr {
                            td.num { (e.attempt) }
                            td { @if let Some(start) = e.started_at { (time(start, now)) } @else { (time(e.at, now)) } }
                            td { @if let Some(start) = e.started_at { (page::duration(start, e.at)) } @else { "—" } }
                            td { @if let Some(w) = &e.worker { code { (w) } } @else { "—" } }
                            td { "failed: " (e.error) }
                        }
                    }
                    @if let (Some(start), true) = (job.started_at, job.state == JobState::Running || last_ok) {
                        @let end = job.finished_at.unwrap_or(now);
                        tr {
                            td.num { (job.attempt) }
                            td { (time(start, now)) }
                            td { (page::duration(start, end)) }
                            td { @if let Some(l) = &job.lease { code { (l.worker) } } @else { "—" } }
                            td { @if last_ok { "completed" } @else { "running" } }
                        }
                    }
                }
            } }
            @if job.failures as usize > job.errors.len() {
                p.muted { (job.failures) " failed attempts in all; the latest " (job.errors.len()) " are kept." }
            }
        }
    }
}

fn opt_time(at: Option<Timestamp>, now: Timestamp) -> Markup {
    match at {
        Some(t) => time(t, now),
        None => html! { "—" },
    }
}

/// The API route each job action is, for the role check.
fn api_route(verb: &str) -> Option<(&'static str, &'static str)> {
    Some(match verb {
        "retry" => ("POST", "/v1/jobs/{id}/retry"),
        "cancel" => ("POST", "/v1/jobs/{id}/cancel"),
        "delete" => ("DELETE", "/v1/jobs/{id}"),
        _ => return None,
    })
}

/// Does `verb` to the job `id`, as the viewer.
async fn apply(ui: &Ui, viewer: &Viewer, id: &str, verb: &str) -> Result<(), ApiError> {
    let (method, route) = api_route(verb).ok_or(ApiError::NoRoute)?;
    viewer.must(method, route)?;
    let job = visible(ui, viewer, id).await?;
    match verb {
        "retry" => drop(ui.engine.retry(job.id).await?),
        "cancel" => drop(ui.engine.cancel(job.id).await?),
        _ => ui.engine.delete(job.id).await?,
    }
    Ok(())
}

/// `POST /ui/jobs/{id}/{retry|cancel|delete}`.
pub async fn act(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match apply(&ui, &viewer, &id, &verb).await {
        Ok(()) if verb == "delete" => Redirect::to("/ui/jobs").into_response(),
        Ok(()) => Redirect::to(&format!("/ui/jobs/{id}")).into_response(),
        Err(e) => page::failed_action(&viewer, &headers, "Jobs", e),
    }
}

/// Where to go after an action: `next` when it is a dashboard path.
fn back(form: &Form, default: &str) -> String {
    page::dashboard_path(form.get("next"))
        .unwrap_or(default)
        .to_string()
}

/// `POST /ui/jobs/bulk` with `action` and up to [`MAX_SELECTED`] `id`s: each job in turn;
/// the first refusal, with how many were done, when one fails.
pub async fn bulk(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Extension(form): Extension<Form>,
    headers: HeaderMap,
) -> Response {
    let verb = form.get("action").unwrap_or("").to_string();
    let ids: Vec<&str> = form.all("id").collect();
    let done = async {
        if api_route(&verb).is_none() {
            return Err(ApiError::Invalid(Invalid::field(
                "action",
                "must be retry, cancel or delete",
            )));
        }
        if ids.is_empty() || ids.len() > MAX_SELECTED {
            return Err(ApiError::Invalid(Invalid::field(
                "id",
                format!("select 1 to {MAX_SELECTED} jobs"),
            )));
        }
        for (i, id) in ids.iter().enumerate() {
            if let Err(e) = apply(&ui, &viewer, id, &verb).await {
                return Err(partly(e, i, ids.len(), id));
            }
        }
        Ok(())
    };
    match done.await {
        Ok(()) => Redirect::to(&back(&form, "/ui/jobs")).into_response(),
        Err(e) => page::failed_action(&viewer, &headers, "Jobs", e),
    }
}

/// A refusal partway through a bulk action, saying how far it got.
fn partly(e: ApiError, done: usize, of: usize, id: &str) -> ApiError {
    if done == 0 && of == 1 {
        return e;
    }
    let p = e.problem();
    let detail = format!("{done} of {of} done; job {id}: {}", p.detail);
    match e {
        ApiError::Forbidden(_) => ApiError::Forbidden(detail),
        ApiError::NotFound => ApiError::Invalid(Invalid::field("id", detail)),
        other => other,
    }
}

/// A group of dead jobs: one kind, one error fingerprint.
struct Group {
    kind: String,
    fingerprint: String,
    sample: String,
    queues: Vec<String>,
    ids: Vec<Uuid>,
    first: Timestamp,
    last: Timestamp,
}

/// The newest dead jobs of the queues the viewer sees (at most [`MAX_DEAD_SCANNED`]),
/// grouped by kind and fingerprint, largest group first; and whether more were left.
async fn dead_groups(ui: &Ui, viewer: &Viewer) -> Result<(Vec<Group>, bool), ApiError> {
    let mut queues = ui.engine.queues().await?;
    queues.retain(|q| viewer.access.sees(&q.name) && q.counts.dead > 0);
    let mut groups: HashMap<(String, String), Group> = HashMap::new();
    let mut scanned = 0;
    let mut more = false;
    'queues: for q in &queues {
        let mut cursor = None;
        loop {
            let page = ui
                .engine
                .list_jobs(JobFilter {
                    queue: Some(q.name.clone()),
                    state: Some(JobState::Dead),
                    limit: 500,
                    cursor,
                    ..JobFilter::default()
                })
                .await?;
            for j in page.jobs {
                if scanned == MAX_DEAD_SCANNED {
                    more = true;
                    break 'queues;
                }
                scanned += 1;
                let error = j.errors.last().map_or("", |e| e.error.as_str());
                let key = (j.kind.clone(), fingerprint(error));
                let at = j.finished_at.unwrap_or(j.created_at);
                let g = groups.entry(key.clone()).or_insert_with(|| Group {
                    kind: key.0,
                    fingerprint: key.1,
                    sample: error.to_string(),
                    queues: Vec::new(),
                    ids: Vec::new(),
                    first: at,
                    last: at,
                });
                g.ids.push(j.id);
                g.first = g.first.min(at);
                g.last = g.last.max(at);
                if !g.queues.contains(&j.queue) {
                    g.queues.push(j.queue);
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then(b.last.cmp(&a.last)));
    Ok((groups, more))
}

/// `GET /ui/dead`.
pub async fn dead(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    let (groups, more) = match dead_groups(&ui, &viewer).await {
        Ok(g) => g,
        Err(e) => return page::failed_page(&viewer, "Dead", e),
    };
    let now = ui.engine.store().now();
    let act = viewer.may("POST", "/v1/jobs/{id}/retry");
    page::ok(page::frame(
        Some(&viewer),
        "Dead jobs",
        "Dead",
        html! {
            h1 { "Dead jobs, grouped by error" }
            @if more { p.muted { "The newest " (MAX_DEAD_SCANNED) " dead jobs are grouped; older ones are not counted here." } }
            @if groups.is_empty() {
                p.muted { "No dead job." }
            } @else {
                div.scroll { table #dead-groups {
                    thead { tr { th { "Kind" } th { "Error" } th.num { "Jobs" } th { "First seen" } th { "Last seen" } th { "Queues" } @if act { th {} } } }
                    tbody {
                        @for g in &groups {
                            tr data-kind=(g.kind) data-count=(g.ids.len()) {
                                td { a href={ "/ui/jobs" (page::query(&[("state", Some("dead")), ("kind", Some(&g.kind)), ("queue", (g.queues.len() == 1).then(|| g.queues[0].as_str()))])) } { (g.kind) } }
                                td { code { (g.fingerprint) } br; span.muted { "e.g. " (cut(&g.sample, 200)) } }
                                td.num { (g.ids.len()) }
                                td { (page::ago(g.first, now)) }
                                td { (page::ago(g.last, now)) }
                                td { (g.queues.join(", ")) }
                                @if act {
                                    td {
                                        form method="post" action="/ui/dead/retry" data-confirm={ "Retry " (g.ids.len()) " dead " (g.kind) " jobs?" } {
                                            input type="hidden" name="csrf_token" value=(viewer.csrf);
                                            input type="hidden" name="kind" value=(g.kind);
                                            input type="hidden" name="fingerprint" value=(g.fingerprint);
                                            button type="submit" { "Retry group" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        },
    ))
}

/// `POST /ui/dead/retry` with `kind` and `fingerprint`: retries every dead job of the
/// group (as [`dead`] groups them).
pub async fn retry_group(
    State(ui): State<Ui>,
    Extension(viewer): Extension<Viewer>,
    Extension(form): Extension<Form>,
    headers: HeaderMap,
) -> Response {
    let done = async {
        viewer.must("POST", "/v1/jobs/{id}/retry")?;
        let kind = form.get("kind").unwrap_or("");
        let print = form.get("fingerprint").unwrap_or("");
        let (groups, _) = dead_groups(&ui, &viewer).await?;
        let group = groups
            .into_iter()
            .find(|g| g.kind == kind && g.fingerprint == print)
            .ok_or_else(|| {
                ApiError::Invalid(Invalid::field(
                    "fingerprint",
                    "no dead job has this kind and error (retried already?)",
                ))
            })?;
        for id in group.ids {
            match ui.engine.retry(id).await {
                // Retried or deleted meanwhile by someone else: nothing to do.
                Ok(_) => {}
                Err(e) => match ApiError::from(e) {
                    ApiError::NotFound => {}
                    other if other.problem().status == 409 => {}
                    other => return Err(other),
                },
            }
        }
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Redirect::to("/ui/dead").into_response(),
        Err(e) => page::failed_action(&viewer, &headers, "Dead", e),
    }
}
