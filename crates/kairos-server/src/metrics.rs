//! The server's metrics, in Prometheus form (`GET /metrics`): what the store's commits
//! did (it is the store's [`Observer`]), what the HTTP edge answered (fed by
//! `http::layers::observe`), and gauges read at scrape time from what is already kept
//! (the queues' kept counts, the worker registry, the writer's queue): no table is
//! scanned per scrape.
//!
//! prometheus-client rather than the `metrics` facade: a registry per server, so the many
//! servers of a test process never mix their numbers (the facade's recorder is global),
//! explicit histograms, and a small dependency tree.
//!
//! Label cardinality is bounded: queue names past the first [`MAX_QUEUE_LABELS`] fold
//! into `_other`; routes are path templates (`/v1/jobs/{id}`), never raw paths.

use kairos_core::JobState;
use kairos_core::api::WorkerInfo;
use kairos_core::worker::WorkerState;
use kairos_store::activity::{Activity, Observer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

/// Queue names given a label of their own; the rest count as `_other`.
pub const MAX_QUEUE_LABELS: usize = 1_000;
/// The label of queues past [`MAX_QUEUE_LABELS`].
pub const OTHER_QUEUE: &str = "_other";

/// Buckets of the `_seconds` histograms: 1 ms to an hour.
const SECONDS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];
/// Buckets of the commit batch size: 1 to 1,024 operations.
const SIZES: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabel {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    method: &'static str,
    route: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    queue_labels: Mutex<HashSet<String>>,
    enqueued: Family<QueueLabel, Counter>,
    completed: Family<QueueLabel, Counter>,
    failed: Family<QueueLabel, Counter>,
    dead: Family<QueueLabel, Counter>,
    expired: Family<QueueLabel, Counter>,
    jobs: Family<QueueStateLabel, Gauge>,
    wait: Histograms<QueueLabel>,
    run: Histograms<QueueLabel>,
    schedule_lag: Histogram,
    workers: Family<StateLabel, Gauge>,
    auth_denied: Family<ReasonLabel, Counter>,
    requests: Family<RequestLabel, Counter>,
    request_seconds: Histograms<RouteLabel>,
    commit_seconds: Histogram,
    commit_batch: Histogram,
    queue_depth: Gauge,
    sink_lag: Family<SinkLabel, Gauge>,
    recent: Mutex<HashMap<String, VecDeque<Minute>>>,
}

/// Minutes of history [`Metrics::recent`] keeps.
pub const RECENT_MINUTES: usize = 60;

/// One minute's completed jobs and failed attempts (the counters' increments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    /// Jobs completed in it.
    pub completed: u64,
    /// Attempts failed in it (retried or dead, lease expiries included).
    pub failed: u64,
}

