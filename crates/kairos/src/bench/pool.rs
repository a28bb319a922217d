//! The benchmark's workers: the worker runtime of `kairos-client` (so the runtime is
//! measured as users get it), with a handler that notes when each job started. Every
//! job's payload carries its index `n`, so lost and duplicated jobs are counted exactly.

use kairos_client::Client;
use kairos_client::worker::{JobContext, Worker};
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

    /// Jobs run so far (their reports sent by the time the worker stops).
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

    /// When the worker stopped, every job run and reported.
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

    /// `k` more jobs ran; once all did, the worker is told to stop.
    fn complete(&self, k: usize) {
        let total = self.completed.fetch_add(k, Ordering::AcqRel) + k;
        if total >= self.started.len() {
            self.done.send_replace(true);
        }
    }

    /// The worker stopped with every report sent; `refused` of them the server refused.
    fn finished(&self, refused: usize) {
        self.failed_acks.fetch_add(refused, Ordering::AcqRel);
        if self.completed() >= self.started.len() {
            let _ = self.done_at.set(std::time::Instant::now());
        }
    }
}

/// Starts the workers of a workload on `queue`, shaped by the bench flags: one worker of
/// the `kairos-client` runtime running `concurrency` jobs at once, with as many lease
/// requests going and as many jobs fetched ahead as `--lease-batch` asks for
/// (`concurrency / lease-batch` requests, at least four, each of up to `lease-batch`
/// jobs), acks in batches of up to `--ack-batch`.
pub fn start_for(
    client: &Client,
    queue: &str,
    args: &super::BenchArgs,
    tally: &Arc<Tally>,
    progress: &indicatif::ProgressBar,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let (loops, lease_max) = super::lease_loops(args);
    let ahead = (loops * lease_max).saturating_sub(args.concurrency);
    let (tally, progress) = (tally.clone(), progress.clone());
    let worker = Worker::new(client.clone(), "bench")
        .queue(queue)
        .concurrency(args.concurrency)
        .prefetch(ahead)
        .lease_loops(loops)
        .lease_batch(lease_max)
        .ack_batch(args.ack_batch)
        // Every job has run when the worker is told to stop; the grace only covers their
        // last reports on their way.
        .grace(std::time::Duration::from_secs(30))
        .handle_any({
            let tally = tally.clone();
            move |job: JobContext| {
                let (tally, progress) = (tally.clone(), progress.clone());
                async move {
                    // The job itself is a no-op: note when it started.
                    let p: Payload = job.payload()?;
                    tally.record(p.n, p.t, now_ms());
                    tally.complete(1);
                    progress.inc(1);
                    Ok(None)
                }
            }
        });
    let run = tokio::spawn(async move {
        let report = worker.run_until(async { tally.wait_done().await }).await?;
        // Every report is sent once the worker stops: the run is over then.
        tally.finished((report.refused + report.undelivered) as usize);
        anyhow::Ok(())
    });
    vec![run]
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

#[derive(serde::Deserialize)]
struct Payload {
    n: usize,
    #[serde(default)]
    t: f64,
}
