//! The engine without HTTP: long-polls wake on a commit (not by polling the store), end
//! at once on shutdown, and leave no per-queue notifier behind.

use async_trait::async_trait;
use kairos_core::api::{
    AckReport, EnqueueRequest, Extension, JobFilter, JobPage, LeaseRequest, LeaseSpec, LeasedJob,
};
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{Job, JobState, Limits, NewJob, Queue, QueueChange, Timestamp};
use kairos_server::engine::Engine;
use kairos_store::{
    Enqueued, Extended, IdempotencyKey, ItemError, Signals, SqliteStore, Store, StoreError, Tick,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// This test's node.
fn node() -> kairos_store::Node {
    kairos_store::Node {
        id: Uuid::now_v7(),
        address: "test".into(),
        started_at: Timestamp::now(),
    }
}

/// Longer than any answer here may take; a long-poll that is not woken waits 60 s.
const GUARD: Duration = Duration::from_secs(20);

/// A store that counts how often it is asked to lease.
struct Counting {
    inner: SqliteStore,
    leases: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        key: Option<IdempotencyKey>,
    ) -> Result<Enqueued, StoreError> {
        self.inner.enqueue(jobs, key).await
    }
    async fn job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.inner.job(id).await
    }
    async fn list_jobs(&self, filter: JobFilter) -> Result<JobPage, StoreError> {
        self.inner.list_jobs(filter).await
    }
    async fn cancel(&self, id: Uuid) -> Result<Job, StoreError> {
        self.inner.cancel(id).await
    }
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        self.inner.retry(id).await
    }
    async fn delete(&self, id: Uuid) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn lease(&self, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError> {
        self.leases.fetch_add(1, Ordering::SeqCst);
        self.inner.lease(spec).await
    }
    async fn ack(
        &self,
        reports: Vec<AckReport>,
    ) -> Result<Vec<Result<JobState, ItemError>>, StoreError> {
        self.inner.ack(reports).await
    }
    async fn heartbeat(
        &self,
        extensions: Vec<Extension>,
    ) -> Result<Vec<Result<Extended, ItemError>>, StoreError> {
        self.inner.heartbeat(extensions).await
    }
    async fn running_by_worker(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        self.inner.running_by_worker().await
    }

    async fn save_workers(
        &self,
        workers: Vec<kairos_core::worker::Sighting>,
    ) -> Result<(), StoreError> {
        self.inner.save_workers(workers).await
    }
    async fn workers(
        &self,
        limit: usize,
    ) -> Result<Vec<kairos_core::worker::Sighting>, StoreError> {
        self.inner.workers(limit).await
    }
    async fn forget_workers(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        self.inner.forget_workers(before, keep).await
    }

    async fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.inner.queues().await
    }
    async fn queue(&self, name: &str) -> Result<Option<Queue>, StoreError> {
        self.inner.queue(name).await
    }
    async fn oldest_available(
        &self,
        queue: &str,
    ) -> Result<Option<kairos_core::Timestamp>, StoreError> {
        self.inner.oldest_available(queue).await
    }
    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<Queue, StoreError> {
        self.inner.change_queue(name, change).await
    }
    async fn retry_dead(&self, queue: &str) -> Result<u64, StoreError> {
        self.inner.retry_dead(queue).await
    }
    async fn tick(&self) -> Result<Tick, StoreError> {
        self.inner.tick().await
    }
    async fn create_schedule(
        &self,
        req: ScheduleRequest,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.inner.create_schedule(req, limits).await
    }
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.inner.schedules().await
    }
    async fn schedule(&self, id: Uuid) -> Result<Option<Schedule>, StoreError> {
        self.inner.schedule(id).await
    }
    async fn update_schedule(
        &self,
        id: Uuid,
        patch: SchedulePatch,
        limits: Limits,
    ) -> Result<Schedule, StoreError> {
        self.inner.update_schedule(id, patch, limits).await
    }
    async fn delete_schedule(&self, id: Uuid) -> Result<(), StoreError> {
        self.inner.delete_schedule(id).await
    }
    async fn trigger_schedule(&self, id: Uuid) -> Result<Job, StoreError> {
        self.inner.trigger_schedule(id).await
    }
    async fn prune_finished(
        &self,
        cutoffs: kairos_core::Cutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.inner.prune_finished(cutoffs, limit).await
    }
    async fn prune_idempotency_keys(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune_idempotency_keys(before).await
    }
    async fn events(
        &self,
        filter: kairos_core::event::EventFilter,
    ) -> Result<kairos_core::event::EventPage, StoreError> {
        self.inner.events(filter).await
    }
    async fn last_event_id(&self) -> Result<u64, StoreError> {
        self.inner.last_event_id().await
    }
    async fn prune_events(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.inner.prune_events(before, limit).await
    }
    async fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.inner.cursor(name).await
    }
    async fn save_cursor(&self, name: &str, after: u64) -> Result<(), StoreError> {
        self.inner.save_cursor(name, after).await
    }
    async fn append_events(
        &self,
        events: Vec<kairos_core::event::NewEvent>,
    ) -> Result<(), StoreError> {
        self.inner.append_events(events).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn signals(&self) -> Arc<Signals> {
        self.inner.signals()
    }
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

fn long_poll(queue: &str) -> LeaseRequest {
    LeaseRequest {
        queues: vec![queue.into()],
        worker: "w".into(),
        wait: Some("60s".parse().unwrap()),
        ..Default::default()
    }
}

/// Resolves once someone waits on `queue` (a long-poll has looked and gone to sleep).
async fn until_watched(signals: &Signals, queue: &str) {
    tokio::time::timeout(GUARD, async {
        while signals.watchers(queue) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the long-poll starts waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_waiting_leases_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let engine = Engine::start(store.clone(), Limits::default(), node(), Default::default());
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.lease(long_poll("q"), &Default::default()).await })
    };
    until_watched(&store.signals(), "q").await;
    engine.begin_shutdown();
    let jobs = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("shutdown ends a 60 s long-poll at once")
        .unwrap()
        .unwrap();
    assert!(jobs.is_empty());
    assert_eq!(
        store.signals().watched_queues(),
        0,
        "no notifier left behind"
    );
    engine.stopped().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_sleeps_until_a_commit_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting {
        inner: SqliteStore::open(dir.path()).unwrap(),
        leases: AtomicUsize::new(0),
    });
    let store: Arc<dyn Store> = counting.clone();
    let engine = Engine::start(store.clone(), Limits::default(), node(), Default::default());
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.lease(long_poll("mail"), &Default::default()).await })
    };
    until_watched(&store.signals(), "mail").await;
    // Time passes with nothing to lease: a long-poll that polled would ask again here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counting.leases.load(Ordering::SeqCst),
        1,
        "one look, then sleep"
    );
    // Commits to other queues do not wake it either.
    let other = EnqueueRequest {
        queue: Some("sms".into()),
        kind: "k".into(),
        ..Default::default()
    };
    engine.enqueue(other, None, None).await.unwrap();
    let mail = EnqueueRequest {
        queue: Some("mail".into()),
        kind: "k".into(),
        ..Default::default()
    };
    let job = engine
        .enqueue(mail, None, None)
        .await
        .unwrap()
        .jobs
        .remove(0)
        .0;
    let leased = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the commit wakes the long-poll long before its 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job.id, job.id);
    assert_eq!(
        counting.leases.load(Ordering::SeqCst),
        2,
        "woken once, by the commit"
    );
    assert_eq!(store.signals().watched_queues(), 0);
    engine.begin_shutdown();
    engine.stopped().await;
    store.close().await;
}

