//! `kairos job enqueue|get|list|cancel|retry|delete`.

use super::table::{Table, fields};
use super::{ApiArgs, ClientCommand, Failure, Output, print, short_id};
use kairos_core::api::{EnqueueRequest, JobPage, ListQuery};
use kairos_core::{Job, Timestamp};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Jobs.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(clap::Subcommand, Debug)]
enum JobCommand {
    /// Enqueue one job.
    Enqueue(Enqueue),
    /// Show one job.
    Get { id: Uuid },
    /// List jobs, newest first.
    List(List),
    /// Cancel a job (a running one is asked to stop).
    Cancel { id: Uuid },
    /// Run a finished or waiting job again now.
    Retry { id: Uuid },
    /// Delete a job that is not running.
    Delete { id: Uuid },
}

#[derive(clap::Args, Debug)]
struct Enqueue {
    /// The job's kind (what its worker does).
    #[arg(long)]
    kind: String,
    /// The queue (default `default`).
    #[arg(long)]
    queue: Option<String>,
    /// The payload, as JSON (default `{}`).
    #[arg(long)]
    payload: Option<String>,
    /// -100 to 100, higher first.
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// Run after this long (`10m`).
    #[arg(long, conflicts_with = "run_at")]
    delay: Option<kairos_core::Duration>,
    /// Run at this time (RFC 3339).
    #[arg(long)]
    run_at: Option<Timestamp>,
    /// Attempts before it is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// At most one unfinished job of the queue has this key.
    #[arg(long)]
    unique_key: Option<String>,
    /// A label (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

/// Which jobs `job list` and `export` show.
#[derive(clap::Args, Debug, Clone)]
pub struct Filter {
    /// Only this queue's jobs.
    #[arg(long)]
    pub queue: Option<String>,
    /// scheduled, available, running, retryable, completed, dead or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only the runs of this schedule (its id).
    #[arg(long)]
    pub schedule_id: Option<String>,
    /// Only jobs whose id is this, or whose kind, unique key or a tag contains it.
    #[arg(long)]
    pub search: Option<String>,
}

impl Filter {
    /// The list query for one page of these jobs.
    pub fn query(&self, limit: Option<u32>, cursor: Option<String>) -> ListQuery {
        ListQuery {
            queue: self.queue.clone(),
            state: self.state.clone(),
            kind: self.kind.clone(),
            schedule_id: self.schedule_id.clone(),
            limit,
            cursor,
            q: self.search.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
struct List {
    #[command(flatten)]
    filter: Filter,
    /// Most jobs on the page (the server's default 50, at most 500).
    #[arg(long)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    #[arg(long)]
    cursor: Option<String>,
    /// Refresh the list in place until interrupted (as JSON: one page per line).
    #[arg(long)]
    watch: bool,
    /// How often `--watch` refreshes.
    #[arg(long, default_value = "2s", requires = "watch")]
    interval: kairos_core::Duration,
}

impl ClientCommand for JobArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let api = &self.api;
        let client = api.client()?;
        match self.command {
            JobCommand::Enqueue(e) => {
                let payload =
                    match e.payload {
                        Some(text) => Some(RawValue::from_string(text).map_err(|err| {
                            Failure::Usage(format!("--payload is not JSON: {err}"))
                        })?),
                        None => None,
                    };
                let req = EnqueueRequest {
                    queue: e.queue,
                    kind: e.kind,
                    payload,
                    priority: e.priority,
                    run_at: e.run_at,
                    delay: e.delay,
                    max_attempts: e.max_attempts,
                    unique_key: e.unique_key,
                    tags: (!e.tags.is_empty()).then_some(e.tags),
                    ..EnqueueRequest::default()
                };
                let job = client.enqueue(&req).await?;
                print(api, &job, job_fields);
            }
            JobCommand::Get { id } => print(api, &client.job(id).await?, job_fields),
            JobCommand::List(l) => {
                let query = l.filter.query(l.limit, l.cursor);
                if !l.watch {
                    let page = client.list(&query).await?;
                    print(api, &page, |p| jobs_table(api, p));
                    return Ok(());
                }
                loop {
                    let page = client.list(&query).await?;
                    match api.output() {
                        Output::Json => println!(
                            "{}",
                            serde_json::to_string(&page).expect("answers serialize")
                        ),
                        // Home, the page, then clear what an earlier, longer page left
                        // (no full clear first: it would flicker).
                        Output::Table => println!(
                            "\x1b[H{}(every {}; Ctrl-C stops)\x1b[J",
                            jobs_table(api, &page).replace('\n', "\x1b[K\n"),
                            l.interval
                        ),
                    }
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                    tokio::time::sleep(l.interval.as_std()).await;
                }
            }
            JobCommand::Cancel { id } => print(api, &client.cancel(id).await?, job_fields),
            JobCommand::Retry { id } => print(api, &client.retry(id).await?, job_fields),
            JobCommand::Delete { id } => {
                client.delete(id).await?;
                print(api, &serde_json::json!({"deleted": id}), |_| {
                    format!("deleted {id}\n")
                });
            }
        }
        Ok(())
    }
}

pub(super) fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

pub(super) fn job_fields(j: &Job) -> String {
    let mut pairs = vec![
        ("id", j.id.to_string()),
        ("queue", j.queue.clone()),
        ("kind", j.kind.clone()),
        ("state", j.state.as_str().to_string()),
        ("attempt", format!("{} of {}", j.attempt, j.max_attempts)),
        ("priority", j.priority.to_string()),
        ("run_at", time(Some(j.run_at))),
        ("created_at", time(Some(j.created_at))),
        ("started_at", time(j.started_at)),
        ("finished_at", time(j.finished_at)),
        ("payload", j.payload.get().to_string()),
    ];
    if let Some(k) = &j.unique_key {
        pairs.push(("unique_key", k.clone()));
    }
    if !j.tags.is_empty() {
        pairs.push(("tags", j.tags.join(", ")));
    }
    if let Some(r) = &j.result {
        pairs.push(("result", r.get().to_string()));
    }
    if let Some(e) = j.errors.last() {
        pairs.push(("last_error", e.error.clone()));
    }
    fields(&pairs)
}

fn jobs_table(api: &ApiArgs, page: &JobPage) -> String {
    let id_width = if api.full_ids { 36 } else { 12 };
    let mut t = Table::new(&[
        ("ID", id_width),
        ("QUEUE", 14),
        ("KIND", 16),
        ("STATE", 9),
        ("TRY", 5),
        ("RUN AT (UTC)", 19),
    ]);
    for j in &page.jobs {
        t.row(vec![
            short_id(api, &j.id),
            j.queue.clone(),
            j.kind.clone(),
            j.state.as_str().to_string(),
            format!("{}/{}", j.attempt, j.max_attempts),
            time(Some(j.run_at)),
        ]);
    }
    let mut out = t.render();
    if let Some(c) = &page.next_cursor {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}
