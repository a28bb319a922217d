//! The worker runtime: handlers by job kind, run with a concurrency limit, fed by
//! long-polled leases, kept alive by heartbeats, reported by batched acks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kairos_client::ClientError> {
//! use kairos_client::{Client, worker::{JobContext, JobError, Worker}};
//! let client = Client::new("http://127.0.0.1:7676")?;
//! Worker::new(client, "mailer")
//!     .queue("email")
//!     .concurrency(8)
//!     .handle("welcome", |job: JobContext| async move {
//!         let to: String = job.payload::<serde_json::Value>()?["to"].to_string();
//!         if to.is_empty() {
//!             return Err(JobError::fatal("no address")); // dead at once, no retry
//!         }
//!         Ok(Some(serde_json::json!({ "sent": to })))
//!     })
//!     .run() // until SIGINT or SIGTERM
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! How it behaves:
//! - Leases ask for as many jobs as there are free slots (`concurrency`, plus
//!   `prefetch` jobs fetched ahead), long-polling up to 10 s (`lease_loops` requests at
//!   once); each job runs in a task of its own, holding its slot until reported.
//! - A job's lease is extended by a heartbeat every third of its length; a heartbeat
//!   answering `cancel_requested` (or that the lease is no longer this worker's) trips the
//!   job's cancellation ([`JobContext::cancelled`]).
//! - Reports go to one ack sender that sends whatever has gathered (up to 100) as soon
//!   as the previous ack is answered, so a slow job never holds back the others' acks.
//! - A handler that panics fails its attempt, the panic message as the error.
//! - Shutdown (a signal, or the future given to [`Worker::run_until`]): leasing stops,
//!   running jobs get the grace period (default 30 s) to finish and are acked; jobs still
//!   running then are stopped and reported failed with `worker shutdown`, to be retried
//!   at once elsewhere instead of after their lease.
//! - With a [`Buffer`] ([`Worker::buffer`]), reports and [`JobContext::enqueue`]s the
//!   server cannot take (it is down, the network is cut) are kept on disk and sent when
//!   it is back, by this run or the next one to open the same buffer. Without one, a
//!   report that cannot be delivered is dropped and its job runs again after its lease.

use crate::buffer::{Buffer, Delivery, Sent, Submitted};
use crate::{Client, ClientError};
use kairos_core::api::LeaseRequest;
use kairos_core::api::{AckItem, AckRequest, EnqueueRequest, HeartbeatItem, HeartbeatRequest};
use kairos_core::api::{LeasedJob, OutcomeKind};
use kairos_core::{Job, RawValue, Trace};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use uuid::Uuid;

/// How long a lease request waits for jobs.
const LEASE_WAIT: Duration = Duration::from_secs(10);
/// The lease length when neither the worker nor the answer says (the server's default).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Jobs one lease request asks for at most (the API's limit).
const MAX_LEASE: usize = kairos_core::validate::MAX_LEASE_MAX as usize;
/// How long a stopping worker tries to deliver its last reports.
const FINAL_ACKS: Duration = Duration::from_secs(10);
/// Ack requests on their way at once: the server commits concurrent ones together.
const ACKS_IN_FLIGHT: usize = 4;
/// Reports one ack request carries at most, unless the worker says otherwise.
const ACK_BATCH: usize = 100;
/// The error of a job stopped by shutdown.
pub const SHUTDOWN_ERROR: &str = "worker shutdown";

/// A handler's answer: a result to keep (or none), or why the attempt failed.
pub type JobResult = Result<Option<serde_json::Value>, JobError>;

/// Why a job's attempt failed, and what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Retry by the job's backoff (dead once its attempts are used up).
    Retry(String),
    /// Retry after this long instead of the backoff.
    RetryIn(String, Duration),
    /// Do not retry: the job goes to dead at once.
    Fatal(String),
}

impl JobError {
    /// Fails the attempt; the job is retried by its backoff.
    pub fn retry(why: impl Into<String>) -> JobError {
        JobError::Retry(why.into())
    }

    /// Fails the attempt; the job is retried after `after`.
    pub fn retry_in(why: impl Into<String>, after: Duration) -> JobError {
        JobError::RetryIn(why.into(), after)
    }