/// A bus subscriber gets every event in order, what it did not commit again after a
/// restart, and nothing it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_from_its_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let filter = kairos_core::event::EventQuery::default()
        .validate()
        .unwrap();
    let enqueue = |engine: Engine| async move {
        let req = EnqueueRequest {
            queue: Some("bus".into()),
            kind: "k".into(),
            ..Default::default()
        };
        engine.enqueue(req, None, None).await.unwrap().jobs[0].0.id
    };
    let (first, uncommitted) = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let engine = Engine::start(store.clone(), Limits::default(), node(), Default::default());
        // Committed before the subscriber first ran: a new subscriber starts at the oldest.
        let first = enqueue(engine.clone()).await;
        let mut sub = engine
            .subscribe("feature:test", filter.clone())
            .await
            .unwrap();
        let got = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job_id, Some(first));
        sub.commit().await.unwrap();
        let second = enqueue(engine.clone()).await;
        let got = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got[0].job_id, Some(second), "given, never committed");
        sub.rewind();
        let again = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(again[0].id, got[0].id, "a rewind gives it again");
        engine.begin_shutdown();
        assert!(sub.next().await.is_none(), "shutdown ends the subscription");
        engine.stopped().await;
        store.close().await;
        (first, second)
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let engine = Engine::start(store.clone(), Limits::default(), node(), Default::default());
    let mut sub = engine.subscribe("feature:test", filter).await.unwrap();
    let got = tokio::time::timeout(GUARD, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let jobs: Vec<_> = got.iter().map(|e| e.job_id.unwrap()).collect();
    assert_eq!(
        jobs,
        vec![uncommitted],
        "resumes after {first}, at what it had not committed"
    );
    engine.begin_shutdown();
    engine.stopped().await;
    store.close().await;
}
