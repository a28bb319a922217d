//! The benchmark's workers: `workers` loops that each lease up to `lease_max` jobs
//! (long-polling), note when each job started, and ack them in chunks. Every job's
//! payload carries its index `n`, so lost and duplicated jobs are counted exactly.

use kairos_client::Client;
use kairos_core::api::{AckItem, AckRequest, LeaseRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::watch;

/// Epoch milliseconds with sub-millisecond resolution (comparable with the peers').
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// What the workers saw, per job index.
pub struct Tally {
    /// First start time (epoch ms, as f64 bits) per job; 0 = never started.
    started: Vec<AtomicU64>,
    /// The payload's reference time per job (enqueue or due time), f64 bits.
    reference: Vec<AtomicU64>,
    completed: AtomicUsize,
    duplicates: AtomicUsize,
    failed_acks: AtomicUsize,
    done_at: std::sync::OnceLock<std::time::Instant>,
    done: watch::Sender<bool>,
}

impl Tally {
    /// A tally for `n` jobs.
    pub fn new(n: usize) -> Arc<Tally> {
        Arc::new(Tally {
            started: (0..n).map(|_| AtomicU64::new(0)).collect(),
            reference: (0..n).map(|_| AtomicU64::new(0)).collect(),
            completed: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            failed_acks: AtomicUsize::new(0),
            done_at: std::sync::OnceLock::new(),
            done: watch::channel(false).0,
        })
    }

    /// Jobs completed (acked ok) so far.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Acquire)
    }

    /// Jobs started more than once.
    pub fn duplicates(&self) -> usize {
        self.duplicates.load(Ordering::Acquire)
    }

    /// Ack items the server refused.
    pub fn failed_acks(&self) -> usize {
        self.failed_acks.load(Ordering::Acquire)
    }

    /// Jobs never started.
    pub fn lost(&self) -> usize {
        self.started
            .iter()
            .filter(|s| s.load(Ordering::Acquire) == 0)
            .count()
    }

    /// When the last job was acked.
    pub fn done_at(&self) -> Option<std::time::Instant> {
        self.done_at.get().copied()
    }

    /// Resolves once every job is completed.
    pub async fn wait_done(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Stops the workers even if not everything completed (e.g. on a deadline).
    pub fn stop(&self) {
        self.done.send_replace(true);
    }

    /// Per job: start minus reference time, in ms, for jobs that started.
    pub fn delays_ms(&self) -> Vec<f64> {
        self.started
            .iter()
            .zip(&self.reference)
            .filter_map(|(s, r)| {
                let s = f64::from_bits(s.load(Ordering::Acquire));
                let r = f64::from_bits(r.load(Ordering::Acquire));
                (s > 0.0).then_some(s - r)
            })
            .collect()
    }

    fn record(&self, n: usize, reference: f64, start: f64) {
        let Some(slot) = self.started.get(n) else {
            return;
        };
        if slot
            .compare_exchange(0, start.to_bits(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.duplicates.fetch_add(1, Ordering::AcqRel);
        } else {
            self.reference[n].store(reference.to_bits(), Ordering::Release);
        }
    }

    fn complete(&self, k: usize) {
        let total = self.completed.fetch_add(k, Ordering::AcqRel) + k;
        if total >= self.started.len() {
            let _ = self.done_at.set(std::time::Instant::now());
            self.done.send_replace(true);
        }
    }
}

/// Starts the workers of a workload on `queue`, shaped by the bench flags.
pub fn start_for(
    client: &Client,
    queue: &str,
    args: &super::BenchArgs,
    tally: &Arc<Tally>,
    progress: &indicatif::ProgressBar,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let (workers, lease_max) = super::lease_loops(args);
    start(
        client,
        queue,
        workers,
        lease_max,
        args.ack_batch,
        args.concurrency,
        tally.clone(),
        progress.clone(),
    )
}

/// Waits until every job is completed (or `patience` runs out: then the record shows
/// what is missing), stops the workers and clears the progress bar.
pub async fn finish(
    tally: &Tally,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    progress: &indicatif::ProgressBar,
    patience: std::time::Duration,
) -> anyhow::Result<()> {
    if tokio::time::timeout(patience, tally.wait_done())
        .await
        .is_err()
    {
        tally.stop();
    }
    for w in workers {
        w.await??;
    }
    progress.finish_and_clear();
    Ok(())
}

/// Ack requests one worker keeps in flight at most.
const MAX_ACKS_IN_FLIGHT: usize = 4;

#[derive(serde::Deserialize)]
struct Payload {
    n: usize,
    #[serde(default)]
    t: f64,
}

/// Starts `workers` worker loops on `queue`; they stop when the tally is done.
///
/// `concurrency` bounds the jobs being processed at once (each job takes a permit while
/// it runs; the benchmark's jobs are no-ops). Leases fetch up to `lease_max` jobs ahead
/// and acks are sent in the background in chunks of `ack_batch`, so fetching, running
/// and reporting overlap, like a prefetching worker runtime (and like graphile-worker's
/// `localQueue` + batched completion in the peer harness). At most `MAX_ACKS_IN_FLIGHT`
/// ack requests per worker are outstanding.
#[allow(clippy::too_many_arguments)]
pub fn start(
    client: &Client,
    queue: &str,
    workers: usize,
    lease_max: usize,
    ack_batch: usize,
    concurrency: usize,
    tally: Arc<Tally>,
    progress: indicatif::ProgressBar,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    (0..workers)
        .map(|w| {
            let (client, tally, progress) = (client.clone(), tally.clone(), progress.clone());
            let permits = permits.clone();
            let queue = queue.to_string();
            tokio::spawn(async move {
                let mut done = tally.done.subscribe();
                let mut acks = tokio::task::JoinSet::new();
                let req = LeaseRequest {
                    queues: vec![queue],
                    worker: format!("bench-{w}"),
                    max: Some(lease_max as u32),
                    wait: Some("5s".parse().expect("duration")),
                    lease: None,
                };
                loop {
                    while let Some(r) = acks.try_join_next() {
                        r??;
                    }
                    if *done.borrow() {
                        break;
                    }
                    while acks.len() >= MAX_ACKS_IN_FLIGHT {
                        if let Some(r) = acks.join_next().await {
                            r??;
                        }
                    }
                    let leased = tokio::select! {
                        r = client.lease(&req) => r?,
                        _ = done.wait_for(|d| *d) => break,
                    };
                    let start = now_ms();
                    let mut items = Vec::with_capacity(leased.len());
                    for l in &leased {
                        // Run the (no-op) job in one of the `concurrency` slots.
                        let _slot = permits.acquire().await?;
                        let p: Payload = serde_json::from_str(l.job.payload.get())?;
                        tally.record(p.n, p.t, start);
                        items.push(AckItem::completed(l.job.id, l.lease_token));
                    }
                    let (client, tally, progress) =
                        (client.clone(), tally.clone(), progress.clone());
                    let worker = req.worker.clone();
                    acks.spawn(async move {
                        for chunk in items.chunks(ack_batch) {
                            let results = client
                                .ack(&AckRequest {
                                    worker: worker.clone(),
                                    results: chunk.to_vec(),
                                })
                                .await?;
                            let ok = results.iter().filter(|r| r.ok).count();
                            tally
                                .failed_acks
                                .fetch_add(results.len() - ok, Ordering::AcqRel);
                            progress.inc(ok as u64);
                            tally.complete(ok);
                        }
                        anyhow::Ok(())
                    });
                }
                while let Some(r) = acks.join_next().await {
                    r??;
                }
                Ok(())
            })
        })
        .collect()
}
