//! `kairos queue list|get|pause|resume|retry-dead|limit`.

use super::table::{Table, fields};
use super::{ApiArgs, ClientCommand, Failure, print};
use kairos_core::Queue;
use kairos_core::api::QueuePatch;

/// Queues.
#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(clap::Subcommand, Debug)]
enum QueueCommand {
    /// Every queue with its counts.
    List,
    /// One queue.
    Get { name: String },
    /// Stop leasing from a queue (enqueue goes on).
    Pause { name: String },
    /// Resume leasing.
    Resume { name: String },
    /// Move every dead job of the queue back to available.
    RetryDead { name: String },
    /// Set or remove (`none`) a queue's limits.
    Limit(Limit),
}

#[derive(clap::Args, Debug)]
struct Limit {
    name: String,
    /// Most unfinished jobs (enqueues past it answer 503), or `none`.
    #[arg(long)]
    max_depth: Option<String>,
    /// Most running jobs at once, or `none`.
    #[arg(long)]
    concurrency: Option<String>,
    /// Most leases per second, minute or hour (`100/s`), or `none`.
    #[arg(long)]
    rate: Option<String>,
}

/// `none` removes a limit; anything else must parse as `T`.
fn limit<T: std::str::FromStr>(
    flag: &str,
    v: Option<String>,
) -> Result<Option<Option<T>>, Failure> {
    match v.as_deref() {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(s) => s
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| Failure::Usage(format!("--{flag} {s:?}: a number, or none"))),
    }
}

impl ClientCommand for QueueArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let api = &self.api;
        let client = api.client()?;
        match self.command {
            QueueCommand::List => {
                let queues = client.queues().await?;
                let list = serde_json::json!({ "queues": queues });
                print(api, &list, |_| queues_table(&queues));
            }
            QueueCommand::Get { name } => print(api, &client.queue(&name).await?, queue_fields),
            QueueCommand::Pause { name } => {
                print(api, &client.set_paused(&name, true).await?, queue_fields)
            }
            QueueCommand::Resume { name } => {
                print(api, &client.set_paused(&name, false).await?, queue_fields)
            }
            QueueCommand::RetryDead { name } => {
                let n = client.retry_dead(&name).await?;
                print(api, &serde_json::json!({ "retried": n }), |_| {
                    format!("{n} dead jobs of {name} are available again\n")
                });
            }
            QueueCommand::Limit(l) => {
                let patch = QueuePatch {
                    paused: None,
                    max_depth: limit("max-depth", l.max_depth)?,
                    concurrency: limit("concurrency", l.concurrency)?,
                    rate: match l.rate.as_deref() {
                        None => None,
                        Some("none") => Some(None),
                        Some(r) => Some(Some(r.to_string())),
                    },
                };
                print(
                    api,
                    &client.change_queue(&l.name, &patch).await?,
                    queue_fields,
                );
            }
        }
        Ok(())
    }
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}

fn queue_fields(q: &Queue) -> String {
    let c = &q.counts;
    fields(&[
        ("name", q.name.clone()),
        ("paused", q.paused.to_string()),
        ("max_depth", or_none(q.limits.max_depth)),
        ("concurrency", or_none(q.limits.concurrency)),
        ("rate", or_none(q.limits.rate)),
        (
            "jobs",
            format!(
                "{} scheduled, {} available, {} running, {} retryable, {} completed, {} dead, {} cancelled",
                c.scheduled, c.available, c.running, c.retryable, c.completed, c.dead, c.cancelled
            ),
        ),
    ])
}

fn queues_table(queues: &[Queue]) -> String {
    let mut t = Table::new(&[
        ("QUEUE", 24),
        ("PAUSED", 6),
        ("WAITING", 9),
        ("AVAILABLE", 9),
        ("RUNNING", 9),
        ("DONE", 9),
        ("DEAD", 9),
    ]);
    for q in queues {
        let c = &q.counts;
        t.row(vec![
            q.name.clone(),
            if q.paused { "yes" } else { "no" }.into(),
            (c.scheduled + c.retryable).to_string(),
            c.available.to_string(),
            c.running.to_string(),
            c.completed.to_string(),
            c.dead.to_string(),
        ]);
    }
    t.render()
}
