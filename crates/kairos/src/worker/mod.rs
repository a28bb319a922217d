//! `kairos worker`: a worker in any language, no SDK, on the worker runtime of
//! `kairos-client`. Each leased job either runs a command (`--exec`, see [`exec`]) or is
//! posted to a URL (`--http`, see [`http`]).

mod exec;
mod http;

use anyhow::Context;
use kairos_client::buffer::Buffer;
use kairos_client::worker::{JobContext, Worker};
use kairos_client::{Client, RetryPolicy};
use std::sync::Arc;

/// The error of a job stopped because it was cancelled or the worker is stopping.
const STOPPED: &str = "stopped: the job was cancelled, or the worker is shutting down";

/// `kairos worker`: runs a worker, or (`kairos worker list`) lists a server's workers.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WorkerCommand {
    #[command(subcommand)]
    pub list: Option<WorkerSubcommand>,
    #[command(flatten)]
    pub run: WorkerArgs,
}

/// What `kairos worker` does besides running a worker.
#[derive(clap::Subcommand, Debug)]
pub enum WorkerSubcommand {
    /// The workers the server heard from in the last day, online or not.
    List(crate::cli::workers::ListArgs),
}

/// `kairos worker --exec CMD | --http URL`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("handler").required(true).args(["exec", "http"])))]
pub struct WorkerArgs {
    /// The server to work for.
    #[arg(long, env = "KAIROS_SERVER", default_value = "http://127.0.0.1:7676")]
    server: String,
    /// The bearer token for a server with auth on (a `worker` token).
    #[arg(long, env = "KAIROS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A queue to lease from (repeat for several).
    #[arg(long = "queue", required = true)]
    queues: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How the server lists this worker (default: hostname and pid).
    #[arg(long)]
    name: Option<String>,
    /// Lease each job for this long, renewed by heartbeats while it runs (default: the
    /// server's lease).
    #[arg(long)]
    lease: Option<kairos_core::Duration>,
    /// Where results and follow-up enqueues wait while the server cannot be reached, to
    /// be sent when it is back (default: `$XDG_CACHE_HOME/kairos/worker`, else
    /// `~/.cache/kairos/worker`). Workers may share one.
    #[arg(long, env = "KAIROS_BUFFER_DIR")]
    buffer_dir: Option<std::path::PathBuf>,
    /// How long running jobs may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "30s")]
    grace: kairos_core::Duration,
    /// The command to run per job: one line, split into words as a shell would, run
    /// without a shell (write `sh -c '…'` for one).
    #[arg(long)]
    exec: Option<String>,
    /// Instead of a command, POST each job's JSON to this URL: 2xx completes it (the JSON
    /// body as result), 429/503 retries after `Retry-After`, anything else fails it.
    #[arg(long)]
    http: Option<String>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(default_name);
    let mut client = Client::new(&args.server)?;
    if let Some(t) = &args.token {
        client = client.with_token(t);
    }
    let client = client
        .identify(
            kairos_client::worker::hostname(),
            concat!("kairos ", env!("CARGO_PKG_VERSION")),
        )
        .with_retry(RetryPolicy {
            // A worker outlives outages: it keeps trying (the client warns at each try).
            attempts: u32::MAX,
            ..RetryPolicy::default()
        });
    // What to do with each job is checked first: a command that cannot run is refused
    // before anything else is touched.
    let worker = Worker::new(client, name.clone());
    let worker = match (&args.exec, &args.http) {
        (Some(line), _) => {
            let command = Arc::new(exec::resolve(line)?);
            worker.handle_any(move |job: JobContext| {
                let command = command.clone();
                async move { exec::execute(&command, job).await }
            })
        }
        (None, Some(url)) => {
            let target = Arc::new(http::Target::new(url)?);
            worker.handle_any(move |job: JobContext| {
                let target = target.clone();
                async move { target.deliver(job).await }
            })
        }
        (None, None) => anyhow::bail!("--exec or --http says what to do with each job"),
    };
    let buffer_dir = args.buffer_dir.clone().unwrap_or_else(Buffer::default_dir);
    let buffer = Buffer::open(&buffer_dir)?;
    if !buffer.is_empty() {
        tracing::info!(entries = buffer.len(), path = %buffer.path().display(), "the buffer holds entries from an earlier run: sending them");
    }
    let mut worker = worker
        .concurrency(args.concurrency)
        .grace(args.grace.as_std())
        .buffer(buffer);
    for q in &args.queues {
        worker = worker.queue(q);
    }
    if let Some(l) = args.lease {
        worker = worker.lease(l.as_std());
    }
    tracing::info!(worker = %name, server = %args.server, queues = ?args.queues, "working");
    let report = worker.run().await.context("the worker stopped")?;
    tracing::info!(
        completed = report.completed,
        failed = report.failed,
        stopped = report.stopped,
        buffered = report.buffered,
        "the worker stopped"
    );
    Ok(())
}

/// The hostname and pid.
fn default_name() -> String {
    format!(
        "{}-{}",
        kairos_client::worker::hostname(),
        std::process::id()
    )
}