    /// Fails the job for good: no retry.
    pub fn fatal(why: impl Into<String>) -> JobError {
        JobError::Fatal(why.into())
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Retry(e) | JobError::RetryIn(e, _) | JobError::Fatal(e) => f.write_str(e),
        }
    }
}

/// Any error a handler meets with `?` fails the attempt, to be retried by the backoff.
impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> JobError {
        JobError::Retry(e.to_string())
    }
}

/// What a handler gets: the job, its lease, and its cancellation.
pub struct JobContext {
    /// The job as leased (state `running`, its attempt counted).
    pub job: Job,
    /// The lease this worker holds on it.
    pub lease_token: Uuid,
    /// When the lease runs out unless a heartbeat extends it (the server's clock, as
    /// leased; heartbeats keep moving it).
    pub lease_expires_at: kairos_core::Timestamp,
    cancel: watch::Receiver<bool>,
    client: Client,
    delivery: Delivery,
    trace: Option<Trace>,
}

impl JobContext {
    /// The payload, read as `T`.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_str(self.job.payload.get())
            .map_err(|e| JobError::fatal(format!("the payload does not read: {e}")))
    }

    /// Resolves once the job should stop: cancelled through the API, its lease lost to
    /// someone else, or the worker's shutdown grace over.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether [`JobContext::cancelled`] has resolved.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// The job and its lease as `POST /v1/lease` answered them.
    pub fn leased(&self) -> LeasedJob {
        LeasedJob {
            job: self.job.clone(),
            lease_token: self.lease_token,
            lease_expires_at: self.lease_expires_at,
        }
    }

    /// The client this worker uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Enqueues a follow-up job under a fresh `Idempotency-Key`. When the server is away
    /// and the worker has a [`Buffer`], the job waits there and is sent (once) when the
    /// server is back; without a buffer, the error is the caller's.
    pub async fn enqueue(&self, request: &EnqueueRequest) -> Result<Submitted, ClientError> {
        self.delivery.enqueue(request, self.trace.as_ref()).await
    }

    /// The trace context this run works in: the producer's trace (from the job's
    /// `trace`), with a span id of this run's own; `None` when the producer sent none.
    /// Send it on outgoing calls (`traceparent`/`tracestate`) to continue the trace;
    /// [`JobContext::enqueue`] does so for follow-up jobs.
    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }
}

type BoxedRun = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// Runs jobs of one kind.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job.
    fn run(&self, job: JobContext) -> BoxedRun;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    fn run(&self, job: JobContext) -> BoxedRun {
        Box::pin(self(job))
    }
}

/// What a worker did, once it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs reported completed.
    pub completed: u64,
    /// Jobs reported failed (retried or dead), shutdown's included.
    pub failed: u64,
    /// Jobs stopped at the end of the shutdown grace.
    pub stopped: u64,
    /// Reports the server refused (the lease was gone: someone else has the job).
    pub refused: u64,
    /// Reports that never reached the server and were not kept (no buffer, or it was
    /// full): their jobs run again after their leases.
    pub undelivered: u64,
    /// Entries left in the buffer when the worker stopped (this run's and earlier ones'),
    /// to be sent by the next run that opens it.
    pub buffered: u64,
}

#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    stopped: AtomicU64,
    /// Shared with the buffer's replay, which counts refusals too.
    refused: Arc<AtomicU64>,
    /// Reports the server answered (taken or refused).
    delivered: AtomicU64,
    /// Reports put in the buffer.
    kept: AtomicU64,
}

impl Tally {
    fn report(&self, buffer: Option<&Buffer>) -> WorkerReport {
        let load = |c: &AtomicU64| c.load(Ordering::Acquire);
        WorkerReport {
            completed: load(&self.completed),
            failed: load(&self.failed),
            stopped: load(&self.stopped),
            refused: load(&self.refused),
            undelivered: (load(&self.completed) + load(&self.failed))
                .saturating_sub(load(&self.delivered) + load(&self.kept)),
            buffered: buffer.map_or(0, Buffer::len),
        }
    }
}

