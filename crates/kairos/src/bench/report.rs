//! Results: one record per workload with the peer harness's keys, percentiles
//! (nearest-rank, like the peers'), the settings they were measured with, and the table.

use super::BenchArgs;
use super::pool::Tally;
use serde::Serialize;

/// One workload's result: one JSON line.
#[derive(Debug, Serialize)]
pub struct Record {
    /// Always `kairos`.
    pub system: &'static str,
    /// `embedded` (or `external` for `--server`).
    pub variant: &'static str,
    /// `embedded-fsync`: every answered write was fsync'd.
    pub durability: &'static str,
    /// W1, W2, W3.
    pub workload: &'static str,
    /// Jobs in the workload.
    pub jobs: usize,
    /// W1: jobs enqueued per second.
    pub enqueue_jobs_per_s: Option<f64>,
    /// W1: jobs leased and acked per second.
    pub process_jobs_per_s: Option<f64>,
    /// Wall time of the whole workload.
    pub total_s: Option<f64>,
    /// Percentiles of W2 latency or W3 lateness.
    pub min_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Maximum.
    pub max_ms: Option<f64>,
    /// W3: jobs that started before their time.
    pub early_count: Option<usize>,
    /// Every job completed exactly once.
    pub ok: bool,
    /// Jobs acked as completed.
    pub completed: usize,
    /// Jobs never started.
    pub lost: usize,
    /// Extra starts of a job already started.
    pub duplicates: usize,
    /// How it was measured.
    pub settings: Settings,
}

/// The settings a record was measured with.
#[derive(Debug, Serialize, Default)]
pub struct Settings {
    store: &'static str,
    durability: &'static str,
    cores: usize,
    commit: &'static str,
    batch: usize,
    concurrency: usize,
    lease_batch: usize,
    ack_batch: usize,
    started_at: String,
}

impl Record {
    /// An empty record for `workload`.
    pub fn new(workload: &'static str, jobs: usize) -> Record {
        Record {
            system: "kairos",
            variant: "embedded",
            durability: "embedded-fsync",
            workload,
            jobs,
            enqueue_jobs_per_s: None,
            process_jobs_per_s: None,
            total_s: None,
            min_ms: None,
            mean_ms: None,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            max_ms: None,
            early_count: None,
            ok: false,
            completed: 0,
            lost: 0,
            duplicates: 0,
            settings: Settings {
                started_at: jiff::Timestamp::now().to_string(),
                ..Default::default()
            },
        }
    }

    /// Fills in completion, loss and duplicates from the workers' tally.
    pub fn account(&mut self, tally: &Tally) {
        self.completed = tally.completed();
        self.lost = tally.lost();
        self.duplicates = tally.duplicates();
        self.ok = self.lost == 0
            && self.duplicates == 0
            && tally.failed_acks() == 0
            && self.completed == self.jobs;
    }

    /// Fills in the distribution of `values` (ms).
    pub fn latencies(&mut self, values: &[f64]) {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return;
        }
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let pct = |p: f64| {
            let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
            r3(v[idx.clamp(1, v.len()) - 1])
        };
        self.min_ms = Some(r3(v[0]));
        self.mean_ms = Some(r3(v.iter().sum::<f64>() / v.len() as f64));
        self.p50_ms = Some(pct(50.0));
        self.p90_ms = Some(pct(90.0));
        self.p99_ms = Some(pct(99.0));
        self.max_ms = Some(r3(v[v.len() - 1]));
    }

    /// Records the settings and the store the numbers came from.
    pub fn settings(&mut self, args: &BenchArgs, store: (&'static str, &'static str)) {
        self.variant = store.0;
        self.durability = store.1;
        self.settings.store = store.0;
        self.settings.durability = store.1;
        self.settings.cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        self.settings.commit = option_env!("KAIROS_COMMIT").unwrap_or("unknown");
        self.settings.batch = args.batch;
        self.settings.concurrency = args.concurrency;
        self.settings.lease_batch = args.lease_batch;
        self.settings.ack_batch = args.ack_batch;
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:14} {bar:40} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// Prints the human-readable table.
pub fn print_table(records: &[Record]) {
    println!(
        "{:<4} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>5} {:>5}",
        "wl",
        "jobs",
        "enq/s",
        "proc/s",
        "total s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "completed",
        "lost",
        "dup"
    );
    for r in records {
        println!(
            "{:<4} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>5} {:>5}",
            r.workload,
            r.jobs,
            opt(r.enqueue_jobs_per_s, 0),
            opt(r.process_jobs_per_s, 0),
            opt(r.total_s, 2),
            opt(r.p50_ms, 2),
            opt(r.p90_ms, 2),
            opt(r.p99_ms, 2),
            opt(r.max_ms, 2),
            r.completed,
            r.lost,
            r.duplicates
        );
    }
    if let Some(r) = records.first() {
        println!(
            "store: {} ({}), {} cores, commit {}",
            r.settings.store, r.settings.durability, r.settings.cores, r.settings.commit
        );
    }
}
