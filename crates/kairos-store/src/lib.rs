//! Kairos storage: the [`Store`] trait every backend implements, and the embedded
//! SQLite backend.
//!
//! - [`Store`]: the operations the engine needs, each one durable when it returns `Ok`.
//! - [`signal`]: what a backend announces after each commit (jobs became available,
//!   something is due earlier), so the engine wakes workers and timers without polling.
//! - `conformance` (feature `conformance`): the suite every backend's tests run.
//! - [`sqlite`]: the embedded backend: one writer thread that commits every waiting
//!   request in one transaction (group commit), and a small pool of reader connections.
//!
//! Backends do not decide what a job may do: they load it, ask the state machine in
//! `kairos_core::machine`, and persist the answer.

/// The `jobs` column list of a job read, with `$payload` in the payload's place: the
/// same columns in every backend's schema, read by each backend's `rows::job_from_row` in
/// this order. (Defined before the modules, so every one of them can use it.)
macro_rules! job_columns {
    ($payload:literal) => {
        concat!(
            "seq, id, queue, kind, ",
            $payload,
            ", priority, state, attempt, max_attempts, run_at, created_at, started_at, \
             finished_at, unique_key, tags, errors, result, timeout_ms, backoff, \
             cancel_requested, lease_token, lease_worker, lease_expires_at, lease_reported, \
             schedule_id, scheduled_for, failures, trace"
        )
    };
}

pub mod activity;
mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod events;
mod ids;
mod limits;
mod listing;
pub mod postgres;
pub mod signal;
pub mod sqlite;
mod states;
mod stored;

pub use error::{ItemError, StoreError};
pub use postgres::PostgresStore;
pub use signal::{QueueWatch, Signals};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use kairos_core::api::{
    AckReport, ClusterNode, Extension, JobFilter, JobPage, LeaseSpec, LeasedJob,
};
use kairos_core::event::{EventFilter, EventPage};
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{Cutoffs, Job, JobState, Limits, NewJob, Queue, QueueChange, Timestamp};
use std::sync::Arc;
use uuid::Uuid;

/// Most waiting jobs promoted (or lapsed leases expired) in one maintenance pass; the rest
/// go in the next pass, so one pass stays short however much is due.
pub(crate) const MAINTENANCE_CHUNK: i64 = 5_000;
/// Dead jobs moved back per commit by `retry_dead`.
pub(crate) const RETRY_DEAD_CHUNK: i64 = 1_000;
/// One chunk of a queue's redrive: how many came back, and where the next chunk starts
/// (`None`: done).
pub(crate) struct RetriedChunk {
    pub retried: u64,
    pub next: Option<i64>,
}

/// Redrives a queue's dead jobs up to `last` (the newest dead job's `seq` when the call
/// began, so a queue that keeps failing cannot keep it going), one commit per chunk:
/// a million dead jobs never make one giant transaction, and each chunk is durable on
/// its own. `chunk(after)` moves the next chunk after `seq` `after`. Answers the total.
pub(crate) async fn redrive<F, Fut>(last: Option<i64>, mut chunk: F) -> Result<u64, StoreError>
where
    F: FnMut(i64, i64) -> Fut,
    Fut: std::future::Future<Output = Result<RetriedChunk, StoreError>>,
{
    let Some(last) = last else { return Ok(0) };
    let (mut total, mut after) = (0, 0);
    loop {
        let done = chunk(after, last).await?;
        total += done.retried;
        match done.next {
            Some(next) => after = next,
            None => return Ok(total),
        }
    }
}

states::statement!(
    /// Finished jobs past their retention, oldest first (`$1`/`?1`: completed and
    /// cancelled before, `$2`/`?2`: dead before, `$3`/`?3`: how many). Placeholders and
    /// the finished condition are spelled per backend by [`prunable`].
    PRUNABLE = "SELECT seq FROM jobs WHERE #finished AND \
     ((state IN ({completed}, {cancelled}) AND finished_at < #1) OR \
      (state = {dead} AND finished_at < #2)) ORDER BY finished_at LIMIT #3"
);

