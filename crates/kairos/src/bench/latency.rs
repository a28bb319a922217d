//! W2, latency: workers idle and waiting (long-poll); a producer enqueues one job every
//! 2 ms on an absolute schedule for the given seconds, not waiting for one enqueue to
//! answer before sending the next. Each job's latency is its start time minus the time
//! taken right before its enqueue call.

use super::BenchArgs;
use super::pool::{self, Tally, now_ms};
use super::report::{Record, progress};
use kairos_client::Client;
use kairos_core::RawValue;
use kairos_core::api::EnqueueRequest;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const QUEUE: &str = "bench-w2";
/// Enqueue requests in flight at most (as in the peers' producer).
const MAX_PENDING: usize = 2_000;

/// Runs W2.
pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<Record> {
    let n = (args.latency_secs * 500) as usize;
    let bar = progress(n as u64, "W2 latency");
    let tally = Tally::new(n);
    let handles = pool::start_for(client, QUEUE, args, &tally, &bar);
    // Workers start idle, as in the peer harness.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING));
    let t0 = Instant::now();
    let mut producers = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(t0 + Duration::from_micros(2_000 * i as u64)).await;
        let permit = pending.clone().acquire_owned().await?;
        let client = client.clone();
        producers.push(tokio::spawn(async move {
            let t = now_ms();
            let req = EnqueueRequest {
                queue: Some(QUEUE.into()),
                kind: "noop".into(),
                payload: Some(RawValue::from_string(format!("{{\"n\":{i},\"t\":{t}}}"))?),
                ..Default::default()
            };
            client.enqueue(&req).await?;
            drop(permit);
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    pool::finish(&tally, handles, &bar, Duration::from_secs(60)).await?;
    let mut r = Record::new("W2", n);
    r.total_s = Some(t0.elapsed().as_secs_f64());
    r.latencies(&tally.delays_ms());
    r.account(&tally);
    Ok(r)
}
