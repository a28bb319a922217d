//! Why a job is not running: what the server knows of the job, its queue and the workers,
//! read as the reasons it waits (the dashboard's **Why isn't it running?**).
//!
//! The rules are the leasing rules themselves, stated as answers: a job is leased once
//! it is available (`run_at` passed), from a queue that is not paused, below the queue's
//! concurrency and rate limits, by a worker leasing from its queue.

use crate::job::{Job, JobState};
use crate::queue::Queue;
use crate::rate::Rate;
use jiff::Timestamp;

/// One reason a job is not running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It is scheduled for later.
    NotYetDue {
        /// When it becomes available.
        run_at: Timestamp,
    },
    /// Its last attempt failed; it waits for its backoff.
    Backoff {
        /// The attempt that failed.
        attempt: u32,
        /// When it becomes available again.
        run_at: Timestamp,
    },
    /// Leasing from its queue is paused.
    QueuePaused,
    /// Its queue runs as many jobs as its concurrency limit allows.
    ConcurrencyReached {
        /// The limit.
        limit: u32,
    },
    /// Its queue has a rate limit, which may hold its leases to the next window.
    RateLimit {
        /// The limit.
        rate: Rate,
    },
    /// No worker leasing from its queue has been heard from lately.
    NoWorker,
    /// Jobs ahead of it in its queue are leased first (higher priority, or due earlier).
    Queued {
        /// Jobs of its queue available now, itself included.
        available: u64,
    },
    /// It is running: a worker holds its lease.
    Leased {
        /// The worker.
        worker: String,
        /// When the lease runs out unless the worker heartbeats.
        until: Timestamp,
    },
    /// It is finished and will not run unless someone retries it.
    Finished {
        /// Completed, dead or cancelled.
        state: JobState,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NotYetDue { run_at } => {
                write!(
                    f,
                    "its run_at is in the future: it becomes available at {run_at}"
                )
            }
            Reason::Backoff { attempt, run_at } => write!(
                f,
                "attempt {attempt} failed; it is waiting for its backoff, until {run_at}"
            ),
            Reason::QueuePaused => write!(f, "its queue is paused: nothing is leased from it"),
            Reason::ConcurrencyReached { limit } => write!(
                f,
                "its queue's concurrency limit is reached: {limit} jobs are running"
            ),
            Reason::RateLimit { rate } => write!(
                f,
                "its queue's rate limit is {rate}: leases past it wait for the next window"
            ),
            Reason::NoWorker => write!(f, "no worker leasing from its queue is online"),
            Reason::Queued { available } => write!(
                f,
                "it is available, with {available} available jobs in its queue: the next lease takes the highest priority, earliest due"
            ),
            Reason::Leased { worker, until } => {
                write!(f, "its lease is held by worker {worker} until {until}")
            }
            Reason::Finished { state } => {
                write!(f, "it is {}: it runs again only if retried", state.as_str())
            }
        }
    }
}

/// Why `job` (of `queue`, with `workers_online` online workers leasing from that queue)
/// is not running at `now`, most decisive first. A running job's answer is its lease.
pub fn why_not_running(
    job: &Job,
    queue: &Queue,
    workers_online: usize,
    now: Timestamp,
) -> Vec<Reason> {
    let state = job.effective_state(now);
    let mut reasons = Vec::new();
    match state {
        JobState::Running => {
            if let Some(lease) = &job.lease {
                reasons.push(Reason::Leased {
                    worker: lease.worker.clone(),
                    until: lease.expires_at,
                });
            }
            return reasons;
        }
        s if s.is_finished() => return vec![Reason::Finished { state: s }],
        JobState::Scheduled => reasons.push(Reason::NotYetDue { run_at: job.run_at }),
        JobState::Retryable => reasons.push(Reason::Backoff {
            attempt: job.attempt,
            run_at: job.run_at,
        }),
        _ => {}
    }
    if queue.paused {
        reasons.push(Reason::QueuePaused);
    }
    if let Some(limit) = queue.limits.concurrency
        && queue.counts.running >= u64::from(limit)
    {
        reasons.push(Reason::ConcurrencyReached { limit });
    }
    if let Some(rate) = queue.limits.rate {
        reasons.push(Reason::RateLimit { rate });
    }
    if workers_online == 0 {
        reasons.push(Reason::NoWorker);
    }
    if state == JobState::Available && reasons.is_empty() {
        reasons.push(Reason::Queued {
            available: queue.counts.available.max(1),
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Lease;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn job(run_in: i64) -> Job {
        let spec = crate::job::test_spec(3, Some(t(run_in)));
        Job::new(spec, uuid::Uuid::now_v7(), t(0))
    }

    #[test]
    fn a_future_job_in_a_paused_queue_without_workers_has_three_reasons() {
        let mut q = Queue::new("q");
        q.paused = true;
        let reasons = why_not_running(&job(60), &q, 0, t(0));
        assert_eq!(
            reasons,
            vec![
                Reason::NotYetDue { run_at: t(60) },
                Reason::QueuePaused,
                Reason::NoWorker
            ]
        );
    }

    #[test]
    fn a_due_job_with_nothing_in_its_way_is_next_in_line() {
        let mut q = Queue::new("q");
        q.counts.available = 4;
        let reasons = why_not_running(&job(0), &q, 2, t(5));
        assert_eq!(reasons, vec![Reason::Queued { available: 4 }]);
    }

    #[test]
    fn limits_are_named_when_they_hold() {
        let mut q = Queue::new("q");
        q.limits.concurrency = Some(2);
        q.counts.running = 2;
        q.limits.rate = Some("5/s".parse().unwrap());
        let reasons = why_not_running(&job(0), &q, 1, t(0));
        assert_eq!(
            reasons,
            vec![
                Reason::ConcurrencyReached { limit: 2 },
                Reason::RateLimit {
                    rate: "5/s".parse().unwrap()
                }
            ]
        );
        q.counts.running = 1;
        assert!(
            !why_not_running(&job(0), &q, 1, t(0))
                .contains(&Reason::ConcurrencyReached { limit: 2 })
        );
    }

    #[test]
    fn a_running_job_names_its_lease_and_a_finished_one_its_state() {
        let mut j = job(0);
        j.state = JobState::Running;
        j.lease = Some(Lease {
            token: uuid::Uuid::now_v7(),
            worker: "w1".into(),
            expires_at: t(30),
            reported: None,
        });
        let q = Queue::new("q");
        assert_eq!(
            why_not_running(&j, &q, 1, t(1)),
            vec![Reason::Leased {
                worker: "w1".into(),
                until: t(30)
            }]
        );
        j.state = JobState::Dead;
        j.lease = None;
        assert_eq!(
            why_not_running(&j, &q, 1, t(1)),
            vec![Reason::Finished {
                state: JobState::Dead
            }]
        );
    }
}
