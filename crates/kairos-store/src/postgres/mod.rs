//! The PostgreSQL backend: many Kairos nodes on one database.
//!
//! - [`tx`]: one operation's transaction (pipelined open and close, changed jobs written
//!   in one statement, count deltas).
//! - [`ops`]: the operations: load jobs with row locks (`FOR UPDATE`, `SKIP LOCKED` where
//!   a busy row may simply be passed over), ask the core state machine, write back.
//! - [`read`]: queries outside a transaction.
//! - [`rows`]: the `jobs` row layout. [`schema`]: tables, indexes, migrations.
//!
//! Time is the database's: every transaction reads `kairos_now()` (PostgreSQL's `now()`)
//! at its start and judges run_at, lease expiry and fire times by it, so nodes whose
//! clocks disagree still agree on what is due. Tests pin the clock per transaction.

mod events;
mod leader;
mod listen;
mod notify;
mod ops;
mod read;
mod rows;
pub mod schema;
mod tx;

use crate::ids::IdGen;
use crate::{
    Enqueued, Extended, IdempotencyKey, ItemError, Node, Signals, Store, StoreError, Tick,
};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use kairos_core::api::{
    AckReport, ClusterNode, Extension, JobFilter, JobPage, LeaseSpec, LeasedJob,
};
use kairos_core::event::{EventFilter, EventPage, NewEvent};
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{Clock, Cutoffs, Job, JobState, Limits, NewJob, Queue, QueueChange, Timestamp};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tx::Effects;
use uuid::Uuid;

/// How to connect.
#[derive(Clone)]
pub struct Options {
    /// The schema holding Kairos's tables (created if missing).
    pub schema: String,
    /// Most connections this node opens.
    pub pool_size: usize,
    /// `None`: the database's clock (always, outside tests). A test pins a manual clock,
    /// sent to the database with every transaction.
    pub clock: Option<Arc<dyn Clock>>,
    /// Longest wait for a connection (from the pool or a new one).
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            schema: "kairos".into(),
            pool_size: 16,
            clock: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A store in a PostgreSQL database.
pub struct PostgresStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pool: Pool,
    clock: Option<Arc<dyn Clock>>,
    /// The database clock minus this machine's, in µs, as last seen: `Store::now` is this
    /// machine's clock corrected by it (only ever used to decide when to look again).
    offset_us: AtomicI64,
    signals: Arc<Signals>,
    ids: Mutex<IdGen>,
    /// Since when (µs) the duties have run without a gap: this node's start, or its
    /// predecessor's last renewal once it leads. Schedule slots since then are not
    /// misfires.
    pub(crate) up_since: AtomicI64,
    /// Queues whose row this node has seen committed.
    known_queues: Mutex<HashSet<String>>,
    /// This node, as its notifications name it.
    pub(crate) node: Uuid,
    /// The schema's notification channel.
    pub(crate) channel: String,
    /// What this node's commits announced, for the notification sender.
    announcements: Arc<notify::Announcements>,
    /// Woken when this node's commits wrote events: the numbering pass runs soon.
    numbering: Arc<tokio::sync::Notify>,
    /// The listener, the notification sender and the numbering pass.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The listener's verdict: the database answers.
    reachable: Arc<tokio::sync::watch::Sender<bool>>,
    closed: AtomicBool,
}

/// Longest a caller waits for one operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of an operation that met a deadlock or a serialization failure.
const ATTEMPTS: u32 = 5;
/// The fallback poll: other nodes' delayed jobs, leases and schedules are looked at this
/// often even when this node heard of nothing due.
const POLL: Duration = Duration::from_secs(1);

type OpFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db`) and brings the schema up to date.
    pub async fn connect(url: &str, options: Options) -> Result<PostgresStore, StoreError> {
        let (pool, config) = pool(url, &options)?;
        let mut client = Object::take(get(&pool).await?);
        schema::migrate(&mut client, &options.schema).await?;
        let db_now: Timestamp = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
        drop(client);
        let clock = options.clock;
        let now = clock.as_ref().map_or(db_now, |c| c.now());
        let inner = Arc::new(Inner {
            pool,
            clock,
            offset_us: AtomicI64::new(db_now.as_microsecond() - Timestamp::now().as_microsecond()),
            signals: Arc::new(Signals::default()),
            ids: Mutex::new(IdGen::default()),
            up_since: AtomicI64::new(now.as_microsecond()),
            known_queues: Mutex::new(HashSet::new()),
            node: Uuid::now_v7(),
            channel: listen::channel(&options.schema),
            announcements: Arc::new(notify::Announcements::default()),
            numbering: Arc::new(tokio::sync::Notify::new()),
            tasks: Mutex::new(Vec::new()),
            reachable: Arc::new(tokio::sync::watch::Sender::new(true)),
            closed: AtomicBool::new(false),
        });
        let listener = tokio::spawn(listen::run(
            config,
            inner.channel.clone(),
            inner.node,
            inner.signals.clone(),
            inner.reachable.clone(),
        ));
        let sender = tokio::spawn(notify::run(
            inner.pool.clone(),
            inner.channel.clone(),
            inner.node,
            inner.announcements.clone(),
        ));
        let numbering = tokio::spawn(events::run(
            inner.pool.clone(),
            inner.numbering.clone(),
            inner.signals.clone(),
            inner.announcements.clone(),
            POLL,
        ));
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = vec![listener, sender, numbering];
        // Whatever was due or leased before this start is looked at by the first tick.
        inner.signals.due_at(now);
        Ok(PostgresStore { inner })
    }

    /// Applies the migrations this binary knows to `url` (`kairos migrate`); answers the
    /// versions applied (empty: it was up to date) and the version it is at now.
    pub async fn migrate(url: &str, options: Options) -> Result<(Vec<i64>, i64), StoreError> {
        let (pool, _) = pool(url, &options)?;
        let mut client = Object::take(get(&pool).await?);
        let applied = schema::migrate(&mut client, &options.schema).await?;
        let version = schema::version(&client, &options.schema).await?;
        Ok((applied, version))
    }

    /// Runs one operation in its own task (a caller that goes away cannot cut it in half)
    /// and retries it when the database picked it as a deadlock or serialization victim.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t Inner) -> OpFuture<'t, T> + Send + Sync + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let mut reachable = self.inner.reachable.subscribe();
        if !*reachable.borrow_and_update() {
            return Err(unreachable());
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut attempt = 1;
            loop {
                match f(&inner).await {
                    Err(StoreError::Contended(why)) if attempt < ATTEMPTS => {
                        tracing::debug!(attempt, %why, "retrying a store operation");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(
                            1..10 * attempt as u64,
                        )))
                        .await;
                    }
                    other => return other,
                }
            }
        });
        // A connection that went silent (a network cut) would hold the caller until TCP
        // gives up; the operation itself goes on in its task, and its transaction either
        // commits or is rolled back by the database.
        // The caller also stops waiting the moment the database is found unreachable.
        tokio::select! {
            joined = task => joined.map_err(|e| StoreError::Backend(format!("store task: {e}")))?,
            _ = reachable.wait_for(|r| !*r) => Err(unreachable()),
            _ = tokio::time::sleep(OPERATION_TIMEOUT) => Err(StoreError::Unavailable(format!(
                "no answer from the database within {OPERATION_TIMEOUT:?}"
            ))),
        }
    }
}

/// The pool, and the connection settings it uses (for the listener's own connection).
fn unreachable() -> StoreError {
    StoreError::Unavailable("the database does not answer".into())
}

/// A connection pool to `url` with this backend's session settings (the schema as
/// `search_path`, the lock and idle bounds, the planner settings below), for a feature
/// that keeps tables of its own beside the engine's (`kairos-tasks`).
pub fn connection_pool(url: &str, options: &Options) -> Result<Pool, StoreError> {
    pool(url, options).map(|(pool, _)| pool)
}

/// A connection from `pool`, or `Unavailable` when the database does not give one.
pub async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    get(pool).await
}

fn pool(url: &str, options: &Options) -> Result<(Pool, tokio_postgres::Config), StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("the database URL does not parse: {e}")))?;
    let search_path = format!("-c search_path={}", options.schema.replace(' ', "\\ "));
    // Bounds on every session, before the URL's own options (which may change them): a
    // row lock is waited on at most 5 s (then the operation is retried as contended), and
    // a session left idle inside a transaction (a bug) is ended by the server after 60 s,
    // releasing what it held.
    //
    // Plans follow indexes: every statement of this backend is answered by an index (most
    // take the first rows of one in its order), and a queue table's statistics are stale
    // by nature (empty when last analysed, 50,000 rows a second later). Planned from such
    // statistics, an ack's `id = ANY($1)` became a sequential scan of the whole table per
    // ack (2,881 scans reading 6.6 million rows in one 10 s W2 run, both cores busy at 500
    // jobs a second), and a lease read every available job through a bitmap to keep 200.
    // Disabled, these plans are still taken where nothing else answers; never by guess.
    // JIT is off: a disabled plan's cost (10^10) passes every JIT threshold, and compiling
    // one statement took 124 ms; no statement here runs long enough to win it back. And
    // each prepared statement keeps its generic plan: left to choose, PostgreSQL kept
    // planning every execution afresh (weighing the jobs table's eleven indexes each time),
    // most of its CPU in a W2 run.
    let bounds = "-c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000 \
                  -c enable_seqscan=off -c enable_bitmapscan=off -c jit=off \
                  -c plan_cache_mode=force_generic_plan";
    let merged = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{bounds} {o} {search_path}"),
        _ => format!("{bounds} {search_path}"),
    };
    config.options(&merged);
    if config.get_application_name().is_none() {
        config.application_name("kairos");
    }
    config.connect_timeout(options.connect_timeout);
    let manager = Manager::from_config(
        config.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map(|pool| (pool, config))
        .map_err(|e| StoreError::Backend(format!("the connection pool: {e}")))
}

async fn get(pool: &Pool) -> Result<Object, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("connecting to the database: {e}")))
}

impl Inner {
    pub(crate) async fn connection(&self) -> Result<Object, StoreError> {
        get(&self.pool).await
    }

    /// The pinned test clock.
    pub(crate) fn pinned_clock(&self) -> Option<Timestamp> {
        self.clock.as_ref().map(|c| c.now())
    }

    /// Takes note of a database clock reading.
    /// Takes note of a database clock reading `db_now` (a transaction's or statement's
    /// start), asked for at `sent` by this machine's clock. The reading is compared with
    /// when it was asked for, not when it arrived: the answer may come long after (its
    /// transaction's first query waited for a lock), and the start time is not later for
    /// it; an offset taken at arrival would put this node's estimate behind by the wait.
    pub(crate) fn observe_clock(&self, db_now: Timestamp, sent: Timestamp) {
        self.offset_us.store(
            db_now.as_microsecond() - sent.as_microsecond(),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn now_estimate(&self) -> Timestamp {
        match &self.clock {
            Some(c) => c.now(),
            None => {
                let us = Timestamp::now().as_microsecond() + self.offset_us.load(Ordering::Relaxed);
                Timestamp::from_microsecond(us).unwrap_or_else(|_| Timestamp::now())
            }
        }
    }

    /// Since when the duties have run without a gap.
    pub(crate) fn up_since(&self) -> Timestamp {
        Timestamp::from_microsecond(self.up_since.load(Ordering::Acquire))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Whether this node has seen `queue`'s row committed.
    pub(crate) fn knows_queue(&self, queue: &str) -> bool {
        self.known_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(queue)
    }

    /// A fresh job id.
    pub(crate) fn next_id(&self, now: Timestamp) -> Uuid {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_v7(now.as_millisecond() as u64)
    }

    /// Post-commit announcements.
    pub(crate) fn announce(&self, e: Effects) {
        self.announcements.add(&e);
        // Its events are read once numbered (see postgres/events.rs).
        if e.wrote_events {
            self.numbering.notify_one();
        }
        if !e.new_queues.is_empty() {
            self.known_queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(e.new_queues);
        }
        for queue in &e.resumed {
            self.signals.queue_changed(queue);
        }
        e.changes.announce(&self.signals);
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Enqueued, StoreError> {
        self.run(move |i| Box::pin(ops::enqueue(i, jobs.clone(), idempotency.clone())))
            .await
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.run(move |i| Box::pin(read::job(i, id))).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<JobPage, StoreError> {
        self.run(move |i| Box::pin(read::list(i, filter.clone())))
            .await
    }

    async fn cancel(&self, id: Uuid) -> Result<Job, StoreError> {
        self.run(move |i| Box::pin(ops::cancel(i, id))).await
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        self.run(move |i| Box::pin(ops::retry(i, id))).await
    }

    async fn delete(&self, id: Uuid) -> Result<(), StoreError> {
        self.run(move |i| Box::pin(ops::delete(i, id))).await
    }

    async fn lease(&self, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError> {
        self.run(move |i| Box::pin(ops::lease(i, spec.clone())))
            .await
    }

    async fn ack(
        &self,
        reports: Vec<AckReport>,
    ) -> Result<Vec<Result<JobState, ItemError>>, StoreError> {
        self.run(move |i| Box::pin(ops::ack(i, reports.clone())))
            .await
    }

    async fn heartbeat(
        &self,
        extensions: Vec<Extension>,
    ) -> Result<Vec<Result<Extended, ItemError>>, StoreError> {
        self.run(move |i| Box::pin(ops::heartbeat(i, extensions.clone())))
            .await
    }

    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.run(|i| Box::pin(read::queues(i, None))).await
    }

    async fn oldest_available(&self, queue: &str) -> Result<Option<Timestamp>, StoreError> {
        let queue = queue.to_string();
        self.run(move |i| {
            let queue = queue.clone();
            Box::pin(async move { read::oldest_available(i, &queue).await })
        })
        .await
    }

    async fn queue(&self, name: &str) -> Result<Option<Queue>, StoreError> {
        let name = name.to_string();
        self.run(move |i| {
            let name = name.clone();
            Box::pin(async move { Ok(read::queues(i, Some(&name)).await?.pop()) })
        })
        .await
    }

    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.run(move |i| Box::pin(ops::change_queue(i, name.clone(), change.clone())))
            .await
    }

    async fn retry_dead(&self, queue: &str) -> Result<u64, StoreError> {
        let q = queue.to_string();
        let last = self
            .run(move |i| Box::pin(read::last_dead_seq(i, q.clone())))
            .await?;
        crate::redrive(last, |after, last| {
            let q = queue.to_string();
            self.run(move |i| Box::pin(ops::retry_dead(i, q.clone(), after, last)))
        })
        .await
    }

    async fn tick(&self) -> Result<Tick, StoreError> {
        self.run(|i| Box::pin(ops::tick(i))).await
    }

    async fn create_schedule(
        &self,
        req: ScheduleRequest,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.run(move |i| Box::pin(ops::create_schedule(i, req.clone(), limits)))
            .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.run(|i| Box::pin(read::schedules(i))).await
    }

    async fn schedule(&self, id: Uuid) -> Result<Option<Schedule>, StoreError> {
        self.run(move |i| Box::pin(read::schedule(i, id))).await
    }

    async fn update_schedule(
        &self,
        id: Uuid,
        patch: SchedulePatch,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.run(move |i| Box::pin(ops::update_schedule(i, id, patch.clone(), limits)))
            .await
    }

    async fn delete_schedule(&self, id: Uuid) -> Result<(), StoreError> {
        self.run(move |i| Box::pin(ops::delete_schedule(i, id)))
            .await
    }

    async fn trigger_schedule(&self, id: Uuid) -> Result<Job, StoreError> {
        self.run(move |i| Box::pin(ops::trigger_schedule(i, id)))
            .await
    }

    async fn prune_finished(&self, cutoffs: Cutoffs, limit: u32) -> Result<u64, StoreError> {
        self.run(move |i| Box::pin(ops::prune_finished(i, cutoffs, limit)))
            .await
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.run(move |i| Box::pin(ops::prune_idempotency_keys(i, before)))
            .await
    }

    async fn events(&self, filter: EventFilter) -> Result<EventPage, StoreError> {
        self.run(move |i| {
            let filter = filter.clone();
            Box::pin(async move { events::page(i, &filter).await })
        })
        .await
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.run(|i| Box::pin(events::last_id(i))).await
    }

    async fn prune_events(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.run(move |i| Box::pin(events::prune(i, before, limit)))
            .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_string();
        self.run(move |i| {
            let name = name.clone();
            Box::pin(async move { events::cursor(i, &name).await })
        })
        .await
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        self.run(move |i| Box::pin(ops::append_events(i, events.clone())))
            .await
    }

    async fn save_cursor(&self, name: &str, after: u64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.run(move |i| {
            let name = name.clone();
            Box::pin(async move { events::save_cursor(i, &name, after).await })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|i| Box::pin(read::ping(i))).await
    }

    async fn beat(&self, node: &Node) -> Result<bool, StoreError> {
        let node = node.clone();
        self.run(move |i| Box::pin(leader::beat(i, node.clone())))
            .await
    }

    async fn resign(&self, node: &Node) -> Result<(), StoreError> {
        let node = node.clone();
        self.run(move |i| Box::pin(leader::resign(i, node.clone())))
            .await
    }

    async fn nodes(&self) -> Result<Option<Vec<ClusterNode>>, StoreError> {
        self.run(|i| Box::pin(leader::nodes(i))).await.map(Some)
    }

    async fn running_by_worker(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.run(|i| Box::pin(read::running_by_worker(i))).await
    }

    async fn save_workers(
        &self,
        workers: Vec<kairos_core::worker::Sighting>,
    ) -> Result<(), StoreError> {
        self.run(move |i| Box::pin(ops::save_workers(i, workers.clone())))
            .await
    }

    async fn workers(
        &self,
        limit: usize,
    ) -> Result<Vec<kairos_core::worker::Sighting>, StoreError> {
        self.run(move |i| Box::pin(read::workers(i, limit))).await
    }

    async fn forget_workers(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        self.run(move |i| Box::pin(ops::forget_workers(i, before, keep)))
            .await
    }

    fn signals(&self) -> Arc<Signals> {
        self.inner.signals.clone()
    }

    fn now(&self) -> Timestamp {
        self.inner.now_estimate()
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(POLL)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.inner.pool.close();
    }
}