/// A worker: handlers by kind, queues, and how many jobs run at once.
pub struct Worker {
    client: Client,
    name: String,
    queues: Vec<String>,
    concurrency: usize,
    prefetch: usize,
    lease_loops: usize,
    lease_batch: usize,
    ack_batch: usize,
    lease: Option<Duration>,
    grace: Duration,
    handlers: Handlers,
    buffer: Option<Buffer>,
}

/// Handlers by kind, and the one for every other kind.
#[derive(Default, Clone)]
struct Handlers {
    by_kind: HashMap<String, Arc<dyn Handler>>,
    any: Option<Arc<dyn Handler>>,
}

impl Handlers {
    fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.by_kind.get(kind).or(self.any.as_ref()).cloned()
    }
}

impl Worker {
    /// A worker named `name` (how the server lists it) using `client`. Unless the client
    /// was [identified](Client::identify), it tells the server this host's name and this
    /// runtime's version.
    pub fn new(client: Client, name: impl Into<String>) -> Worker {
        let client = if client.identified() {
            client
        } else {
            client.identify(
                hostname(),
                concat!("kairos-client ", env!("CARGO_PKG_VERSION")),
            )
        };
        Worker {
            client,
            name: name.into(),
            queues: Vec::new(),
            concurrency: 1,
            prefetch: 0,
            lease_loops: 1,
            lease_batch: MAX_LEASE,
            ack_batch: ACK_BATCH,
            lease: None,
            grace: Duration::from_secs(30),
            handlers: Handlers::default(),
            buffer: None,
        }
    }

    /// Leases from `queue` too (at least one queue is needed; default: `default`).
    pub fn queue(mut self, queue: impl Into<String>) -> Worker {
        self.queues.push(queue.into());
        self
    }

