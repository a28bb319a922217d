//! The embedded SQLite backend.
//!
//! - [`writer`]: the single writer thread and its group commit.
//! - [`ops`]: the write operations, run inside a writer batch.
//! - [`read`]: queries run on a small pool of reader connections (WAL lets them read
//!   while the writer writes).
//! - [`rows`]: the `jobs` row layout.
//! - [`schema`]: tables, indexes and migrations.
//! - [`timetables`]: schedules as parsed for firing, kept between fires.
//! - [`files`]: the data directory's lock and identity, and the checks that refuse to
//!   open damaged files ([`wal`] reads the write-ahead log as SQLite's recovery would).

mod events;
mod files;
mod leased;
mod ops;
mod read;
mod rows;
mod schema;
mod timetables;
mod wal;
mod writer;

use crate::RETRY_DEAD_CHUNK;
use crate::{Enqueued, Extended, IdempotencyKey, ItemError, Signals, Store, StoreError, Tick};
use async_trait::async_trait;
use kairos_core::api::{AckReport, Extension, JobFilter, JobPage, LeaseSpec, LeasedJob};
use kairos_core::event::{EventFilter, EventPage, NewEvent};
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{
    Clock, Cutoffs, Job, JobState, Limits, NewJob, Queue, QueueChange, SystemClock, Timestamp,
};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use writer::{Atomicity, Batch, Health, Msg, Op, Pending, Writer};

pub use files::{DB_FILE, ID_FILE, Identity, QUICK_CHECK_MAX_BYTES};
/// Reader connections kept open.
const READERS: usize = 4;

/// How to open the store.
#[derive(Clone)]
pub struct Options {
    /// The clock that judges time (tests move a manual one).
    pub clock: Arc<dyn Clock>,
    /// Most write operations waiting for the writer; past it, writes fail at once with
    /// [`StoreError::Overloaded`] instead of queueing memory.
    pub write_queue_limit: usize,
    /// Open even though the files are damaged, accepting the loss: a missing or emptied
    /// database is set aside and a new store begins, a damaged WAL is copied aside and
    /// replayed up to the damage. Damage inside the database is refused regardless.
    pub accept_data_loss: bool,
}

/// What `kairos check` found in a sound store.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The store's identity (`None` for a directory from before identities).
    pub store_id: Option<Uuid>,
    /// The schema version of the database.
    pub schema_version: i64,
    /// Jobs in it.
    pub jobs: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Arc::new(SystemClock),
            write_queue_limit: 10_000,
            accept_data_loss: false,
        }
    }
}

/// Whether a write may be refused when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// A client's write: refused past the limit.
    Bounded,
    /// The server's own upkeep and readiness: always queued (one at a time).
    Always,
}

