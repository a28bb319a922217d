//! The engine: job operations as the API offers them, on top of a [`Store`].
//!
//! It owns what is not a single store call: validation against the configured limits,
//! long-poll leasing (`wait`) that wakes on commit signals instead of polling, the timer
//! that makes due jobs available and expires leases on time ([`timer`]), and shutdown.
//! It knows nothing of HTTP.

mod events;
mod registry;
mod timer;

pub use events::{Subscription, Tail};
pub use registry::Caller;

use kairos_core::api::{
    AckRequest, BatchRequest, Cluster, ClusterNode, EnqueueRequest, HeartbeatRequest, JobFilter,
    JobPage, LeaseRequest, LeasedJob, QueuePatch, WorkerList,
};
use kairos_core::schedule::{Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{Invalid, Job, JobState, Limits, Queue, Retention, Timestamp};
use kairos_store::{
    Enqueued, Extended, IdempotencyKey, ItemError, Node, QueueWatch, Store, StoreError,
};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::watch;
use uuid::Uuid;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is invalid (names the fields).
    #[error("invalid request: {0}")]
    Invalid(#[from] Invalid),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engine, shared by every request handler.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    node: Node,
    workers: Arc<registry::Registry>,
    limits: Limits,
    shutdown: watch::Sender<bool>,
    /// Whether this node leads the background duties (see [`Engine::leading`]).
    leading: watch::Receiver<bool>,
    /// The timer, the registry's saver and whatever else was spawned on the engine: all
    /// end at shutdown.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine and its timer on `store`, as `node`, keeping finished jobs for
    /// `retention`.
    pub fn start(
        store: Arc<dyn Store>,
        limits: Limits,
        node: Node,
        retention: Retention,
    ) -> Engine {
        let (shutdown, rx) = watch::channel(false);
        let workers = Arc::new(registry::Registry::default());
        let (leads, leading) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(timer::run(
                store.clone(),
                node.clone(),
                retention,
                rx.clone(),
                leads,
            )),
            tokio::spawn(registry::keep_saved(store.clone(), workers.clone(), rx)),
        ];
        Engine {
            inner: Arc::new(Inner {
                store,
                node,
                workers,
                limits,
                shutdown,
                leading,
                tasks: std::sync::Mutex::new(tasks),
            }),
        }
    }

    /// Whether this node leads the background duties now (always, soon after start, on
    /// a store only this process opens): work that must run on one node of a cluster at
    /// a time, like a sink, runs while it does.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.inner.leading.clone()
    }

    /// Whether shutdown has begun (see [`Engine::begin_shutdown`]).
    pub fn shutting_down(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Runs `task` beside the engine's own: [`Engine::stopped`] waits for it too, so it
    /// must end soon after shutdown begins (watch [`Engine::shutting_down`]).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Waiting leases answer at once from now on, and the timer stops.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once the timer has stopped and the workers heard from are saved (after
    /// [`Engine::begin_shutdown`]).
    pub async fn stopped(&self) {
        loop {
            let tasks =
                std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    /// Enqueues one job, carrying the producer's trace context.
    pub async fn enqueue(
        &self,
        req: EnqueueRequest,
        idempotency: Option<IdempotencyKey>,
        trace: Option<kairos_core::Trace>,
    ) -> Result<Enqueued, EngineError> {
        let mut job = req.validate("", &self.inner.limits)?;
        job.trace = trace;
        Ok(self.inner.store.enqueue(vec![job], idempotency).await?)
    }

    /// Enqueues a batch, all or nothing, every job carrying the producer's trace context.
    pub async fn enqueue_batch(
        &self,
        req: BatchRequest,
        idempotency: Option<IdempotencyKey>,
        trace: Option<kairos_core::Trace>,
    ) -> Result<Enqueued, EngineError> {
        let mut jobs = req.validate(&self.inner.limits)?;
        for j in &mut jobs {
            j.trace = trace.clone();
        }
        Ok(self.inner.store.enqueue(jobs, idempotency).await?)
    }

    /// One job.
    pub async fn job(&self, id: Uuid) -> Result<Job, EngineError> {
        self.inner
            .store
            .job(id)
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound))
    }

    /// A page of jobs.
    pub async fn list_jobs(&self, filter: JobFilter) -> Result<JobPage, EngineError> {
        Ok(self.inner.store.list_jobs(filter).await?)
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: Uuid) -> Result<Job, EngineError> {
        Ok(self.inner.store.cancel(id).await?)
    }

    /// Runs a job again now.
    pub async fn retry(&self, id: Uuid) -> Result<Job, EngineError> {
        Ok(self.inner.store.retry(id).await?)
    }

    /// Deletes a job.
    pub async fn delete(&self, id: Uuid) -> Result<(), EngineError> {
        Ok(self.inner.store.delete(id).await?)
    }

    /// Leases jobs, waiting up to `wait` for some to become available. Answers within
    /// milliseconds of a matching commit: it sleeps on the queues' commit signals, never
    /// on a polling interval.
    pub async fn lease(
        &self,
        req: LeaseRequest,
        caller: &Caller,
    ) -> Result<Vec<LeasedJob>, EngineError> {
        let spec = req.validate()?;
        self.saw(&spec.worker, Some(&spec.queues), caller);
        let deadline = tokio::time::Instant::now() + spec.wait.as_std();
        let signals = self.inner.store.signals();
        // Watched for as long as this lease waits, and forgotten after.
        let watches: Vec<QueueWatch> = spec.queues.iter().map(|q| signals.watch(q)).collect();
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut first = true;
        loop {
            // Register before looking, so a commit between the look and the wait still wakes us.
            let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = watches
                .iter()
                .map(|n| {
                    let mut w = Box::pin(n.notify().notified());
                    w.as_mut().enable();
                    w
                })
                .collect();
            let jobs = match self.inner.store.lease(spec.clone()).await {
                Ok(jobs) => jobs,
                // The store went away while this lease waited: it ends now, empty, and
                // the worker's next request hears the store is unreachable.
                Err(StoreError::Unavailable(_)) if !first => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            first = false;
            if !jobs.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
                return Ok(jobs);
            }
            let any_wake = std::future::poll_fn(|cx| {
                for w in waits.iter_mut() {
                    if w.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            });
            // A queue's limits may have held this lease back: look again when they may
            // let it through (a commit that frees room also wakes it).
            let wake_by = signals
                .recheck_in(&spec.queues, self.inner.store.now())
                .map_or(deadline, |d| deadline.min(tokio::time::Instant::now() + d));
            tokio::select! {
                _ = any_wake => {}
                _ = tokio::time::sleep_until(wake_by) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Applies workers' reports.
    pub async fn ack(
        &self,
        req: AckRequest,
        caller: &Caller,
    ) -> Result<Vec<(Uuid, Result<JobState, ItemError>)>, EngineError> {
        let (worker, reports) = req.validate(&self.inner.limits)?;
        self.saw(&worker, None, caller);
        let ids: Vec<Uuid> = reports.iter().map(|r| r.id).collect();
        let results = self.inner.store.ack(reports).await?;
        Ok(ids.into_iter().zip(results).collect())
    }

    /// Extends leases.
    pub async fn heartbeat(
        &self,
        req: HeartbeatRequest,
        caller: &Caller,
    ) -> Result<Vec<(Uuid, Result<Extended, ItemError>)>, EngineError> {
        let (worker, extensions) = req.validate()?;
        self.saw(&worker, None, caller);
        let ids: Vec<Uuid> = extensions.iter().map(|e| e.id).collect();
        let results = self.inner.store.heartbeat(extensions).await?;
        Ok(ids.into_iter().zip(results).collect())
    }

    fn saw(&self, worker: &str, queues: Option<&[String]>, caller: &Caller) {
        let now = self.inner.store.now();
        self.inner.workers.saw(worker, queues, caller, now);
    }

    /// The workers heard from in the last day (by any node sharing the store), with the
    /// jobs each holds.
    pub async fn workers(&self) -> Result<WorkerList, EngineError> {
        let saved = self.inner.store.workers(registry::MAX_WORKERS).await?;
        let running = self.inner.store.running_by_worker().await?;
        let now = self.inner.store.now();
        Ok(WorkerList {
            workers: self.inner.workers.list(saved, &running, now),
        })
    }

    /// Every known queue.
    pub async fn queues(&self) -> Result<Vec<Queue>, EngineError> {
        Ok(self.inner.store.queues().await?)
    }

    /// One queue.
    pub async fn queue(&self, name: &str) -> Result<Queue, EngineError> {
        self.inner
            .store
            .queue(name)
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound))
    }

    /// When the job of `queue` waiting longest became available (its `run_at`), if any.
    pub async fn oldest_available(&self, queue: &str) -> Result<Option<Timestamp>, EngineError> {
        Ok(self.inner.store.oldest_available(queue).await?)
    }

    /// Pauses or resumes a queue, and sets or removes its limits.
    pub async fn change_queue(&self, name: &str, patch: QueuePatch) -> Result<Queue, EngineError> {
        kairos_core::validate::check_name(name).map_err(|m| Invalid::field("name", m))?;
        let change = patch.validate()?;
        Ok(self.inner.store.change_queue(name, change).await?)
    }

    /// Moves a queue's dead jobs back to available.
    pub async fn retry_dead(&self, queue: &str) -> Result<u64, EngineError> {
        self.queue(queue).await?;
        Ok(self.inner.store.retry_dead(queue).await?)
    }

    /// Creates a schedule.
    pub async fn create_schedule(&self, req: ScheduleRequest) -> Result<Schedule, EngineError> {
        Ok(self
            .inner
            .store
            .create_schedule(req, self.inner.limits)
            .await?)
    }

    /// Every schedule.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, EngineError> {
        Ok(self.inner.store.schedules().await?)
    }

    /// One schedule.
    pub async fn schedule(&self, id: Uuid) -> Result<Schedule, EngineError> {
        self.inner
            .store
            .schedule(id)
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound))
    }

    /// Changes a schedule.
    pub async fn update_schedule(
        &self,
        id: Uuid,
        patch: SchedulePatch,
    ) -> Result<Schedule, EngineError> {
        Ok(self
            .inner
            .store
            .update_schedule(id, patch, self.inner.limits)
            .await?)
    }

    /// Deletes a schedule (its runs stay).
    pub async fn delete_schedule(&self, id: Uuid) -> Result<(), EngineError> {
        Ok(self.inner.store.delete_schedule(id).await?)
    }

    /// Enqueues one run of a schedule now.
    pub async fn trigger_schedule(&self, id: Uuid) -> Result<Job, EngineError> {
        Ok(self.inner.store.trigger_schedule(id).await?)
    }

    /// The next fire times of an expression, by the store's clock. Computed on the
    /// blocking pool: near a DST transition a per-second expression takes milliseconds.
    pub async fn preview(&self, req: PreviewRequest) -> Result<Preview, EngineError> {
        let now = self.inner.store.now();
        tokio::task::spawn_blocking(move || req.run(now))
            .await
            .map_err(|e| EngineError::Store(StoreError::Backend(format!("preview task: {e}"))))?
            .map_err(EngineError::Invalid)
    }

    /// The nodes sharing the store (this one alone on a store only it can open).
    pub async fn cluster(&self) -> Result<Cluster, EngineError> {
        let store = &self.inner.store;
        let nodes = match store.nodes().await? {
            Some(nodes) => nodes,
            None => {
                let n = &self.inner.node;
                vec![ClusterNode {
                    id: n.id,
                    address: n.address.clone(),
                    started_at: n.started_at,
                    last_seen_at: store.now(),
                    leader: true,
                }]
            }
        };
        Ok(Cluster { nodes })
    }

    /// Whether the store answers.
    pub async fn ready(&self) -> Result<(), EngineError> {
        Ok(self.inner.store.ping().await?)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Resolves when `rx` says shutdown.
pub(crate) async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
