//! The writer thread: the only connection that writes. It takes every operation waiting
//! in its channel, runs them in one transaction, fsyncs once at COMMIT, and only then
//! answers them all. That is group commit: one fsync per batch of requests instead of per
//! request. All-or-nothing operations (batch enqueue, schedule changes, retry-dead) run
//! under a savepoint so one failing does not undo the others; per-row operations (lease,
//! ack, heartbeat) need none, see [`Atomicity`].
//!
//! In-memory caches (paused queues, queue limits, rate buckets, known queues) and signals
//! change only after a commit succeeds, so a failed commit leaves nothing half-applied.
//! Rate buckets live only here: a restart starts them full, which is one second's burst.

use super::files;
use super::rows::{self, Read, StoredJob};
use crate::changes::Changes;
use crate::ids::IdGen;
use crate::states::statement;
use crate::{MAINTENANCE_CHUNK, Signals, StoreError};
use kairos_core::event::NewEvent;
use kairos_core::machine::Happened;
use kairos_core::rate::{Bucket, Rate};
use kairos_core::{Clock, Held, Job, JobState, QueueLimits, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most operations in one transaction. Bounds commit latency under a flood.
const MAX_OPS_PER_COMMIT: usize = 1024;

statement!(
    DUE_WAITING = "SELECT seq FROM jobs WHERE {is_waiting} AND run_at <= ?1 \
     ORDER BY run_at LIMIT ?2"
);

/// Sends an operation's answer once its commit is decided (`Some(err)`: it failed).
pub(crate) type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One write operation waiting for the writer.
pub(crate) type Op = Box<dyn Operation>;

/// A write operation: run inside a batch transaction (saying how it went, and how to
/// answer once the commit is decided), or refused without running.
pub(crate) trait Operation: Send {
    /// Runs inside the batch.
    fn run(self: Box<Self>, batch: &mut Batch<'_>) -> (Result<(), StoreError>, Reply);
    /// Answers `e` without running.
    fn refuse(self: Box<Self>, e: &StoreError);
}

/// An operation `f` whose caller waits on `tx`.
pub(crate) struct Pending<F, T> {
    pub f: F,
    pub tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Operation for Pending<F, T>
where
    F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, batch: &mut Batch<'_>) -> (Result<(), StoreError>, Reply) {
        let Pending { f, tx } = *self;
        if tx.is_closed() {
            // The caller is gone (e.g. a client hung up): do nothing on its behalf.
            return (Ok(()), Box::new(|_: Option<&StoreError>| {}));
        }
        let result = f(batch);
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let reply: Reply = Box::new(move |failed: Option<&StoreError>| {
            let _ = tx.send(match failed {
                Some(e) => Err(e.clone()),
                None => result,
            });
        });
        (outcome, reply)
    }

    fn refuse(self: Box<Self>, e: &StoreError) {
        let _ = self.tx.send(Err(e.clone()));
    }
}

/// What the writer has learnt about its disk and files, for readiness: set by failures;
/// a full disk clears once its filesystem has room again. Each change is logged once.
#[derive(Debug, Default)]
pub(crate) struct Health {
    full: AtomicBool,
    damaged: AtomicBool,
}

impl Health {
    /// Writes are failing for a full disk.
    pub(crate) fn full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// A read or write ran into damaged data.
    pub(crate) fn damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    /// Takes note of a failure.
    pub(crate) fn observe(&self, e: &StoreError) {
        match e {
            StoreError::Full(m) if !self.full.swap(true, Ordering::AcqRel) => {
                tracing::error!(error = %m, "the disk is full: writes are refused (507) and readiness fails until space is freed; nothing accepted is lost");
            }
            StoreError::Damaged(m) if !self.damaged.swap(true, Ordering::AcqRel) => {
                tracing::error!(error = %m, "the store's files are damaged: readiness fails from now on; stop the server and run `kairos check`");
            }
            _ => {}
        }
    }

    /// A commit succeeded: while the disk was full, writes count as resumed once the
    /// filesystem of `dir` has room again.
    fn committed(&self, dir: &Path) {
        if !self.full() {
            return;
        }
        let room =
            files::disk_space(dir).is_none_or(|(free, total)| free >= files::room_to_resume(total));
        if room && self.full.swap(false, Ordering::AcqRel) {
            tracing::info!("the disk has room again: writes resumed, readiness returns");
        }
    }
}

/// Whether an operation must be all or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Atomicity {
    /// Runs under a savepoint: on failure, everything it wrote is undone (batch enqueue).
    AllOrNothing,
    /// Each row it writes stands on its own (ack items, leased jobs). No savepoint, which
    /// spares copying every touched page into the sub-journal; if it fails midway, what it
    /// wrote so far is kept and accounted, and a retry of the request is safe.
    PerRow,
}

