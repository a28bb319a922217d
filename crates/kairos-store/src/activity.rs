//! What commits did, for whoever watches (the server's metrics): per queue, the jobs
//! enqueued, leased, completed, failed (each failed attempt, lease expiries included),
//! dead and expired, with the wait (run_at → lease) and run (lease → report) times of
//! each; the lag of each schedule run (scheduled_for → created); and each commit's
//! duration and size. Gathered where every backend records its job changes
//! ([`crate::changes`]), so no backend has its own rules for it, and handed to the
//! [`Observer`] set on the store's [`crate::Signals`] after the commit.

use kairos_core::{Job, JobState, Reported, Timestamp};
use std::collections::HashMap;

/// What one queue's jobs did in a commit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueueActivity {
    /// Jobs created.
    pub enqueued: u64,
    /// Jobs leased.
    pub leased: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts (retried or dead; lease expiries included).
    pub failed: u64,
    /// Jobs that became dead.
    pub dead: u64,
    /// Leases that ran out.
    pub expired: u64,
    /// Seconds from run_at to lease, one per job leased.
    pub wait_seconds: Vec<f64>,
    /// Seconds from lease to report (or expiry), one per attempt ended.
    pub run_seconds: Vec<f64>,
}

/// What a commit did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Activity {
    /// By queue.
    pub queues: HashMap<String, QueueActivity>,
    /// Seconds from a schedule's fire time to its run's creation, one per run.
    pub schedule_lag_seconds: Vec<f64>,
}

/// Watches commits (see the module's documentation). Called on the committing thread:
/// keep it cheap.
pub trait Observer: Send + Sync + std::fmt::Debug + 'static {
    /// After a commit that changed jobs.
    fn committed(&self, activity: &Activity);

    /// A commit took `seconds` and carried `operations` (the group commit's batch).
    fn commit_took(&self, seconds: f64, operations: usize) {
        let _ = (seconds, operations);
    }
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_microsecond() - from.as_microsecond()).max(0) as f64 / 1e6
}

impl Activity {
    /// A job of `queue` went from `from` (`None`: new) to `to`; deletions do nothing.
    pub(crate) fn record(&mut self, queue: &str, from: Option<JobState>, to: &Job) {
        let q = match self.queues.get_mut(queue) {
            Some(q) => q,
            None => self.queues.entry(queue.to_string()).or_default(),
        };
        match from {
            None => {
                q.enqueued += 1;
                if let (Some(_), Some(slot)) = (to.schedule_id, to.scheduled_for) {
                    self.schedule_lag_seconds.push(seconds(slot, to.created_at));
                }
            }
            Some(JobState::Running) => {
                let ended = to.finished_at.or_else(|| to.errors.last().map(|e| e.at));
                if let (Some(start), Some(end)) = (to.started_at, ended) {
                    q.run_seconds.push(seconds(start, end));
                }
                match to.state {
                    JobState::Completed | JobState::Cancelled => {
                        q.completed += u64::from(to.state == JobState::Completed);
                    }
                    _ => {
                        q.failed += 1;
                        let expired = to
                            .lease
                            .as_ref()
                            .is_some_and(|l| l.reported == Some(Reported::Expired));
                        q.expired += u64::from(expired);
                    }
                }
            }
            Some(_) if to.state == JobState::Running => {
                q.leased += 1;
                if let Some(start) = to.started_at {
                    q.wait_seconds.push(seconds(to.run_at, start));
                }
            }
            Some(_) => {}
        }
        if to.state == JobState::Dead {
            q.dead += 1;
        }
    }

    /// Adds `other` to this.
    pub(crate) fn merge(&mut self, other: Activity) {
        for (name, o) in other.queues {
            let q = self.queues.entry(name).or_default();
            q.enqueued += o.enqueued;
            q.leased += o.leased;
            q.completed += o.completed;
            q.failed += o.failed;
            q.dead += o.dead;
            q.expired += o.expired;
            q.wait_seconds.extend(o.wait_seconds);
            q.run_seconds.extend(o.run_seconds);
        }
        self.schedule_lag_seconds.extend(other.schedule_lag_seconds);
    }

    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.schedule_lag_seconds.is_empty()
    }
}