/// [`PRUNABLE`] with `prefix` (`$` or `?`) for its parameters and `finished` (the
/// condition for a finished job exactly as the backend's `jobs_finished` index spells
/// it, so the planner uses that index).
pub(crate) fn prunable(prefix: char, finished: &str) -> String {
    PRUNABLE
        .replace("#finished", finished)
        .replace('#', &prefix.to_string())
}

/// Every instant a trigger may take was taken (see `Schedule::trigger_instants`).
pub(crate) fn triggers_exhausted() -> StoreError {
    StoreError::Duplicate("too many runs of this schedule at this instant".to_string())
}

/// Schedules fired per tick. The rest stay due, so the timer ticks again at once; runs
/// of the first chunk are committed (and leasable) while later ones are still being made.
pub(crate) const FIRE_CHUNK: i64 = 100;
/// How long an idempotency key answers repeats.
pub(crate) const IDEMPOTENCY_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The stored first answer of an idempotent enqueue (the same JSON in every backend).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredAnswer {
    pub created: Vec<bool>,
    pub jobs: Vec<Job>,
}

/// A job as callers see it: a waiting job whose time has come reads as available.
pub(crate) fn visible(mut job: Job, now: Timestamp) -> Job {
    job.state = job.effective_state(now);
    job
}

/// A key found stored, as its row holds it: the fingerprint, when it was first used, and
/// the answer then.
pub(crate) struct StoredKey {
    pub fingerprint: i64,
    pub created_at: Timestamp,
    pub answer: String,
}

/// The idempotency rule, the same for every backend: a key first used within the window
/// answers its first answer again if the request is the same, and is refused for another;
/// an older one is forgotten (`None`: enqueue afresh).
pub(crate) fn replay(
    key: &IdempotencyKey,
    found: Option<StoredKey>,
    now: Timestamp,
) -> Result<Option<Enqueued>, StoreError> {
    let fresh_after = now.saturating_sub(IDEMPOTENCY_WINDOW).unwrap_or(now);
    let Some(found) = found.filter(|f| f.created_at > fresh_after) else {
        return Ok(None);
    };
    if found.fingerprint != key.fingerprint as i64 {
        return Err(StoreError::IdempotencyMismatch);
    }
    let answer: StoredAnswer = serde_json::from_str(&found.answer)?;
    Ok(Some(Enqueued {
        jobs: answer.jobs.into_iter().zip(answer.created).collect(),
        replayed: true,
    }))
}

/// An `Idempotency-Key` with a fingerprint of the request it was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it, scoped by the caller (e.g. `jobs:abc`).
    pub key: String,
    /// A hash of the request; a repeat with another request is refused.
    pub fingerprint: u64,
}

/// The answer to an enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// One entry per requested job, in order: the job and whether it was created
    /// (`false`: an unfinished job with the same unique key already existed).
    pub jobs: Vec<(Job, bool)>,
    /// This answer is a replay of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// A lease extended by a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended {
    /// The new expiry, by the store's clock.
    pub lease_expires_at: Timestamp,
    /// Someone asked to cancel the job: its worker should stop.
    pub cancel_requested: bool,
}

/// What a maintenance tick did, and when the next one is due.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// Waiting jobs that became available.
    pub promoted: u64,
    /// Running jobs whose lease ran out.
    pub expired: u64,
    /// Runs made by due schedules.
    pub fired: u64,
    /// Earliest time something is due (a run_at or a lease expiry), if anything is.
    pub next_due: Option<Timestamp>,
}

/// A server process using the store, as it introduces itself to [`Store::beat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Chosen by the process at start.
    pub id: Uuid,
    /// Where operators reach it.
    pub address: String,
    /// When it started.
    pub started_at: Timestamp,
}