/// What the writer thread receives.
pub(crate) enum Msg {
    Op(Op, Atomicity),
    Shutdown(oneshot::Sender<()>),
}

/// Post-commit consequences of the operations in a batch.
#[derive(Default)]
struct Effects {
    changes: Changes,
    paused: HashMap<String, bool>,
    limits: HashMap<String, QueueLimits>,
    /// A queue's rate bucket as spent (`None`: forgotten, its rate changed).
    buckets: HashMap<String, Option<Bucket>>,
    /// Leases of these queues were held back by their limits, or were not.
    held: HashMap<String, Option<Held>>,
    new_queues: HashSet<String>,
    next_due_exact: Option<Option<Timestamp>>,
    /// The id of the last event the batch wrote.
    last_event: Option<u64>,
    /// Job rows written, for the cache of running jobs.
    leased: super::leased::LeasedChanges,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.changes.merge(other.changes);
        self.paused.extend(other.paused);
        self.limits.extend(other.limits);
        self.buckets.extend(other.buckets);
        self.held.extend(other.held);
        self.new_queues.extend(other.new_queues);
        self.leased.extend(other.leased);
        if other.next_due_exact.is_some() {
            self.next_due_exact = other.next_due_exact;
        }
    }
}

/// Caches the writer keeps between batches.
#[derive(Default)]
struct Caches {
    paused: HashSet<String>,
    /// Queues with any limit set.
    limits: HashMap<String, QueueLimits>,
    buckets: HashMap<String, Bucket>,
    known_queues: HashSet<String>,
    timetables: super::timetables::Timetables,
    leased: super::leased::Leased,
}

/// The transaction context an operation runs in.
pub(crate) struct Batch<'a> {
    /// The writer connection, inside the batch transaction.
    pub conn: &'a Connection,
    /// The store's clock, read once per batch (microsecond precision, as stored).
    pub now: Timestamp,
    caches: &'a Caches,
    ids: &'a mut IdGen,
    /// When this store was opened: schedule slots since then are not misfires.
    pub up_since: Timestamp,
    op: Effects,
    all: Effects,
    promoted: bool,
}