/// The embedded store: a SQLite file in WAL mode, written by one thread.
pub struct SqliteStore {
    path: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
    /// Operations sent to the writer and not yet taken by it.
    queued: Arc<AtomicUsize>,
    /// Full disk, damaged files: what readiness reports.
    health: Arc<Health>,
    write_queue_limit: usize,
    readers: Arc<Mutex<Vec<Connection>>>,
    signals: Arc<Signals>,
    clock: Arc<dyn Clock>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the store's lifetime (the OS releases it when the process dies).
    _lock: std::fs::File,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, on the system clock.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the store in `dir` with the given clock (tests move a manual clock).
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        Self::open_with(
            dir,
            Options {
                clock,
                ..Options::default()
            },
        )
    }

    /// Opens the store in `dir` with `options`, after checking its files
    /// ([`files`]): a store known to be damaged is refused with [`StoreError::Damaged`].
    pub fn open_with(dir: &Path, options: Options) -> Result<SqliteStore, StoreError> {
        let clock = options.clock;
        let lock = files::lock(dir)?;
        let known = files::before_open(dir, options.accept_data_loss)?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        schema::configure(&conn)?;
        let was_new = schema::version(&conn)? == 0;
        schema::migrate(&mut conn)?;
        let fresh = files::after_open(dir, &conn, known, was_new, options.accept_data_loss)?;
        if let Some(identity) = fresh {
            files::write_identity(dir, &identity)?;
        }
        let signals = Arc::new(Signals::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Health::default());
        let writer = Writer::new(
            conn,
            clock.clone(),
            signals.clone(),
            queued.clone(),
            health.clone(),
            dir.to_path_buf(),
        )?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("kairos-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        // Whatever was due or leased before this start is looked at by the first tick.
        signals.due_at(clock.now());
        Ok(SqliteStore {
            path,
            tx,
            queued,
            health,
            write_queue_limit: options.write_queue_limit.max(1),
            readers: Arc::new(Mutex::new(Vec::new())),
            signals,
            clock,
            writer: Mutex::new(Some(handle)),
            _lock: lock,
        })
    }

    /// Verifies the store in `dir` without serving it (`kairos check`): the lock (so no
    /// server may be running), the identity, the WAL, and `PRAGMA integrity_check` over
    /// every page. Changes nothing when it finds damage.
    pub fn check(dir: &Path) -> Result<CheckReport, StoreError> {
        if !dir.join(DB_FILE).exists() && files::identity(dir)?.is_none() {
            return Err(StoreError::Backend(format!(
                "{} holds no Kairos store",
                dir.display()
            )));
        }
        let _lock = files::lock(dir)?;
        let identity = files::before_open(dir, false)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version = schema::version(&conn)?;
        let problems = files::integrity(&conn, true)?;
        if !problems.is_empty() {
            return Err(StoreError::Damaged(format!(
                "{}: {DB_FILE} is damaged: {}",
                dir.display(),
                files::summary(&problems)
            )));
        }
        let jobs: i64 = if version > 0 {
            conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?
        } else {
            0
        };
        Ok(CheckReport {
            store_id: identity.map(|i| i.store_id),
            schema_version: version,
            jobs: jobs as u64,
        })
    }

    /// Runs `f` in the next writer batch and answers once that batch is committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(Atomicity::PerRow, Admission::Bounded, f).await
    }

    /// Like [`SqliteStore::write`], choosing whether a failure undoes all of `f`'s writes.
    async fn write_as<T: Send + 'static>(
        &self,
        atomicity: Atomicity,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(atomicity, Admission::Bounded, f).await
    }

    /// Like [`SqliteStore::write`], never refused for a full queue (the timer, readiness).
    async fn write_always<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(Atomicity::PerRow, Admission::Always, f).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        atomicity: Atomicity,
        admission: Admission,
        f: impl FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let op: Op = Box::new(Pending { f, tx });
        let waiting = self.queued.fetch_add(1, Ordering::AcqRel);
        if admission == Admission::Bounded && waiting >= self.write_queue_limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Overloaded);
        }
        if self.tx.send(Msg::Op(op, atomicity)).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Closed);
        }
        match rx.await {
            Ok(answer) => answer,
            // The writer is gone (shutdown), or the operation panicked and was dropped.
            Err(_) if self.tx.is_closed() => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Backend(
                "the operation failed unexpectedly (see the server log)".into(),
            )),
        }
    }

    /// Runs `f` on a reader connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, Timestamp) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        let readers = self.readers.clone();
        let path = self.path.clone();
        let now = self.clock.now();
        let health = self.health.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open(&path)?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    c.pragma_update(None, "query_only", true)?;
                    c
                }
            };
            let result = f(&conn, now);
            if let Err(e) = &result {
                health.observe(e);
            }
            let mut pool = readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Enqueued, StoreError> {
        // A batch is all or nothing: it runs under a savepoint.
        self.write_as(Atomicity::AllOrNothing, move |b| {
            ops::enqueue(b, jobs, idempotency)
        })
        .await
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.read(move |c, now| read::job(c, id, now)).await
    }

    async fn list_jobs(&self, filter: JobFilter) -> Result<JobPage, StoreError> {
        self.read(move |c, now| read::list(c, filter, now)).await
    }

    async fn cancel(&self, id: Uuid) -> Result<Job, StoreError> {
        self.write(move |b| ops::cancel(b, id)).await
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        self.write(move |b| ops::retry(b, id)).await
    }

    async fn delete(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |b| ops::delete(b, id)).await
    }

    async fn lease(&self, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError> {
        self.write(move |b| ops::lease(b, spec)).await
    }

    async fn ack(
        &self,
        reports: Vec<AckReport>,
    ) -> Result<Vec<Result<JobState, ItemError>>, StoreError> {
        self.write(move |b| ops::ack(b, reports)).await
    }

    async fn heartbeat(
        &self,
        extensions: Vec<Extension>,
    ) -> Result<Vec<Result<Extended, ItemError>>, StoreError> {
        self.write(move |b| ops::heartbeat(b, extensions)).await
    }

    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.read(|c, _| read::queues(c)).await
    }

    async fn running_by_worker(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        self.read(|c, _| read::running_by_worker(c)).await
    }

    async fn save_workers(
        &self,
        workers: Vec<kairos_core::worker::Sighting>,
    ) -> Result<(), StoreError> {
        self.write_always(move |b| ops::save_workers(b, &workers))
            .await
    }

    async fn workers(
        &self,
        limit: usize,
    ) -> Result<Vec<kairos_core::worker::Sighting>, StoreError> {
        self.read(move |c, _| read::workers(c, limit)).await
    }

    async fn forget_workers(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        self.write_always(move |b| ops::forget_workers(b, before, keep))
            .await
    }

    async fn queue(&self, name: &str) -> Result<Option<Queue>, StoreError> {
        let name = name.to_string();
        self.read(move |c, _| read::queue(c, &name)).await
    }

    async fn oldest_available(&self, queue: &str) -> Result<Option<Timestamp>, StoreError> {
        let queue = queue.to_string();
        self.read(move |c, _| read::oldest_available(c, &queue))
            .await
    }

    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<Queue, StoreError> {
        let name = name.to_string();
        self.write(move |b| ops::change_queue(b, &name, change))
            .await
    }

    async fn retry_dead(&self, queue: &str) -> Result<u64, StoreError> {
        let q = queue.to_string();
        let last: Option<i64> = self.read(move |c, _| read::last_dead_seq(c, &q)).await?;
        crate::redrive(last, |after, last| {
            let q = queue.to_string();
            self.write_as(Atomicity::AllOrNothing, move |b| {
                ops::retry_dead(b, &q, after, last, RETRY_DEAD_CHUNK)
            })
        })
        .await
    }

    async fn tick(&self) -> Result<Tick, StoreError> {
        self.write_always(ops::tick).await
    }

    async fn create_schedule(
        &self,
        req: ScheduleRequest,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.write_as(Atomicity::AllOrNothing, move |b| {
            ops::create_schedule(b, req, limits)
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(|c, _| read::schedules(c)).await
    }

    async fn schedule(&self, id: Uuid) -> Result<Option<Schedule>, StoreError> {
        self.read(move |c, _| read::schedule(c, id)).await
    }

    async fn update_schedule(
        &self,
        id: Uuid,
        patch: SchedulePatch,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.write_as(Atomicity::AllOrNothing, move |b| {
            ops::update_schedule(b, id, patch, limits)
        })
        .await
    }

    async fn delete_schedule(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |b| ops::delete_schedule(b, id)).await
    }

    async fn trigger_schedule(&self, id: Uuid) -> Result<Job, StoreError> {
        self.write_as(Atomicity::AllOrNothing, move |b| {
            ops::trigger_schedule(b, id)
        })
        .await
    }

    async fn prune_finished(&self, cutoffs: Cutoffs, limit: u32) -> Result<u64, StoreError> {
        self.write_always(move |b| ops::prune_finished(b, cutoffs, limit))
            .await
    }

    async fn events(&self, filter: EventFilter) -> Result<EventPage, StoreError> {
        self.read(move |conn, _| events::page(conn, &filter)).await
    }

    async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.read(|conn, _| events::last_id(conn)).await
    }

    async fn prune_events(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.write_always(move |b| events::prune(b.conn, before, limit))
            .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_string();
        self.read(move |conn, _| events::cursor(conn, &name)).await
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        self.write(move |b| {
            for mut e in events {
                e.at = b.now;
                b.event(e);
            }
            Ok(())
        })
        .await
    }

    async fn save_cursor(&self, name: &str, after: u64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write_always(move |b| events::save_cursor(b.conn, &name, after, b.now))
            .await
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_always(move |b| ops::prune_idempotency_keys(b, before))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.health.damaged() {
            return Err(StoreError::Damaged(
                "a read or write met damaged data (see the log)".into(),
            ));
        }
        // Through the writer: ready means writes get committed, not just that a file reads.
        // Its commit is also where a full disk's episode ends, once there is room again.
        self.write_always(|b| {
            b.conn
                .prepare_cached("SELECT count(*) FROM queues")?
                .query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await?;
        if self.health.full() {
            return Err(StoreError::Full(
                "writes are failing for lack of space".into(),
            ));
        }
        Ok(())
    }

    fn waiting_writes(&self) -> Option<u64> {
        Some(self.queued.load(Ordering::Acquire) as u64)
    }

    fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