    /// Runs at most `n` jobs at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n.max(1);
        self
    }

    /// Also leases up to `n` jobs ahead of the free slots (default 0): they wait here,
    /// their leases kept by heartbeats, and start the moment a slot frees up. For many
    /// short jobs; a long job is better left on the server for another worker.
    pub fn prefetch(mut self, n: usize) -> Worker {
        self.prefetch = n;
        self
    }

    /// Keeps `n` lease requests going at once (default 1), so fetching overlaps with the
    /// answers of other requests. For high throughput with prefetching.
    pub fn lease_loops(mut self, n: usize) -> Worker {
        self.lease_loops = n.max(1);
        self
    }

    /// Asks for at most `n` jobs per lease request (default and most: 1,000), so several
    /// lease loops share the jobs that may be held.
    pub fn lease_batch(mut self, n: usize) -> Worker {
        self.lease_batch = n.clamp(1, MAX_LEASE);
        self
    }

    /// Sends at most `n` reports per ack request (default 100; at least 1, at most 1,000).
    pub fn ack_batch(mut self, n: usize) -> Worker {
        self.ack_batch = n.clamp(1, MAX_LEASE);
        self
    }

    /// Leases jobs for `lease` each (default: the server's), renewed by heartbeats.
    pub fn lease(mut self, lease: Duration) -> Worker {
        self.lease = Some(lease);
        self
    }

    /// How long running jobs may take to finish after shutdown begins (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Worker {
        self.grace = grace;
        self
    }

    /// Keeps what the server cannot take in `buffer` (see the module's documentation),
    /// and sends what it holds for this server from earlier runs.
    pub fn buffer(mut self, buffer: Buffer) -> Worker {
        self.buffer = Some(buffer);
        self
    }

    /// Runs jobs of `kind` with `handler`. A leased job of a kind without a handler fails
    /// its attempt, saying so.
    pub fn handle(mut self, kind: impl Into<String>, handler: impl Handler) -> Worker {
        self.handlers.by_kind.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Runs jobs of every kind without a handler of its own with `handler`.
    pub fn handle_any(mut self, handler: impl Handler) -> Worker {
        self.handlers.any = Some(Arc::new(handler));
        self
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> Result<WorkerReport, ClientError> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully. Fails only when
    /// leasing fails past the client's retries (the server is gone for good).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, ClientError> {
        if self.queues.is_empty() {
            self.queues.push("default".into());
        }
        let tally = Arc::new(Tally::default());
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // Jobs leased and not yet reported: running ones and those fetched ahead.
        let held_max = self.concurrency + self.prefetch;
        let held = Arc::new(Semaphore::new(held_max));
        let delivery = Delivery::new(self.client.clone(), self.buffer.clone());
        let replay = tokio::spawn(delivery.clone().replay(tally.refused.clone()));
        let (acks, outbox) = mpsc::unbounded_channel();
        // Raised when the last reports have had their time: what is on its way is kept.
        let (final_acks, _) = watch::channel(false);
        let sender = tokio::spawn(send_acks(
            delivery.clone(),
            self.name.clone(),
            outbox,
            self.ack_batch,
            tally.clone(),
            final_acks.subscribe(),
        ));
        // Raised when the grace is over: jobs still running stop.
        let (deadline, _) = watch::channel(false);
        let job = Running {
            client: self.client.clone(),
            worker: self.name.clone(),
            handlers: Arc::new(std::mem::take(&mut self.handlers)),
            acks: acks.clone(),
            delivery,
            deadline: deadline.subscribe(),
            tally: tally.clone(),
            lease: self.lease,
            slots,
        };
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.lease_loops {
            let request = LeaseRequest {
                queues: self.queues.clone(),
                worker: self.name.clone(),
                max: None,
                wait: Some(LEASE_WAIT.into()),
                lease: self.lease.map(Into::into),
            };
            loops.spawn(lease_loop(
                request,
                self.lease_batch,
                held.clone(),
                job.clone(),
            ));
        }
        let outcome = tokio::select! {
            failed = loops.join_next() => match failed {
                Some(Ok(Err(e))) => Err(e),
                _ => Ok(()),
            },
            _ = shutdown => Ok(()),
        };
        // Stop leasing, let held jobs finish within the grace, then stop the rest.
        loops.abort_all();
        drop(job);
        let all = held_max as u32;
        if tokio::time::timeout(self.grace, held.acquire_many(all))
            .await
            .is_err()
        {
            deadline.send_replace(true);
            let _ = held.acquire_many(all).await;
        }
        drop(acks);
        // The last reports get a bounded time: a server that is away must not keep a
        // stopping worker alive. Then what is still on its way goes to the buffer; with
        // none, those jobs come back when their leases run out (at least once).
        let mut sender = sender;
        if tokio::time::timeout(FINAL_ACKS, &mut sender).await.is_err() {
            if self.buffer.is_some() {
                final_acks.send_replace(true);
                let _ = sender.await;
            } else {
                sender.abort();
                tracing::warn!(
                    "some reports were not delivered before the worker stopped: their jobs run again after their leases"
                );
            }
        }
        replay.abort();
        let report = tally.report(self.buffer.as_ref());
        if report.buffered > 0 {
            tracing::warn!(
                entries = report.buffered,
                "reports wait in the buffer for the server: the next run with the same buffer sends them"
            );
        }
        outcome.map(|()| report)
    }
}

/// Leases as many jobs as may be held (at least one, waiting for room), and starts each
/// in a task of its own, until aborted or leasing fails past the client's retries.
async fn lease_loop(
    mut request: LeaseRequest,
    batch: usize,
    held: Arc<Semaphore>,
    job: Running,
) -> Result<(), ClientError> {
    loop {
        let first = held.clone().acquire_owned().await.expect("never closed");
        let mut permits = vec![first];
        while permits.len() < batch
            && let Ok(p) = held.clone().try_acquire_owned()
        {
            permits.push(p);
        }
        request.max = Some(permits.len() as u32);
        let leased = job.client.lease(&request).await?;
        for (leased, permit) in leased.into_iter().zip(permits) {
            let job = job.clone();
            tokio::spawn(async move {
                job.run(leased).await;
                drop(permit);
            });
        }
    }
}

/// What a leased job needs on its way through its handler.
#[derive(Clone)]
struct Running {
    client: Client,
    worker: String,
    handlers: Arc<Handlers>,
    acks: mpsc::UnboundedSender<AckItem>,
    delivery: Delivery,
    deadline: watch::Receiver<bool>,
    tally: Arc<Tally>,
    lease: Option<Duration>,
    /// One per handler running.
    slots: Arc<Semaphore>,
}

