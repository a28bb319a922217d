//! `/ui/workers`: every worker heard from in the last day (those serving a queue the
//! viewer sees): name, host, version, queues, running jobs, last seen, online or offline.

use super::Ui;
use super::page::{self, badge, time, word};
use super::session::Viewer;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::html;

/// `GET /ui/workers`.
pub async fn list(State(ui): State<Ui>, Extension(viewer): Extension<Viewer>) -> Response {
    let workers = match ui.engine.workers().await {
        Ok(mut w) => {
            w.workers.retain(|w| viewer.access.sees_worker(w));
            w.workers
        }
        Err(e) => return page::failed_page(&viewer, "Workers", e.into()),
    };
    let now = ui.engine.store().now();
    page::ok(page::frame(
        Some(&viewer),
        "Workers",
        "Workers",
        html! {
            h1 { "Workers" }
            div #workers-live data-live {
                @if workers.is_empty() {
                    p.muted { "No worker has been heard from in the last day." }
                } @else {
                    div.scroll { table #worker-table {
                        thead { tr { th { "Name" } th { "Host" } th.hide-narrow { "Version" } th { "Queues" } th.num { "Running" } th { "Last seen" } th { "State" } } }
                        tbody {
                            @for w in &workers {
                                tr data-worker=(w.name) {
                                    td { code { (w.name) } }
                                    td { (w.hostname.as_deref().unwrap_or("—")) }
                                    td.hide-narrow { (w.version.as_deref().unwrap_or("—")) }
                                    td { (w.queues.join(", ")) }
                                    td.num { (w.running) }
                                    td { (time(w.last_seen_at, now)) }
                                    td { (badge(&word(&w.state))) }
                                }
                            }
                        }
                    } }
                }
            }
        },
    ))
}