/// Durable storage of jobs and queues. Every method that returns `Ok` has its change on
/// disk. Time is the store's clock, never the caller's.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates jobs, all or none. A job whose unique key matches an unfinished job of its
    /// queue is not created; that job is answered instead. With an idempotency key,
    /// a repeat of the same request answers the first answer again. A batch that would
    /// take a queue past its `max_depth` is refused whole ([`StoreError::QueueFull`]).
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Enqueued, StoreError>;

    /// One job.
    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError>;

    /// A page of jobs, newest first.
    async fn list_jobs(&self, filter: JobFilter) -> Result<JobPage, StoreError>;

    /// Cancels a job (see `Job::cancel`).
    async fn cancel(&self, id: Uuid) -> Result<Job, StoreError>;

    /// Runs a job again now (see `Job::retry`).
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError>;

    /// Deletes a job that is not running.
    async fn delete(&self, id: Uuid) -> Result<(), StoreError>;

    /// Leases up to `spec.max` available jobs from unpaused queues, in lease order
    /// (priority high to low, then run_at, then id), taking no more from a queue than its
    /// `concurrency` and `rate` allow, across every node sharing the store; a queue held
    /// back is told to [`Signals::hold`]. Never waits.
    async fn lease(&self, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError>;

    /// Applies workers' reports; each item succeeds or fails on its own.
    async fn ack(
        &self,
        reports: Vec<AckReport>,
    ) -> Result<Vec<Result<JobState, ItemError>>, StoreError>;

    /// Extends leases; each item answers the new expiry and whether cancel was requested.
    async fn heartbeat(
        &self,
        extensions: Vec<Extension>,
    ) -> Result<Vec<Result<Extended, ItemError>>, StoreError>;

    /// Every known queue, by name.
    async fn queues(&self) -> Result<Vec<Queue>, StoreError>;

    /// One queue, if it ever held a job or was patched.
    async fn queue(&self, name: &str) -> Result<Option<Queue>, StoreError>;

    /// Changes a queue's pause flag and limits (creating it if new); answers the queue
    /// as changed. A changed rate starts its bucket again, full.
    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<Queue, StoreError>;

    /// Pauses or resumes leasing from a queue (creating it if new).
    async fn set_paused(&self, name: &str, paused: bool) -> Result<Queue, StoreError> {
        self.change_queue(name, QueueChange::pause(paused)).await
    }

    /// The `run_at` of the job of `queue` that has been available longest, if any is:
    /// one index seek per priority in use (at most 201), however many jobs wait.
    async fn oldest_available(&self, queue: &str) -> Result<Option<Timestamp>, StoreError>;

    /// Moves every dead job of a queue back to available with attempt 0.
    async fn retry_dead(&self, queue: &str) -> Result<u64, StoreError>;

    /// Makes due waiting jobs available, expires lapsed leases, and fires due schedules.
    async fn tick(&self) -> Result<Tick, StoreError>;

    /// Creates a schedule (validated against the store's clock); names are unique.
    async fn create_schedule(
        &self,
        req: ScheduleRequest,
        limits: Limits,
    ) -> Result<Schedule, StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;

    /// One schedule.
    async fn schedule(&self, id: Uuid) -> Result<Option<Schedule>, StoreError>;

    /// Applies a partial update.
    async fn update_schedule(
        &self,
        id: Uuid,
        patch: SchedulePatch,
        limits: Limits,
    ) -> Result<Schedule, StoreError>;

    /// Deletes a schedule; the runs it made stay.
    async fn delete_schedule(&self, id: Uuid) -> Result<(), StoreError>;

    /// Enqueues one run now, outside the timetable.
    async fn trigger_schedule(&self, id: Uuid) -> Result<Job, StoreError>;

    /// Deletes up to `limit` finished jobs past their retention (oldest first), in one
    /// commit; answers how many. Callers repeat while it answers `limit`.
    async fn prune_finished(&self, cutoffs: Cutoffs, limit: u32) -> Result<u64, StoreError>;

    /// A page of the event log: events with ids greater than `filter.after` that pass
    /// its filters, oldest first (see [`EventPage`] for where the next page starts).
    /// Only committed events are read, and an event never appears after one with a
    /// greater id was shown.
    async fn events(&self, filter: EventFilter) -> Result<EventPage, StoreError>;

    /// The latest event's id (0: there has been none).
    async fn last_event_id(&self) -> Result<u64, StoreError>;

    /// Deletes up to `limit` of the oldest events if they happened before `before`, in
    /// one commit; answers how many. Callers repeat while it answers `limit`.
    async fn prune_events(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;

    /// Appends events that record no change of this store (a feature's, like
    /// `task.due`), in order, stamped with the store's clock, as one commit.
    async fn append_events(
        &self,
        events: Vec<kairos_core::event::NewEvent>,
    ) -> Result<(), StoreError>;

    /// Where the durable reader `name` of the event log (a sink, a feature's subscriber)
    /// has read up to: it resumes after this id. `None`: nothing was ever saved.
    async fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError>;

    /// Records, durably, that `name` has read up to `after`. A cursor only moves
    /// forward: a save behind the one stored (a late or duplicate one) changes nothing.
    async fn save_cursor(&self, name: &str, after: u64) -> Result<(), StoreError>;

    /// Forgets idempotency keys first used before `before`.
    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records that `node` is alive and claims (or keeps) the lead of the background
    /// duties ([`Store::tick`], pruning): answers whether `node` leads now. Exactly one
    /// node leads a shared store at a time; a store only one process can open is always
    /// led by it.
    async fn beat(&self, node: &Node) -> Result<bool, StoreError> {
        let _ = node;
        Ok(true)
    }

    /// `node` stops (a clean shutdown): another node may lead at once.
    async fn resign(&self, node: &Node) -> Result<(), StoreError> {
        let _ = node;
        Ok(())
    }

    /// How many jobs each worker holds leased now (running), by worker name; workers
    /// with none are absent.
    async fn running_by_worker(&self)
    -> Result<std::collections::HashMap<String, u64>, StoreError>;

    /// Saves what nodes know of workers, each merged into the saved one by
    /// [`kairos_core::worker::Sighting::merge`]'s rule.
    async fn save_workers(
        &self,
        workers: Vec<kairos_core::worker::Sighting>,
    ) -> Result<(), StoreError>;

    /// The saved workers, most recently seen first, at most `limit`.
    async fn workers(&self, limit: usize)
    -> Result<Vec<kairos_core::worker::Sighting>, StoreError>;

    /// Forgets workers last seen before `before`, and all but the `keep` most recently
    /// seen; answers how many.
    async fn forget_workers(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError>;

    /// The nodes sharing this store, oldest first; `None` for a store only one process
    /// can open (the caller is the only node).
    async fn nodes(&self) -> Result<Option<Vec<ClusterNode>>, StoreError> {
        Ok(None)
    }

    /// What the store announces after each commit.
    fn signals(&self) -> Arc<Signals>;

    /// Writes waiting for the store's writer, for a store with one (SQLite's group
    /// commit); `None` otherwise.
    fn waiting_writes(&self) -> Option<u64> {
        None
    }

    /// The store's clock: the one that judges run_at, lease expiry and fire times. A
    /// backend whose clock lives elsewhere (a database server) answers its best estimate
    /// here; the engine only uses it to decide when to look next, and every judgement
    /// is made inside the store by the store's own clock.
    fn now(&self) -> Timestamp;

    /// How often the timer must tick even when nothing was announced: a store shared
    /// with other nodes hears nothing of what they enqueue or lease. `None`: every change
    /// comes through this store, so its announcements are enough.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Finishes pending writes and closes. Later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}