impl Running {
    async fn run(mut self, leased: LeasedJob) {
        let (id, token) = (leased.job.id, leased.lease_token);
        let length = self.lease.unwrap_or_else(|| {
            leased
                .job
                .started_at
                .and_then(|s| Duration::try_from(leased.lease_expires_at.duration_since(s)).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_LEASE)
        });
        let (cancel, cancelled) = watch::channel(false);
        let handler = self.handlers.get(&leased.job.kind);
        let kind = leased.job.kind.clone();
        let trace = leased.job.trace.as_ref().map(|t| Trace {
            traceparent: t.child(&format!("{:016x}", fastrand::u64(1..))),
            tracestate: t.tracestate.clone(),
        });
        let span = tracing::info_span!(
            "job",
            id = %id,
            kind = %kind,
            trace_id = trace.as_ref().map(|t| t.trace_id()).unwrap_or(""),
        );
        let ctx = JobContext {
            job: leased.job,
            lease_token: token,
            lease_expires_at: leased.lease_expires_at,
            cancel: cancelled,
            client: self.client.clone(),
            delivery: self.delivery.clone(),
            trace,
        };
        let Some(handler) = handler else {
            let error = format!("this worker has no handler for kind {kind:?}");
            self.report(failed(id, token, error, None));
            return;
        };
        // The lease is kept from now on, while the job waits for a slot too.
        let beats = heartbeats(
            self.client.clone(),
            self.worker.clone(),
            id,
            token,
            length,
            cancel.clone(),
        );
        tokio::pin!(beats);
        // Biased: a slot (or below, a result) that is there wins over the deadline.
        let slot = tokio::select! {
            biased;
            slot = self.slots.clone().acquire_owned() => slot.ok(),
            _ = &mut beats => None, // never ends by itself
            _ = self.deadline.wait_for(|d| *d) => None,
        };
        let Some(_slot) = slot else {
            // The grace ended before it could start: it runs elsewhere now.
            self.tally.stopped.fetch_add(1, Ordering::AcqRel);
            self.report(failed(
                id,
                token,
                SHUTDOWN_ERROR.into(),
                Some(Duration::ZERO),
            ));
            return;
        };
        // In this task (a task per job is enough), a panic caught as the attempt's error.
        let mut work = CatchPanic(Box::pin(tracing::Instrument::instrument(
            handler.run(ctx),
            span,
        )));
        let outcome = tokio::select! {
            biased;
            ran = &mut work => Some(ran),
            _ = &mut beats => None,
            _ = self.deadline.wait_for(|d| *d) => None,
        };
        let item = match outcome {
            Some(Ok(Ok(result))) => {
                let result = result.map(|v| {
                    RawValue::from_string(v.to_string()).expect("a JSON value is valid JSON")
                });
                AckItem {
                    result,
                    ..AckItem::completed(id, token)
                }
            }
            Some(Ok(Err(JobError::Retry(e)))) => failed(id, token, e, None),
            Some(Ok(Err(JobError::RetryIn(e, d)))) => failed(id, token, e, Some(d)),
            Some(Ok(Err(JobError::Fatal(e)))) => AckItem {
                retry: Some(false),
                ..failed(id, token, e, None)
            },
            Some(Err(panicked)) => failed(id, token, panicked, None),
            None => {
                // The grace is over: stop the handler and let the job run elsewhere now.
                cancel.send_replace(true);
                drop(work);
                self.tally.stopped.fetch_add(1, Ordering::AcqRel);
                failed(id, token, SHUTDOWN_ERROR.into(), Some(Duration::ZERO))
            }
        };
        self.report(item);
    }

    fn report(&self, item: AckItem) {
        let counter = match item.outcome {
            OutcomeKind::Completed => &self.tally.completed,
            OutcomeKind::Failed => &self.tally.failed,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        // The sender outlives every job (it ends once all senders are gone).
        let _ = self.acks.send(item);
    }
}

fn failed(id: Uuid, lease_token: Uuid, error: String, retry_in: Option<Duration>) -> AckItem {
    // The server refuses an empty error: a handler that said nothing still failed.
    let error = if error.is_empty() {
        "failed without a message".to_string()
    } else {
        error
    };
    AckItem {
        outcome: OutcomeKind::Failed,
        error: Some(error),
        retry_in: retry_in.map(Into::into),
        ..AckItem::completed(id, lease_token)
    }
}

/// A handler's run, its panic caught: answers `Err(message)` when it panicked.
struct CatchPanic(BoxedRun);

impl Future for CatchPanic {
    type Output = Result<JobResult, String>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let run = &mut self.0;
        // The future is dropped after a panic, never polled again: unwind safety holds.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(r)) => std::task::Poll::Ready(Ok(r)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic_message(panic))),
        }
    }
}

