//! Signals a store raises after each commit, so the engine can wake waiting workers and
//! its timer at once instead of polling. They carry hints only; the store holds the truth,
//! so a missed or extra signal costs a round trip, never a job.
//!
//! A queue's notifier exists only while someone watches it ([`Signals::watch`]): every
//! queue name a lease mentions costs memory only for as long as that lease waits.
//!
//! A lease a queue's limits held back ([`Signals::hold`]) is no job becoming available:
//! it waits for a running job of the queue to end ([`Signals::slot_freed`], from this
//! node's commits; [`CONCURRENCY_RECHECK`] covers other nodes' acks) or for the rate's
//! next token ([`Signals::recheck_in`]).

use crate::activity::Observer;
use jiff::Timestamp;
use kairos_core::Held;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Post-commit announcements.
#[derive(Debug)]
pub struct Signals {
    queues: Mutex<HashMap<String, Watched>>,
    due: Notify,
    /// Lower bound (µs since epoch) of the next run_at or lease expiry; `i64::MAX`: none.
    next_due: AtomicI64,
    /// The earliest due time announced since the last [`Signals::mark_due`].
    announced_since_mark: AtomicI64,
    /// Told what each commit did.
    observer: RwLock<Option<Arc<dyn Observer>>>,
    /// The latest event id known committed (and, in PostgreSQL, numbered).
    events: watch::Sender<u64>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            queues: Mutex::new(HashMap::new()),
            due: Notify::new(),
            next_due: AtomicI64::new(i64::MAX),
            announced_since_mark: AtomicI64::new(i64::MAX),
            observer: RwLock::new(None),
            events: watch::Sender::new(0),
        }
    }
}

impl Signals {
    /// From now on, tells `observer` what each commit did (replacing any other).
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    pub(crate) fn observer(&self) -> Option<Arc<dyn Observer>> {
        self.observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Watches one queue until the returned guard is dropped: its notifier is woken once
    /// per job that became available there (and all at once when the queue is resumed).
    pub fn watch(self: &Arc<Self>, name: &str) -> QueueWatch {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(name.to_string()).or_insert_with(|| Watched {
            notify: Arc::new(Notify::new()),
            watchers: 0,
            held: None,
        });
        entry.watchers += 1;
        QueueWatch {
            signals: self.clone(),
            queue: name.to_string(),
            notify: entry.notify.clone(),
        }
    }

    /// How many watch `queue` now.
    pub fn watchers(&self, queue: &str) -> usize {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        map.get(queue).map_or(0, |w| w.watchers)
    }

    /// How many queues are watched now.
    pub fn watched_queues(&self) -> usize {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `count` jobs became available in `queue`.
    pub fn jobs_available(&self, queue: &str, count: u64) {
        let notify = {
            let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(queue) {
                Some(w) => w.notify.clone(),
                None => return, // nobody waits on this queue
            }
        };
        // One wake per job: each woken waiter takes at least one job. For a big batch,
        // wake everyone instead of counting (an extra wake-up costs one empty lease).
        if count > 64 {
            notify.notify_waiters();
            notify.notify_one();
        } else {
            for _ in 0..count {
                notify.notify_one();
            }
        }
    }

    /// A lease of `queue` was held back by its limits (`Some`), or took what it asked
    /// for (`None`). Kept only while the queue is watched.
    pub fn hold(&self, queue: &str, held: Option<Held>) {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get_mut(queue) {
            w.held = held;
        }
    }

    /// `n` running jobs of `queue` ended: one waiter per job looks again, if leases of
    /// the queue are held back by its concurrency.
    pub fn slot_freed(&self, queue: &str, n: u64) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get(queue)
            && w.held == Some(Held::Concurrency)
        {
            for _ in 0..n.min(64) {
                w.notify.notify_one();
            }
        }
    }

    /// How long a lease of `queues` that found nothing should wait at most before it
    /// looks again, because a limit held one of them back: until the rate's next token
    /// (spread over the queue's waiters, so they do not all wake for one token), or
    /// [`CONCURRENCY_RECHECK`]. `None`: nothing held, wait for commits only.
    pub fn recheck_in(&self, queues: &[String], now: Timestamp) -> Option<Duration> {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let mut soonest: Option<Duration> = None;
        for q in queues {
            let Some(w) = map.get(q) else { continue };
            let wait = match w.held {
                None => continue,
                Some(Held::Concurrency) => CONCURRENCY_RECHECK,
                Some(Held::Rate(at)) => {
                    let until = at.duration_since(now).max(jiff::SignedDuration::ZERO);
                    let until = Duration::try_from(until).unwrap_or_default();
                    // One waiter in `watchers` wakes per token, on average; tokens pile
                    // up meanwhile, so the late ones take several.
                    let spread = RATE_SPREAD.min(until.max(MIN_RECHECK) * w.watchers as u32);
                    until + spread.mul_f64(fastrand::f64())
                }
            };
            let wait = wait.max(MIN_RECHECK);
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        soonest
    }

    /// Every waiter of `queue` should look again (e.g. it was resumed).
    pub fn queue_changed(&self, queue: &str) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get(queue) {
            w.notify.notify_waiters();
        }
    }

    /// Every waiter of every queue should look again (what other nodes did may have been
    /// missed, e.g. while the connection that hears of it was down).
    pub fn wake_all(&self) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for w in map.values() {
            w.notify.notify_waiters();
        }
    }

