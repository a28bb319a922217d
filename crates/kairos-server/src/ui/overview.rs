//! `/ui`: the overview. Jobs completed and failed per minute over the last hour (this
//! node's, from the same commits as `/metrics`), each queue's depth by state, workers
//! online, the schedules firing next; the live parts refresh every 5 s.

use super::Ui;
use super::page::{self, time};
use super::session::Viewer;
use crate::http::problem::ApiError;
use crate::metrics::{Minute, minute_now};
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use kairos_core::worker::WorkerState;
use kairos_core::{JobState, StateCounts};
use maud::{Markup, html};

/// Schedules listed under "firing next".
const NEXT_SCHEDULES: usize = 10;
/// Queues whose oldest waiting job is looked up, at most (those with the most available
/// jobs): each lookup is a few index seeks.
pub const OLDEST_LOOKUPS: usize = 100;

/// `GET /ui`.
pub async fn page(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    match render(&ui, &viewer).await {
        Ok(m) => page::ok(page::frame(Some(&viewer), "Overview", "Overview", m)),
        Err(e) => page::failed_page(&viewer, "Overview", e),
    }
}

async fn render(ui: &Ui, viewer: &Viewer) -> Result<Markup, ApiError> {
    let access = &viewer.access;
    let now = ui.engine.store().now();
    let mut queues = ui.engine.queues().await?;
    queues.retain(|q| access.sees(&q.name));
    let workers = ui.engine.workers().await?.workers;
    let online = workers
        .iter()
        .filter(|w| access.sees_worker(w) && w.state == WorkerState::Online)
        .count();
    let mut schedules = ui.engine.schedules().await?;
    schedules.retain(|s| access.sees(&s.job.queue) && s.next_run_at.is_some());
    schedules.sort_by_key(|s| s.next_run_at);
    schedules.truncate(NEXT_SCHEDULES);
    let mut total = StateCounts::default();
    for q in &queues {
        for s in JobState::ALL {
            *total.get_mut(s) += q.counts.get(s);
        }
    }
    let minutes = ui.metrics.recent(minute_now(), |q| access.sees(q));
    let mut busiest: Vec<&kairos_core::Queue> =
        queues.iter().filter(|q| q.counts.available > 0).collect();
    busiest.sort_by_key(|q| std::cmp::Reverse(q.counts.available));
    let mut oldest: Option<(kairos_core::Timestamp, &str)> = None;
    for q in busiest.into_iter().take(OLDEST_LOOKUPS) {
        if let Some(at) = ui.engine.oldest_available(&q.name).await?
            && oldest.is_none_or(|(t, _)| at < t)
        {
            oldest = Some((at, q.name.as_str()));
        }
    }
    let waited = oldest.map_or(0, |(at, _)| (now.as_second() - at.as_second()).max(0));
    let oldest = oldest.map(|(at, q)| (at, q.to_string()));
    let more_queues = page::cap(&mut queues);
    Ok(html! {
        h1 { "Overview" }
        div #overview-live data-live {
            div.cards {
                (card("available", "Waiting to run", total.available))
                (card("running", "Running", total.running))
                (card("scheduled", "Scheduled or retrying", total.scheduled + total.retryable))
                (card("dead", "Dead", total.dead))
                (card("workers-online", "Workers online", online as u64))
                div.card #card-oldest data-value=(waited) {
                    div.value { @if oldest.is_some() { (page::span(waited)) } @else { "—" } }
                    div.label {
                        "Oldest waiting job"
                        @if let Some((_, q)) = &oldest { " (" a href={ "/ui/jobs" (page::query(&[("queue", Some(q)), ("state", Some("available"))])) } { (q) } ")" }
                    }
                }
            }
            h2 { "Completed and failed per minute, last hour" }
            (chart(&minutes))
            h2 { "Queues" }
            @if queues.is_empty() {
                p.muted { "No queue has held a job yet." }
            } @else {
                (super::queues::table(&queues))
                (more_queues)
            }
            h2 { "Schedules firing next" }
            @if schedules.is_empty() {
                p.muted { "No active schedule." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Schedule" } th { "Cron" } th { "Next run" } th.hide-narrow { "Queue" } } }
                    tbody {
                        @for s in &schedules {
                            tr {
                                td { a href={ "/ui/schedules/" (s.id) } { (s.name) } }
                                td { code { (s.cron) } " " span.muted { (s.timezone) } }
                                td { @if let Some(at) = s.next_run_at { (time(at, now)) } }
                                td.hide-narrow { (s.job.queue) }
                            }
                        }
                    }
                } }
            }
            p.muted { "Workers: " (online) " online · " a href="/ui/workers" { "all workers" } " · refreshes every 5 s" }
        }
    })
}

fn card(id: &str, label: &str, value: u64) -> Markup {
    html! {
        div.card #{ "card-" (id) } data-value=(value) {
            div.value { (value) }
            div.label { (label) }
        }
    }
}

/// The last hour as bars, a minute each: completed (green) under failed (red). The
/// totals are on the element (`data-completed`, `data-failed`) and in a table beside it
/// for screen readers.
fn chart(minutes: &[Minute]) -> Markup {
    const W: u64 = 600;
    const H: u64 = 120;
    let bar = W / minutes.len().max(1) as u64;
    let peak = minutes
        .iter()
        .map(|m| m.completed + m.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let height = |n: u64| n * (H - 10) / peak;
    let completed: u64 = minutes.iter().map(|m| m.completed).sum();
    let failed: u64 = minutes.iter().map(|m| m.failed).sum();
    html! {
        figure #throughput data-completed=(completed) data-failed=(failed) {
            svg.chart viewBox={ "0 0 " (W) " " (H) } preserveAspectRatio="none" role="img"
                aria-label={ (completed) " completed and " (failed) " failed in the last hour" } {
                @for (i, m) in minutes.iter().enumerate() {
                    @let x = i as u64 * bar;
                    @let c = height(m.completed);
                    @let f = height(m.failed);
                    @if c > 0 {
                        rect.completed x=(x) y=(H - c) width=(bar.saturating_sub(1)) height=(c) {
                            title { (m.completed) " completed at " (clock(m.minute)) }
                        }
                    }
                    @if f > 0 {
                        rect.failed x=(x) y=(H - c - f) width=(bar.saturating_sub(1)) height=(f) {
                            title { (m.failed) " failed at " (clock(m.minute)) }
                        }
                    }
                }
            }
            figcaption.legend {
                span.completed { (completed) " completed" }
                span.failed { (failed) " failed attempts" }
                span.muted { "this node, since " (clock(minutes.first().map_or(0, |m| m.minute))) " UTC" }
            }
        }
    }
}

/// A minute since the epoch as `HH:MM` (UTC).
fn clock(minute: i64) -> String {
    kairos_core::Timestamp::from_second(minute * 60)
        .map(|t| t.strftime("%H:%M").to_string())
        .unwrap_or_default()
}