/// A handler's panic as an attempt's error.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("the handler panicked: {text}")
}

/// Extends one lease every third of its length until dropped; trips `cancel` when the
/// server says the job is cancelled or the lease is no longer this worker's. A failed
/// heartbeat is tried again at the next beat (the client retries within one already).
async fn heartbeats(
    client: Client,
    worker: String,
    id: Uuid,
    lease_token: Uuid,
    length: Duration,
    cancel: watch::Sender<bool>,
) {
    let every = (length / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let answer = client
            .heartbeat(&HeartbeatRequest {
                worker: worker.clone(),
                leases: vec![HeartbeatItem {
                    id,
                    lease_token,
                    extend: Some(length.into()),
                }],
            })
            .await;
        let Ok(results) = answer else { continue };
        if let Some(r) = results.first()
            && (!r.ok || r.cancel_requested == Some(true))
        {
            cancel.send_replace(true);
        }
    }
}

/// Sends reports as they come, up to [`ACKS_IN_FLIGHT`] requests at once: whatever
/// gathered while they were on their way goes in the next (up to `most`). Ends when every
/// sender is gone and all is sent; once `last_call` is raised, what is still on its way
/// is kept in the buffer instead.
async fn send_acks(
    delivery: Delivery,
    worker: String,
    mut outbox: mpsc::UnboundedReceiver<AckItem>,
    most: usize,
    tally: Arc<Tally>,
    last_call: watch::Receiver<bool>,
) {
    let mut in_flight = tokio::task::JoinSet::new();
    let mut batch = Vec::with_capacity(most);
    loop {
        // Room for one more request first: what gathers meanwhile goes in it.
        while in_flight.len() >= ACKS_IN_FLIGHT {
            in_flight.join_next().await;
        }
        if outbox.recv_many(&mut batch, most).await == 0 {
            break;
        }
        let request = AckRequest {
            worker: worker.clone(),
            results: std::mem::take(&mut batch),
        };
        let (delivery, tally) = (delivery.clone(), tally.clone());
        let mut last_call = last_call.clone();
        in_flight.spawn(async move {
            let sent = tokio::select! {
                sent = delivery.ack(&request) => sent,
                // The guard `wait_for` answers is dropped before keeping (it is not Send).
                _ = async { drop(last_call.wait_for(|l| *l).await) } => delivery.keep(&request).await,
            };
            count(sent, request.results.len(), &tally);
        });
    }
    while in_flight.join_next().await.is_some() {}
}

/// Counts what became of `n` reports.
fn count(sent: Sent, n: usize, tally: &Tally) {
    match sent {
        Sent::Answered(results) => {
            tally
                .delivered
                .fetch_add(results.len() as u64, Ordering::AcqRel);
            for r in results.iter().filter(|r| !r.ok) {
                tally.refused.fetch_add(1, Ordering::AcqRel);
                // The lease was gone: the job is someone else's now (at least once).
                tracing::warn!(
                    job = %r.id,
                    reason = r.error.as_ref().map_or("", |p| p.detail.as_str()),
                    "the server refused a job's report"
                );
            }
        }
        Sent::Kept => {
            tally.kept.fetch_add(n as u64, Ordering::AcqRel);
        }
        Sent::Lost(e) => {
            tracing::warn!(reports = n, error = %e, "reports could not be sent");
        }
    }
}

/// This machine's host name (`worker` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// Resolves on SIGINT or (on Unix) SIGTERM. The handlers are installed now, not when the
/// future is first polled, so a signal during start-up is not lost.
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams =
            signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
        async move {
            match streams {
                Ok((mut int, mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
