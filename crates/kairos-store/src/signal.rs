//! Signals a store raises after each commit, so the engine can wake waiting workers and
//! its timer at once instead of polling. They carry hints only; the store holds the truth,
//! so a missed or extra signal costs a round trip, never a job.

use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Post-commit announcements.
#[derive(Debug)]
pub struct Signals {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    due: Notify,
    /// Lower bound (µs since epoch) of the next run_at or lease expiry; `i64::MAX`: none.
    next_due: AtomicI64,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            queues: Mutex::new(HashMap::new()),
            due: Notify::new(),
            next_due: AtomicI64::new(i64::MAX),
        }
    }
}

impl Signals {
    /// The notifier of one queue: woken once per job that became available there
    /// (and all at once when the queue is resumed).
    pub fn queue(&self, name: &str) -> Arc<Notify> {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(name) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        map.insert(name.to_string(), n.clone());
        n
    }

    /// `count` jobs became available in `queue`.
    pub fn jobs_available(&self, queue: &str, count: u64) {
        let notify = {
            let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(queue) {
                Some(n) => n.clone(),
                None => return, // nobody has ever waited on this queue
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

    /// Every waiter of `queue` should look again (e.g. it was resumed).
    pub fn queue_changed(&self, queue: &str) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }

    /// Something is due at `at` (or later); wakes the timer if that is earlier than it knew.
    pub fn due_at(&self, at: Timestamp) {
        let us = at.as_microsecond();
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

    /// The earliest time something may be due, if anything is.
    pub fn next_due(&self) -> Option<Timestamp> {
        match self.next_due.load(Ordering::Acquire) {
            i64::MAX => None,
            us => Timestamp::from_microsecond(us).ok(),
        }
    }

    /// Notified when the next due time moved earlier.
    pub fn due_changed(&self) -> &Notify {
        &self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_big_batch_wakes_every_waiter() {
        let signals = Signals::default();
        let notify = signals.queue("q");
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
        let signals = Signals::default();
        let notify = signals.queue("q");
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
}
