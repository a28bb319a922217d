//! What follows from jobs changing, the same in every backend: the per-(queue, state)
//! count deltas a commit writes, the events it writes (what the state machine said
//! happened, in order), how many jobs became available per queue (to wake waiting
//! leases), and the earliest time something became due (to wake the timer). Backends
//! record each job change here and announce it only after their commit.

use crate::Signals;
use crate::activity::Activity;
use kairos_core::event::{EventType, NewEvent};
use kairos_core::machine::Happened;
use kairos_core::{Job, JobState, Timestamp};
use std::collections::HashMap;

/// The consequences of a set of job changes.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Count deltas per (queue, state).
    pub counts: HashMap<(String, JobState), i64>,
    /// Jobs that became available, per queue.
    pub available: HashMap<String, u64>,
    /// Running jobs that ended (or were released), per queue: room under a concurrency limit.
    pub freed: HashMap<String, u64>,
    /// The earliest run_at or lease expiry among the changed jobs.
    pub due: Option<Timestamp>,
    /// What the changes were, for the store's observer.
    pub activity: Activity,
    /// How long the commit took, and how many operations it carried.
    pub commit: Option<(f64, usize)>,
    /// Events to write in the commit, in the order they happened.
    pub events: Vec<NewEvent>,
}

impl Changes {
    /// A job of `queue` went from `from` (`None`: new) to `to` (`None`: deleted).
    pub(crate) fn account(&mut self, queue: &str, from: Option<JobState>, to: Option<&Job>) {
        if let Some(j) = to {
            self.note_due(j);
        }
        let to_state = to.map(|j| j.state);
        if from == to_state {
            return;
        }
        if let Some(j) = to {
            self.activity.record(queue, from, j);
        }
        if let Some(f) = from {
            *self.counts.entry((queue.to_string(), f)).or_default() -= 1;
            if f == JobState::Running {
                // Looked up before inserting: most changes of a commit share a queue.
                match self.freed.get_mut(queue) {
                    Some(n) => *n += 1,
                    None => {
                        self.freed.insert(queue.to_string(), 1);
                    }
                }
            }
        }
        if let Some(j) = to {
            *self.counts.entry((queue.to_string(), j.state)).or_default() += 1;
            if j.state == JobState::Available {
                *self.available.entry(queue.to_string()).or_default() += 1;
            }
        }
    }

    /// The events `happened` to `job` (as it is after the change) at `at`.
    pub(crate) fn happened(&mut self, happened: Happened, job: &Job, at: Timestamp) {
        for kind in happened.events() {
            self.events.push(NewEvent::job(kind, job, at));
        }
    }

    /// `job` was created at `at`.
    pub(crate) fn enqueued(&mut self, job: &Job, at: Timestamp) {
        self.events
            .push(NewEvent::job(EventType::JobEnqueued, job, at));
    }

    /// Any other event.
    pub(crate) fn event(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// Something (a schedule, a job) is due at `at`.
    pub(crate) fn due_at(&mut self, at: Timestamp) {
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// A waiting job is due at its run_at, a running one at its lease's expiry.
    fn note_due(&mut self, j: &Job) {
        let at = match j.state {
            s if s.is_waiting() => j.run_at,
            JobState::Running => match &j.lease {
                Some(l) => l.expires_at,
                None => return,
            },
            _ => return,
        };
        self.due_at(at);
    }

    /// Adds `other`'s changes to these.
    pub(crate) fn merge(&mut self, other: Changes) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for (k, v) in other.available {
            *self.available.entry(k).or_default() += v;
        }
        for (k, v) in other.freed {
            *self.freed.entry(k).or_default() += v;
        }
        if let Some(d) = other.due {
            self.due_at(d);
        }
        self.activity.merge(other.activity);
        self.events.extend(other.events);
    }

    /// The non-zero count deltas, as three columns (queue, state code, delta).
    pub(crate) fn count_columns(&self) -> (Vec<String>, Vec<i16>, Vec<i64>) {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for ((queue, state), n) in &self.counts {
            if *n != 0 {
                columns.0.push(queue.clone());
                columns.1.push(state.code() as i16);
                columns.2.push(*n);
            }
        }
        columns
    }

    /// Post-commit: wakes the timer and the leases waiting on the queues, and tells the
    /// observer what happened.
    pub(crate) fn announce(self, signals: &Signals) {
        if let Some(observer) = signals.observer() {
            if let Some((seconds, operations)) = self.commit {
                observer.commit_took(seconds, operations);
            }
            if !self.activity.is_empty() {
                observer.committed(&self.activity);
            }
        }
        if let Some(d) = self.due {
            signals.due_at(d);
        }
        for (queue, n) in self.available {
            signals.jobs_available(&queue, n);
        }
        for (queue, n) in self.freed {
            signals.slot_freed(&queue, n);
        }
    }
}