/// The current minute since the Unix epoch, by the system clock.
pub fn minute_now() -> i64 {
    jiff::Timestamp::now().as_second().div_euclid(60)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            queue_labels: Mutex::new(HashSet::new()),
            enqueued: Family::default(),
            completed: Family::default(),
            failed: Family::default(),
            dead: Family::default(),
            expired: Family::default(),
            jobs: Family::default(),
            wait: Family::new_with_constructor(seconds_histogram),
            run: Family::new_with_constructor(seconds_histogram),
            schedule_lag: seconds_histogram(),
            workers: Family::default(),
            auth_denied: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds_histogram),
            commit_seconds: seconds_histogram(),
            commit_batch: Histogram::new(SIZES),
            queue_depth: Gauge::default(),
            sink_lag: Family::default(),
            recent: Mutex::new(HashMap::new()),
        };
        let r = &mut registry;
        r.register("kairos_jobs_enqueued", "Jobs created", m.enqueued.clone());
        r.register(
            "kairos_jobs_completed",
            "Jobs completed",
            m.completed.clone(),
        );
        r.register(
            "kairos_jobs_failed",
            "Failed attempts (retried or dead), lease expiries included",
            m.failed.clone(),
        );
        r.register("kairos_jobs_dead", "Jobs that became dead", m.dead.clone());
        r.register(
            "kairos_leases_expired",
            "Leases that ran out before their worker reported",
            m.expired.clone(),
        );
        r.register(
            "kairos_jobs",
            "Jobs by queue and state, from the kept counts",
            m.jobs.clone(),
        );
        r.register(
            "kairos_job_wait_seconds",
            "From a job's run_at to its lease",
            m.wait.clone(),
        );
        r.register(
            "kairos_job_run_seconds",
            "From a lease to its report (or expiry)",
            m.run.clone(),
        );
        r.register(
            "kairos_schedule_lag_seconds",
            "From a schedule's fire time to its run's creation",
            m.schedule_lag.clone(),
        );
        r.register(
            "kairos_workers",
            "Workers heard from in the last day, by state",
            m.workers.clone(),
        );
        r.register(
            "kairos_auth_denied",
            "Requests refused by authentication or authorisation",
            m.auth_denied.clone(),
        );
        r.register(
            "kairos_http_requests",
            "HTTP requests answered",
            m.requests.clone(),
        );
        r.register(
            "kairos_http_request_duration_seconds",
            "From a request's head to its answer",
            m.request_seconds.clone(),
        );
        r.register(
            "kairos_store_commit_seconds",
            "Store commits (SQLite: each group commit)",
            m.commit_seconds.clone(),
        );
        r.register(
            "kairos_store_commit_batch_size",
            "Operations per store commit",
            m.commit_batch.clone(),
        );
        r.register(
            "kairos_store_queue_depth",
            "Writes waiting for the store's writer",
            m.queue_depth.clone(),
        );
        r.register(
            "kairos_sink_lag_events",
            "Events committed that a sink has not yet had confirmed by its broker",
            m.sink_lag.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The label for `queue`: itself while fewer than [`MAX_QUEUE_LABELS`] are named,
    /// else [`OTHER_QUEUE`].
    fn queue(&self, queue: &str) -> QueueLabel {
        let mut named = self.queue_labels.lock().unwrap_or_else(|e| e.into_inner());
        let queue = if named.contains(queue) {
            queue.to_string()
        } else if named.len() < MAX_QUEUE_LABELS {
            named.insert(queue.to_string());
            queue.to_string()
        } else {
            OTHER_QUEUE.to_string()
        };
        QueueLabel { queue }
    }

    /// An answered request: `route` is its path template (`None`: it matched none).
    pub fn request(&self, method: &str, route: Option<&str>, status: u16, seconds: f64) {
        let method = method_label(method);
        let route = route.unwrap_or("unmatched").to_string();
        self.requests
            .get_or_create(&RequestLabel {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabel { method, route })
            .observe(seconds);
    }

    /// How many events `sink` is behind the log.
    pub fn sink_lag(&self, sink: &str, lag: u64) {
        self.sink_lag
            .get_or_create(&SinkLabel {
                sink: sink.to_string(),
            })
            .set(lag.min(i64::MAX as u64) as i64);
    }

    /// Completed jobs and failed attempts in each of the last [`RECENT_MINUTES`] minutes
    /// up to `now` (a [`minute_now`]), oldest first, summed over the queues `sees`
    /// allows (by their metrics label: queues past [`MAX_QUEUE_LABELS`] are `_other`).
    /// Kept in memory by this process, from the same commits as the counters.
    pub fn recent(&self, now: i64, sees: impl Fn(&str) -> bool) -> Vec<Minute> {
        let first = now - RECENT_MINUTES as i64 + 1;
        let mut out: Vec<Minute> = (first..=now)
            .map(|minute| Minute {
                minute,
                ..Minute::default()
            })
            .collect();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for minutes in recent.iter().filter(|(q, _)| sees(q)).map(|(_, m)| m) {
            for m in minutes.iter().filter(|m| (first..=now).contains(&m.minute)) {
                let slot = &mut out[(m.minute - first) as usize];
                slot.completed += m.completed;
                slot.failed += m.failed;
            }
        }
        out
    }

    fn count_recent(&self, queue: &str, completed: u64, failed: u64) {
        let now = minute_now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // The name is copied only the first time a queue counts (this runs per commit).
        if !recent.contains_key(queue) {
            recent.insert(queue.to_string(), VecDeque::new());
        }
        let minutes = recent.get_mut(queue).expect("just inserted");
        match minutes.back_mut() {
            Some(m) if m.minute == now => {
                m.completed += completed;
                m.failed += failed;
            }
            _ => minutes.push_back(Minute {
                minute: now,
                completed,
                failed,
            }),
        }
        while minutes
            .front()
            .is_some_and(|m| m.minute <= now - RECENT_MINUTES as i64)
        {
            minutes.pop_front();
        }
    }

    /// A request refused by auth, for `reason`.
    pub fn auth_denied(&self, reason: &'static str) {
        self.auth_denied
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The exposition, after setting the scrape-time gauges from `counts` (per queue and
    /// state), `workers` and `waiting_writes`.
    pub fn render(
        &self,
        counts: &[kairos_core::Queue],
        workers: &[WorkerInfo],
        waiting_writes: Option<u64>,
    ) -> String {
        for q in counts {
            let queue = self.queue(&q.name).queue;
            for state in JobState::ALL {
                self.jobs
                    .get_or_create(&QueueStateLabel {
                        queue: queue.clone(),
                        state: state.as_str(),
                    })
                    .set(q.counts.get(state) as i64);
            }
        }
        for state in [WorkerState::Online, WorkerState::Offline] {
            let n = workers.iter().filter(|w| w.state == state).count();
            let label = match state {
                WorkerState::Online => "online",
                WorkerState::Offline => "offline",
            };
            self.workers
                .get_or_create(&StateLabel { state: label })
                .set(n as i64);
        }
        self.queue_depth.set(waiting_writes.unwrap_or(0) as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String never fails");
        out
    }
}

/// Standard methods by name; anything else is `other` (bounded cardinality).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

impl Observer for Metrics {
    fn committed(&self, activity: &Activity) {
        for (name, a) in &activity.queues {
            let label = self.queue(name);
            let add = |family: &Family<QueueLabel, Counter>, n: u64| {
                if n > 0 {
                    family.get_or_create(&label).inc_by(n);
                }
            };
            add(&self.enqueued, a.enqueued);
            add(&self.completed, a.completed);
            add(&self.failed, a.failed);
            add(&self.dead, a.dead);
            add(&self.expired, a.expired);
            if a.completed > 0 || a.failed > 0 {
                self.count_recent(&label.queue, a.completed, a.failed);
            }
            if !a.wait_seconds.is_empty() {
                let h = self.wait.get_or_create(&label);
                a.wait_seconds.iter().for_each(|s| h.observe(*s));
            }
            if !a.run_seconds.is_empty() {
                let h = self.run.get_or_create(&label);
                a.run_seconds.iter().for_each(|s| h.observe(*s));
            }
        }
        for s in &activity.schedule_lag_seconds {
            self.schedule_lag.observe(*s);
        }
    }

    fn commit_took(&self, seconds: f64, operations: usize) {
        self.commit_seconds.observe(seconds);
        self.commit_batch.observe(operations as f64);
    }
}