impl Batch<'_> {
    /// A fresh job id: UUIDv7, increasing within this process.
    pub fn next_id(&mut self) -> Uuid {
        self.ids.next_v7(self.now.as_millisecond() as u64)
    }

    /// Schedules as parsed for firing (see [`super::timetables`]).
    pub fn timetables(&self) -> &super::timetables::Timetables {
        &self.caches.timetables
    }

    /// Loads a job by its public id: a running job read without its payload from the
    /// cache of running jobs when it is there (as this batch has written it so far).
    pub fn load(&self, id: Uuid, read: Read) -> Result<Option<StoredJob>, StoreError> {
        if read == Read::WithoutPayload {
            let kept = match self.op.leased.get(&id).or_else(|| self.all.leased.get(&id)) {
                Some(written) => written.as_deref(),
                None => self.caches.leased.get(&id),
            };
            if let Some(kept) = kept {
                let kept = kept.clone();
                // Tests run debug builds: every read from the cache is checked there
                // against the row itself.
                #[cfg(debug_assertions)]
                {
                    let row = rows::job_by_id(self.conn, id, read)?.expect("a kept job has a row");
                    assert_eq!(
                        (row.seq, row.stored_state, &row.job.lease),
                        (kept.seq, kept.stored_state, &kept.job.lease),
                        "the cache of running jobs holds the row as it stands"
                    );
                    assert_eq!(
                        serde_json::to_string(&row.job)?,
                        serde_json::to_string(&kept.job)?,
                        "the cache of running jobs holds the row as it stands"
                    );
                }
                return Ok(Some(kept));
            }
        }
        rows::job_by_id(self.conn, id, read)
    }

    /// Loads a job by its internal key.
    pub fn load_seq(&self, seq: i64, read: Read) -> Result<StoredJob, StoreError> {
        rows::job_by_seq(self.conn, seq, read)
    }

    /// Inserts a new job and accounts for it (its `job.enqueued` event included).
    pub fn insert(&mut self, job: &Job) -> Result<(), StoreError> {
        self.ensure_queue(&job.queue)?;
        // A new job is not running, so the cache of running jobs has nothing to learn.
        rows::insert_job(self.conn, job)?;
        self.account(&job.queue, None, Some(job));
        self.op.changes.enqueued(job, self.now);
        Ok(())
    }

    /// Saves a job after a transition and accounts for the state change and for the
    /// events the transition made.
    pub fn save(&mut self, stored: &StoredJob, happened: Happened) -> Result<(), StoreError> {
        rows::save_job(self.conn, stored.seq, &stored.job)?;
        self.op.leased.insert(
            stored.job.id,
            super::leased::change(stored.seq, &stored.job),
        );
        self.account(
            &stored.job.queue,
            Some(stored.stored_state),
            Some(&stored.job),
        );
        self.op.changes.happened(happened, &stored.job, self.now);
        Ok(())
    }

    /// Deletes a job and accounts for it and for the events its deletion made.
    pub fn remove(&mut self, stored: &StoredJob, happened: Happened) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM jobs WHERE seq = ?1")?
            .execute([stored.seq])?;
        self.op.leased.insert(stored.job.id, None);
        self.account(&stored.job.queue, Some(stored.stored_state), None);
        self.op.changes.happened(happened, &stored.job, self.now);
        Ok(())
    }

    /// Records an event that is no job transition (a queue or schedule change).
    pub fn event(&mut self, event: NewEvent) {
        self.op.changes.event(event);
    }

    /// A job of `queue` in `state` was deleted (by a statement that deleted many).
    pub fn forget(&mut self, queue: &str, state: JobState) {
        self.account(queue, Some(state), None);
    }

    /// Count deltas, wake-ups and due times that follow from a job changing.
    fn account(&mut self, queue: &str, from: Option<JobState>, to: Option<&Job>) {
        self.op.changes.account(queue, from, to);
    }

    /// Something (a schedule) is due at `at`: the timer wakes for it after commit.
    pub fn due_at(&mut self, at: Timestamp) {
        self.op.changes.due_at(at);
    }

    /// Makes sure a queue row exists.
    pub fn ensure_queue(&mut self, name: &str) -> Result<(), StoreError> {
        if self.caches.known_queues.contains(name)
            || self.op.new_queues.contains(name)
            || self.all.new_queues.contains(name)
        {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO queues (name, paused, created_at) VALUES (?1, 0, ?2)",
            )?
            .execute(params![name, rows::us(self.now)])?;
        self.op.new_queues.insert(name.to_string());
        Ok(())
    }

    /// Whether leasing from `queue` is paused, counting changes earlier in this batch.
    pub fn is_paused(&self, queue: &str) -> bool {
        if let Some(p) = self
            .op
            .paused
            .get(queue)
            .or_else(|| self.all.paused.get(queue))
        {
            return *p;
        }
        self.caches.paused.contains(queue)
    }

    /// A queue's limits, counting changes earlier in this batch.
    pub fn limits(&self, queue: &str) -> QueueLimits {
        self.op
            .limits
            .get(queue)
            .or_else(|| self.all.limits.get(queue))
            .or_else(|| self.caches.limits.get(queue))
            .copied()
            .unwrap_or_default()
    }

    /// Records a queue's new settings (its row is written by the caller), applied to the
    /// caches after commit; `rate_changed` starts its bucket again.
    pub fn queue_changed(
        &mut self,
        queue: &str,
        paused: bool,
        limits: QueueLimits,
        rate_changed: bool,
    ) {
        self.op.paused.insert(queue.to_string(), paused);
        self.op.limits.insert(queue.to_string(), limits);
        if rate_changed {
            self.op.buckets.insert(queue.to_string(), None);
        }
        self.op.new_queues.insert(queue.to_string());
    }

    /// A queue's rate bucket, refilled to now (spent earlier in this batch counts).
    pub fn bucket(&self, queue: &str, rate: Rate) -> Bucket {
        let kept = match self
            .op
            .buckets
            .get(queue)
            .or_else(|| self.all.buckets.get(queue))
        {
            Some(b) => *b,
            None => self.caches.buckets.get(queue).copied(),
        };
        Bucket::refilled(kept, rate, self.now)
    }

    /// Keeps a queue's bucket as spent.
    pub fn set_bucket(&mut self, queue: &str, bucket: Bucket) {
        self.op.buckets.insert(queue.to_string(), Some(bucket));
    }

    /// Leases of `queue` were held back by its limits (`Some`), or were not.
    pub fn held(&mut self, queue: &str, held: Option<Held>) {
        self.op.held.insert(queue.to_string(), held);
    }

    /// Jobs of `queue` in `states` now, counting this batch's changes so far.
    pub fn count(&self, queue: &str, states: &[JobState]) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT n FROM queue_counts WHERE queue = ?1 AND state = ?2")?;
        let mut n: i64 = 0;
        for &state in states {
            let kept: Option<i64> = stmt
                .query_row(params![queue, state.code()], |r| r.get(0))
                .optional()?;
            n += kept.unwrap_or(0);
            let key = (queue.to_string(), state);
            n += self.op.changes.counts.get(&key).copied().unwrap_or(0);
            n += self.all.changes.counts.get(&key).copied().unwrap_or(0);
        }
        Ok(n.max(0) as u64)
    }

    /// Records the exact next due time found by a maintenance pass.
    pub fn set_next_due(&mut self, at: Option<Timestamp>) {
        self.op.next_due_exact = Some(at);
    }

    /// Makes due waiting jobs available, at most once per batch. Returns how many.
    pub fn promote_due(&mut self) -> Result<u64, StoreError> {
        if self.promoted {
            return Ok(0);
        }
        self.promoted = true;
        let seqs: Vec<i64> = {
            let mut stmt = self.conn.prepare_cached(&DUE_WAITING)?;
            stmt.query_map(params![rows::us(self.now), MAINTENANCE_CHUNK], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut n = 0;
        for seq in seqs {
            let mut stored = self.load_seq(seq, Read::WithoutPayload)?;
            if stored.job.promote(self.now) {
                // Waiting → available is no event: the job's run_at says when.
                self.save(&stored, Happened::NOTHING)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The writer: its connection, clock, caches and the signals it raises.
pub(crate) struct Writer {
    conn: Connection,
    /// The data directory (its filesystem's free space ends a full-disk episode).
    dir: PathBuf,
    health: Arc<Health>,
    /// Operations sent and not yet taken: the write queue's depth.
    queued: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
    signals: Arc<Signals>,
    caches: Caches,
    ids: IdGen,
    up_since: Timestamp,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        clock: Arc<dyn Clock>,
        signals: Arc<Signals>,
        queued: Arc<AtomicUsize>,
        health: Arc<Health>,
        dir: PathBuf,
    ) -> Result<Writer, StoreError> {
        let mut caches = Caches::default();
        for (name, paused, limits) in super::read::settings(&conn, None)? {
            if paused {
                caches.paused.insert(name.clone());
            }
            if limits != QueueLimits::default() {
                caches.limits.insert(name.clone(), limits);
            }
            caches.known_queues.insert(name);
        }
        let up_since = clock.now();
        Ok(Writer {
            conn,
            dir,
            health,
            queued,
            clock,
            signals,
            up_since,
            caches,
            ids: IdGen::default(),
        })
    }

    /// Runs until shutdown or until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut ops: Vec<(Op, Atomicity)> = Vec::new();
        let mut done: Option<oneshot::Sender<()>> = None;
        while done.is_none() {
            // Operations left over from a rolled-back batch go first, without waiting.
            if ops.is_empty() {
                match rx.blocking_recv() {
                    Some(Msg::Op(op, a)) => {
                        self.queued.fetch_sub(1, Ordering::AcqRel);
                        ops.push((op, a));
                    }
                    Some(Msg::Shutdown(d)) => done = Some(d),
                    None => break,
                }
            }
            while done.is_none() && ops.len() < MAX_OPS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(Msg::Op(op, a)) => {
                        self.queued.fetch_sub(1, Ordering::AcqRel);
                        ops.push((op, a));
                    }
                    Ok(Msg::Shutdown(d)) => done = Some(d),
                    Err(_) => break,
                }
            }
            if !ops.is_empty() {
                ops = self.commit(std::mem::take(&mut ops));
            }
        }
        // Ops that raced with shutdown are answered `Closed` when `rx` drops (and
        // leftovers of a rolled-back batch when `ops` drops).
        drop(ops);
        drop(rx);
        if let Err(e) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::warn!(error = %e, "final checkpoint failed; the WAL will be replayed on open");
        }
        drop(self.conn);
        if let Some(d) = done {
            let _ = d.send(());
        }
    }

    /// Runs `ops` in one transaction and answers each once the commit is decided. When
    /// SQLite rolls the whole transaction back under an operation (a full disk, an I/O
    /// error), that operation and those before it get the error, and the ones not yet
    /// run are handed back for the next batch.
    fn commit(&mut self, ops: Vec<(Op, Atomicity)>) -> Vec<(Op, Atomicity)> {
        let started = std::time::Instant::now();
        let now =
            Timestamp::from_microsecond(self.clock.now().as_microsecond()).expect("clock in range");
        let mut replies: Vec<Reply> = Vec::with_capacity(ops.len());
        let mut ops = ops.into_iter();
        let health = self.health.clone();
        let mut rolled_back_under_op = false;
        let mut saw_full = false;
        let result = (|| -> Result<Effects, StoreError> {
            self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            let mut batch = Batch {
                conn: &self.conn,
                now,
                caches: &self.caches,
                ids: &mut self.ids,
                up_since: self.up_since,
                op: Effects::default(),
                all: Effects::default(),
                promoted: false,
            };
            for (op, atomicity) in ops.by_ref() {
                let atomic = atomicity == Atomicity::AllOrNothing;
                if atomic {
                    batch.conn.prepare_cached("SAVEPOINT op")?.execute([])?;
                }
                let (outcome, reply) =
                    match std::panic::catch_unwind(AssertUnwindSafe(|| op.run(&mut batch))) {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::error!("a store operation panicked");
                            let failed = StoreError::Backend("an operation panicked".into());
                            (Err(failed), Box::new(|_: Option<&StoreError>| {}) as Reply)
                        }
                    };
                replies.push(reply);
                if let Err(e) = &outcome {
                    saw_full |= matches!(e, StoreError::Full(_));
                    health.observe(e);
                }
                if batch.conn.is_autocommit() {
                    // SQLite rolled the whole transaction back: nothing of it stands.
                    rolled_back_under_op = true;
                    return Err(outcome.err().unwrap_or_else(|| {
                        StoreError::Backend("the transaction was rolled back".into())
                    }));
                }
                let ok = outcome.is_ok();
                let effects = std::mem::take(&mut batch.op);
                if atomic {
                    if !ok {
                        batch.conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
                    }
                    batch.conn.prepare_cached("RELEASE op")?.execute([])?;
                }
                // What a per-row operation wrote before failing stays, so it is accounted.
                if ok || !atomic {
                    batch.all.merge(effects);
                }
            }
            let mut effects = batch.all;
            let events = std::mem::take(&mut effects.changes.events);
            effects.last_event = super::events::insert(&self.conn, &events)?;
            let mut upsert = self.conn.prepare_cached(
                "INSERT INTO queue_counts (queue, state, n) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n",
            )?;
            let (queues, states, deltas) = effects.changes.count_columns();
            for ((queue, state), delta) in queues.iter().zip(states).zip(deltas) {
                upsert.execute(params![queue, state, delta])?;
            }
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(effects)
        })();
        match result {
            Ok(mut effects) => {
                if !saw_full {
                    self.health.committed(&self.dir);
                }
                effects.changes.commit = Some((started.elapsed().as_secs_f64(), replies.len()));
                self.apply(effects);
                for reply in replies {
                    reply(None);
                }
                Vec::new()
            }
            Err(e) => {
                self.health.observe(&e);
                if !matches!(e, StoreError::Full(_)) {
                    tracing::error!(error = %e, "commit failed; every operation in the batch is refused");
                }
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                for reply in replies {
                    reply(Some(&e));
                }
                if rolled_back_under_op {
                    // At least the operation that met the failure was answered, so
                    // retrying the rest makes progress.
                    ops.collect()
                } else {
                    for (op, _) in ops {
                        op.refuse(&e);
                    }
                    Vec::new()
                }
            }
        }
    }

    /// Post-commit: caches and signals.
    fn apply(&mut self, e: Effects) {
        self.caches.known_queues.extend(e.new_queues);
        self.caches.leased.apply(e.leased);
        for (queue, paused) in e.paused {
            if paused {
                self.caches.paused.insert(queue);
            } else {
                self.caches.paused.remove(&queue);
                self.signals.queue_changed(&queue);
            }
        }
        for (queue, limits) in e.limits {
            // Waiting leases look again: a limit may have been raised or removed.
            self.signals.queue_changed(&queue);
            if limits == QueueLimits::default() {
                self.caches.limits.remove(&queue);
            } else {
                self.caches.limits.insert(queue, limits);
            }
        }
        for (queue, bucket) in e.buckets {
            match bucket {
                Some(b) => self.caches.buckets.insert(queue, b),
                None => self.caches.buckets.remove(&queue),
            };
        }
        for (queue, held) in e.held {
            self.signals.hold(&queue, held);
        }
        if let Some(exact) = e.next_due_exact {
            self.signals.set_next_due(exact);
        }
        if let Some(id) = e.last_event {
            self.signals.events_committed(id);
        }
        e.changes.announce(&self.signals);
    }
}