    /// Something is due at `at` (or later); wakes the timer if that is earlier than it knew.
    pub fn due_at(&self, at: Timestamp) {
        let us = at.as_microsecond();
        // First here, so a concurrent `set_next_due_after` that misses this one in
        // `next_due` finds it in `announced_since_mark`.
        self.announced_since_mark.fetch_min(us, Ordering::AcqRel);
        let prev = self.next_due.fetch_min(us, Ordering::AcqRel);
        if us < prev {
            self.due.notify_one();
        }
    }

    /// Sets the next due time exactly, after a tick looked it up.
    pub fn set_next_due(&self, at: Option<Timestamp>) {
        let us = at.map_or(i64::MAX, |t| t.as_microsecond());
        self.next_due.store(us, Ordering::Release);
    }

    /// Starts a look-up of the next due time that commits on other tasks may race with
    /// (a backend whose writes run concurrently): what they announce from now on is kept
    /// for [`Signals::set_next_due_after`].
    pub fn mark_due(&self) {
        self.announced_since_mark.store(i64::MAX, Ordering::Release);
    }

    /// Sets the next due time to what a look-up begun at the last [`Signals::mark_due`]
    /// found, or to anything announced since if that is earlier: a commit that raced with
    /// the look-up is never overwritten by it.
    pub fn set_next_due_after(&self, at: Option<Timestamp>) {
        let found = at.map_or(i64::MAX, |t| t.as_microsecond());
        let mut current = self.next_due.load(Ordering::Acquire);
        loop {
            let target = found.min(self.announced_since_mark.load(Ordering::Acquire));
            match self.next_due.compare_exchange(
                current,
                target,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// The earliest time something may be due, if anything is.
    pub fn next_due(&self) -> Option<Timestamp> {
        match self.next_due.load(Ordering::Acquire) {
            i64::MAX => None,
            us => Timestamp::from_microsecond(us).ok(),
        }
    }

    /// Events up to `id` are committed and readable: event readers waiting for new ones
    /// look again.
    pub fn events_committed(&self, id: u64) {
        self.events.send_if_modified(|last| {
            let newer = id > *last;
            *last = (*last).max(id);
            newer
        });
    }

    /// Watches the latest committed event id (see [`Signals::events_committed`]).
    pub fn watch_events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Notified when the next due time moved earlier.
    pub fn due_changed(&self) -> &Notify {
        &self.due
    }
}

/// How soon a lease held back by a queue's concurrency looks again without hearing of
/// a job's end: acks on other nodes are not announced here.
pub const CONCURRENCY_RECHECK: Duration = Duration::from_millis(200);

/// Longest a rate-held waiter adds to the next token's time (under the burst of one
/// second, so tokens never overflow while waiters sleep).
const RATE_SPREAD: Duration = Duration::from_millis(500);

/// Shortest wait between two looks of one held lease.
const MIN_RECHECK: Duration = Duration::from_millis(1);

/// A queue's notifier, how many watch it, and whether its limits hold leases back.
#[derive(Debug)]
struct Watched {
    notify: Arc<Notify>,
    watchers: usize,
    held: Option<Held>,
}

/// One watcher of a queue; dropping it forgets the queue's notifier once nobody else
/// watches it.
#[derive(Debug)]
pub struct QueueWatch {
    signals: Arc<Signals>,
    queue: String,
    notify: Arc<Notify>,
}

impl QueueWatch {
    /// The queue's notifier.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for QueueWatch {
    fn drop(&mut self) {
        let mut map = self
            .signals
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.get_mut(&self.queue) {
            w.watchers -= 1;
            if w.watchers == 0 {
                map.remove(&self.queue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_big_batch_wakes_every_waiter() {
        let signals = Arc::new(Signals::default());
        let watch = signals.watch("q");
        let notify = watch.notify();
        let mut waiters: Vec<_> = (0..300).map(|_| Box::pin(notify.notified())).collect();
        for w in waiters.iter_mut() {
            w.as_mut().enable();
        }
        signals.jobs_available("q", 1000);
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter is woken");
        }
    }

    #[tokio::test]
    async fn a_few_jobs_wake_that_many_waiters() {
        let signals = Arc::new(Signals::default());
        let watch = signals.watch("q");
        let notify = watch.notify();
        let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(notify.notified())).collect();
        for w in waiters.iter_mut() {
            w.as_mut().enable();
        }
        signals.jobs_available("q", 2);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut woken = 0;
        for w in waiters.iter_mut() {
            if w.as_mut().poll(&mut cx).is_ready() {
                woken += 1;
            }
        }
        assert_eq!(woken, 2);
    }

    #[test]
    fn held_leases_look_again_at_the_next_token_or_on_a_freed_slot() {
        let signals = Arc::new(Signals::default());
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let queues = vec!["q".to_string()];
        signals.hold("q", Some(Held::Concurrency));
        assert_eq!(signals.recheck_in(&queues, now), None, "nobody watches q");
        let watch = signals.watch("q");
        assert_eq!(signals.recheck_in(&queues, now), None);
        signals.hold(
            "q",
            Some(Held::Rate(now + jiff::SignedDuration::from_millis(40))),
        );
        let wait = signals.recheck_in(&queues, now).unwrap();
        assert!(
            wait >= Duration::from_millis(40) && wait <= Duration::from_millis(80),
            "{wait:?}"
        );
        signals.hold("q", Some(Held::Concurrency));
        assert_eq!(signals.recheck_in(&queues, now), Some(CONCURRENCY_RECHECK));
        let mut woken = Box::pin(watch.notify().notified());
        woken.as_mut().enable();
        signals.slot_freed("q", 1);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        signals.hold("q", None);
        let mut not_woken = Box::pin(watch.notify().notified());
        not_woken.as_mut().enable();
        signals.slot_freed("q", 1);
        assert!(
            not_woken.as_mut().poll(&mut cx).is_pending(),
            "nothing held: an ack wakes nobody"
        );
        assert_eq!(signals.recheck_in(&queues, now), None);
    }

    #[test]
    fn notifiers_live_only_while_watched() {
        let signals = Arc::new(Signals::default());
        let a = signals.watch("q");
        let b = signals.watch("q");
        let other = signals.watch("r");
        assert_eq!((signals.watchers("q"), signals.watched_queues()), (2, 2));
        drop(a);
        assert_eq!(signals.watchers("q"), 1);
        drop(b);
        drop(other);
        assert_eq!(signals.watched_queues(), 0);
        // Announcing to a queue nobody watches keeps nothing.
        signals.jobs_available("q", 3);
        signals.queue_changed("q");
        assert_eq!(signals.watched_queues(), 0);
    }

    fn at(us: i64) -> Timestamp {
        Timestamp::from_microsecond(us).unwrap()
    }

    #[test]
    fn a_look_up_never_overwrites_an_earlier_time_announced_while_it_ran() {
        let s = Signals::default();
        s.mark_due();
        // A commit elsewhere announces 10 while the look-up (which missed it) runs.
        s.due_at(at(10));
        s.set_next_due_after(Some(at(50)));
        assert_eq!(s.next_due(), Some(at(10)));
        // The next look-up, with nothing announced meanwhile, is taken as found.
        s.mark_due();
        s.set_next_due_after(Some(at(50)));
        assert_eq!(s.next_due(), Some(at(50)));
        s.mark_due();
        s.set_next_due_after(None);
        assert_eq!(s.next_due(), None);
    }
}
