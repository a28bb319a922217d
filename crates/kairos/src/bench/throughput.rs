//! W1, throughput: enqueue N no-op jobs `{"n": i}` in batches of B (one request after
//! another, like the peers' bulk APIs), then let workers with total concurrency C lease
//! and ack them all.

use super::BenchArgs;
use super::pool::{self, Tally};
use super::report::{Record, progress};
use kairos_client::Client;
use kairos_core::RawValue;
use kairos_core::api::EnqueueRequest;
use std::time::{Duration, Instant};

const QUEUE: &str = "bench-w1";

/// Runs W1.
pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<Record> {
    let n = args.jobs;
    let bar = progress(2 * n as u64, "W1 throughput");
    let t0 = Instant::now();
    let mut start = 0;
    while start < n {
        let end = (start + args.batch).min(n);
        let jobs: Vec<EnqueueRequest> = (start..end)
            .map(|i| EnqueueRequest {
                queue: Some(QUEUE.into()),
                kind: "noop".into(),
                payload: Some(RawValue::from_string(format!("{{\"n\":{i}}}")).expect("json")),
                ..Default::default()
            })
            .collect();
        let ids = client.enqueue_batch_ids(&jobs, None).await?;
        anyhow::ensure!(ids.len() == jobs.len(), "the batch answer lists every job");
        bar.inc((end - start) as u64);
        start = end;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();

    let tally = Tally::new(n);
    let t1 = Instant::now();
    let handles = pool::start_for(client, QUEUE, args, &tally, &bar);
    pool::finish(&tally, handles, &bar, Duration::from_secs(600)).await?;
    let done = tally.done_at().unwrap_or_else(Instant::now);
    let process_s = done.duration_since(t1).as_secs_f64();
    let mut r = Record::new("W1", n);
    r.enqueue_jobs_per_s = Some((n as f64 / enqueue_s).round());
    r.process_jobs_per_s = Some((n as f64 / process_s).round());
    r.total_s = Some(done.duration_since(t0).as_secs_f64());
    r.account(&tally);
    Ok(r)
}
