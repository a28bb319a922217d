//! W3, delayed precision: idle workers; 2,000 jobs whose delays are uniform in 1-8 s (the
//! same seeded sequence as the peer harness), enqueued with an absolute `run_at`. Each
//! job's lateness is its start time minus its intended run time.

use super::BenchArgs;
use super::pool::{self, Tally, now_ms};
use super::report::{Record, progress};
use kairos_client::Client;
use kairos_core::api::EnqueueRequest;
use kairos_core::{RawValue, Timestamp};
use std::time::Duration;

const QUEUE: &str = "bench-w3";

/// mulberry32, as in the peer harness, so every system gets the same delays.
fn rng(seed: u32) -> impl FnMut() -> f64 {
    let mut a = seed;
    move || {
        a = a.wrapping_add(0x6d2b_79f5);
        let mut t = a;
        t = (t ^ (t >> 15)).wrapping_mul(t | 1);
        t ^= t.wrapping_add((t ^ (t >> 7)).wrapping_mul(t | 61));
        ((t ^ (t >> 14)) as f64) / 4_294_967_296.0
    }
}

/// Delays in whole ms, uniform in [1000, max_s * 1000] (the peers' [1000, 8000] by default).
fn delays(n: usize, max_s: u64) -> Vec<u64> {
    let mut r = rng(12345);
    let spread = (max_s * 1000 - 1000 + 1) as f64;
    (0..n)
        .map(|_| 1000 + (r() * spread).floor() as u64)
        .collect()
}

/// Runs W3.
pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<Record> {
    let n = args.delayed_jobs;
    let bar = progress(n as u64, "W3 delayed");
    let tally = Tally::new(n);
    let handles = pool::start_for(client, QUEUE, args, &tally, &bar);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = now_ms();
    let delays = delays(n, args.delay_max_secs);
    for (chunk_no, chunk) in delays.chunks(1_000).enumerate() {
        let jobs = chunk
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let i = chunk_no * 1_000 + j;
                let due = base + *d as f64;
                let run_at = Timestamp::from_microsecond((due * 1000.0).round() as i64)?;
                Ok(EnqueueRequest {
                    queue: Some(QUEUE.into()),
                    kind: "noop".into(),
                    payload: Some(RawValue::from_string(format!("{{\"n\":{i},\"t\":{due}}}"))?),
                    run_at: Some(run_at),
                    ..Default::default()
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        client.enqueue_batch(&jobs, None).await?;
    }
    // Wait out the longest delay, then a minute for stragglers.
    let patience = Duration::from_secs(args.delay_max_secs + 60);
    pool::finish(&tally, handles, &bar, patience).await?;
    let mut r = Record::new("W3", n);
    let lateness = tally.delays_ms();
    r.early_count = Some(lateness.iter().filter(|d| **d < 0.0).count());
    r.latencies(&lateness);
    r.total_s = Some((now_ms() - base) / 1000.0);
    r.account(&tally);
    Ok(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn delays_match_the_peer_harness_sequence() {
        let d = super::delays(2000, 8);
        assert!(d.iter().all(|x| (1000..=8000).contains(x)));
        // First values of mulberry32(12345) scaled as in shared/bench/peers/lib/common.js.
        let mut r = super::rng(12345);
        let first = 1000 + (r() * 7001.0).floor() as u64;
        assert_eq!(d[0], first);
    }
}
