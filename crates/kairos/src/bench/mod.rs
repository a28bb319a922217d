//! `kairos bench`: throughput, latency and timing precision of a Kairos server, measured
//! the same way as the peer harness in `shared/bench/peers` (same workloads, same JSON
//! keys), through `kairos-client` as users' programs would drive it.
//!
//! - [`server`]: the server under test: one this command starts (fresh data dir per
//!   workload), or an existing one (`--server URL`).
//! - [`throughput`] (W1), [`latency`] (W2), [`delayed`] (W3), [`cron`] (W4): the workloads.
//! - [`report`]: percentiles, the JSON line and the table.

mod cron;
mod delayed;
mod latency;
mod pool;
mod report;
mod server;
mod throughput;

use anyhow::{Context, bail};
use clap::ValueEnum;
use kairos_client::{Client, RetryPolicy};
use report::Record;
use std::path::PathBuf;

/// Which workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// W1: enqueue N no-op jobs in batches, then lease and ack them all.
    Throughput,
    /// W2: idle workers; a producer enqueues one job every 2 ms for 10 s.
    Latency,
    /// W3: 2,000 jobs delayed 1-8 s; how late does each start?
    Delayed,
    /// W4: 1,000 schedules firing every second for 10 s (`--schedules`, `--cron`,
    /// `--cron-secs`); fire lag, and no slot missed or run twice.
    Cron,
    /// W1, W2, W3 and W4 in turn.
    All,
}

/// `kairos bench` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Workload to run.
    #[arg(long, value_enum, default_value = "all")]
    pub workload: Workload,
    /// Jobs in the throughput workload.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Jobs per enqueue batch.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Jobs in flight at once across all workers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Jobs per lease request (lease loops: concurrency / lease-batch, at least 4).
    #[arg(long, default_value_t = 200)]
    pub lease_batch: usize,
    /// Results per ack request.
    #[arg(long, default_value_t = 200)]
    pub ack_batch: usize,
    /// Seconds the latency workload produces for (one job every 2 ms).
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Jobs in the delayed workload.
    #[arg(long, default_value_t = 2_000)]
    pub delayed_jobs: usize,
    /// Longest delay in the delayed workload, in seconds (delays are uniform from 1 s).
    #[arg(long, default_value_t = 8)]
    pub delay_max_secs: u64,
    /// Schedules in the cron workload.
    #[arg(long, default_value_t = 1_000)]
    pub schedules: usize,
    /// Seconds the cron workload measures.
    #[arg(long, default_value_t = 10)]
    pub cron_secs: u64,
    /// The cron expression of every schedule of the cron workload (UTC); with
    /// `0 * * * * *` all of them fire in the same second of each minute (give
    /// `--cron-secs` a minute or more).
    #[arg(long, default_value = "* * * * * *")]
    pub cron: String,
    /// Print one JSON line per workload on stdout (the peer harness's keys).
    #[arg(long)]
    pub json: bool,
    /// Benchmark an already running server instead of starting one.
    #[arg(long)]
    pub server: Option<String>,
    /// The bearer token for a server with auth on (an `admin` token).
    #[arg(long, env = "KAIROS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Start the server on PostgreSQL at this URL, in a schema of its own (dropped after).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Parent directory for the started server's data (default: a temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Fewest lease loops a workload runs, so that fetching overlaps reporting.
const MIN_LEASE_LOOPS: usize = 4;

/// How many lease loops the workers run, and how many jobs each lease asks for: enough
/// loops to keep `concurrency` jobs fetched ahead, and never fewer than four.
fn lease_loops(args: &BenchArgs) -> (usize, usize) {
    let loops = args
        .concurrency
        .div_ceil(args.lease_batch)
        .max(MIN_LEASE_LOOPS);
    (loops, args.lease_batch)
}

/// Runs the chosen workloads and prints their results.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.lease_batch == 0 || args.ack_batch == 0 || args.batch == 0 {
        bail!("--concurrency, --lease-batch, --ack-batch and --batch must be at least 1");
    }
    if args.delay_max_secs < 1 {
        bail!("--delay-max-secs must be at least 1");
    }
    let workloads = match args.workload {
        Workload::All => vec![
            Workload::Throughput,
            Workload::Latency,
            Workload::Delayed,
            Workload::Cron,
        ],
        w => vec![w],
    };
    let mut records = Vec::new();
    for w in workloads {
        let target = server::Target::start(&args).await?;
        let mut client = Client::new(&target.base)?;
        if let Some(t) = &args.token {
            client = client.with_token(t);
        }
        client.ready().await.context("the server is not ready")?;
        // The workloads measure the server as it answers: a retry would hide a refusal,
        // and the key every retried enqueue carries would add a write to each.
        let client = client.with_retry(RetryPolicy::NEVER);
        let mut record = match w {
            Workload::Throughput => throughput::run(&client, &args).await?,
            Workload::Latency => latency::run(&client, &args).await?,
            Workload::Delayed => delayed::run(&client, &args).await?,
            Workload::Cron => cron::run(&client, &args).await?,
            Workload::All => unreachable!("expanded above"),
        };
        record.settings(&args, target.store_label());
        target.stop().await?;
        if args.json {
            println!("{}", serde_json::to_string(&record)?);
        }
        records.push(record);
    }
    if !args.json {
        report::print_table(&records);
    }
    if records.iter().any(|r: &Record| !r.ok) {
        bail!("a workload lost or duplicated jobs (see the table)");
    }
    Ok(())
}
