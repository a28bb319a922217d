//! Queues as the API shows them: a name, whether leasing is paused, the limits an
//! operator set, and how many jobs are in each state (kept by the store, never counted on
//! demand). The rules of those limits live here, so every backend applies the same ones:
//! what a full queue refuses ([`QueueLimits::admit`]) and how many jobs a lease may take
//! ([`QueueLimits::lease_room`]).

use crate::job::JobState;
use crate::rate::{Bucket, Rate};
use crate::validate::{Checker, Invalid};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Largest `max_depth` a queue takes.
pub const MAX_DEPTH_LIMIT: u64 = 1_000_000_000;
/// Largest `concurrency` a queue takes.
pub const MAX_CONCURRENCY: u32 = 1_000_000;
/// Largest lease rate a queue takes, per second.
pub const MAX_RATE_PER_SECOND: u32 = 1_000_000;

/// Jobs per state in one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateCounts {
    /// Waiting for run_at.
    pub scheduled: u64,
    /// Ready to lease.
    pub available: u64,
    /// Leased.
    pub running: u64,
    /// Failed, waiting to retry.
    pub retryable: u64,
    /// Done.
    pub completed: u64,
    /// Given up.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl StateCounts {
    /// Jobs not finished yet: waiting, available or running. What `max_depth` bounds.
    pub fn unfinished(&self) -> u64 {
        self.scheduled + self.available + self.running + self.retryable
    }

    /// How many jobs are in `state`.
    pub fn get(&self, state: JobState) -> u64 {
        let mut copy = *self;
        *copy.get_mut(state)
    }

    /// The counter for `state`.
    pub fn get_mut(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Retryable => &mut self.retryable,
            JobState::Completed => &mut self.completed,
            JobState::Dead => &mut self.dead,
            JobState::Cancelled => &mut self.cancelled,
        }
    }
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Queue {
    /// Its name.
    pub name: String,
    /// Leasing from it is paused (enqueue still works).
    pub paused: bool,
    /// The limits set on it.
    #[serde(flatten)]
    pub limits: QueueLimits,
    /// Jobs per state.
    pub counts: StateCounts,
}

impl Queue {
    /// A queue nothing was said about yet.
    pub fn new(name: &str) -> Queue {
        Queue {
            name: name.to_string(),
            paused: false,
            limits: QueueLimits::default(),
            counts: StateCounts::default(),
        }
    }

    /// The event a change made, given whether the queue was paused before it:
    /// `queue.paused` or `queue.resumed` when the flag flipped, else none (a repeated
    /// pause, or a change of limits only).
    pub fn pause_event(&self, was_paused: bool) -> Option<crate::event::EventType> {
        use crate::event::EventType;
        match (was_paused, self.paused) {
            (false, true) => Some(EventType::QueuePaused),
            (true, false) => Some(EventType::QueueResumed),
            _ => None,
        }
    }
}

/// The limits an operator set on a queue (`PATCH /v1/queues/{name}`); `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueLimits {
    /// Most unfinished jobs the queue holds: past it, new jobs are refused (backpressure).
    pub max_depth: Option<u64>,
    /// Most running jobs of the queue at once, across all workers and nodes.
    pub concurrency: Option<u32>,
    /// Most jobs leased from the queue per unit of time, with a burst of one second's worth.
    pub rate: Option<Rate>,
}

/// A full queue's refusal of new jobs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue {queue:?} holds {unfinished} unfinished jobs, its max_depth is {max_depth}")]
pub struct QueueFull {
    /// The queue.
    pub queue: String,
    /// Its limit.
    pub max_depth: u64,
    /// What it holds.
    pub unfinished: u64,
}

/// Why a lease took fewer jobs from a queue than it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its `concurrency` jobs are running: room comes back when one of them ends.
    Concurrency,
    /// Its rate is spent until the next token, at this time.
    Rate(Timestamp),
}

impl QueueLimits {
    /// Whether leasing from the queue is limited (and so must be counted).
    pub fn limits_leasing(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }

    /// Whether a queue holding `unfinished` jobs takes `adding` more. Jobs a schedule
    /// fires and jobs retried are not new, and are never refused.
    pub fn admit(&self, queue: &str, unfinished: u64, adding: u64) -> Result<(), QueueFull> {
        match self.max_depth {
            Some(max) if unfinished.saturating_add(adding) > max => Err(QueueFull {
                queue: queue.to_string(),
                max_depth: max,
                unfinished,
            }),
            _ => Ok(()),
        }
    }

    /// How many jobs a lease may take now from a queue with `running` jobs running and
    /// this rate `bucket` (refilled to now; ignored without a rate); `Err` says why none.
    pub fn lease_room(&self, running: u64, bucket: Option<&Bucket>) -> Result<u32, Held> {
        let mut room = u32::MAX;
        if let Some(c) = self.concurrency {
            let left = u64::from(c).saturating_sub(running);
            if left == 0 {
                return Err(Held::Concurrency);
            }
            room = room.min(left.min(u64::from(u32::MAX)) as u32);
        }
        if let (Some(rate), Some(b)) = (self.rate, bucket) {
            let whole = b.whole();
            if whole == 0 {
                return Err(Held::Rate(b.next_token_at(rate)));
            }
            room = room.min(whole);
        }
        Ok(room)
    }
}

/// A validated change to a queue: each field `None` stays as it is; a limit set to
/// `Some(None)` is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueChange {
    /// Pause or resume leasing.
    pub paused: Option<bool>,
    /// New `max_depth`.
    pub max_depth: Option<Option<u64>>,
    /// New `concurrency`.
    pub concurrency: Option<Option<u32>>,
    /// New `rate`.
    pub rate: Option<Option<Rate>>,
}

impl QueueChange {
    /// Pauses (or resumes) leasing, nothing else.
    pub fn pause(paused: bool) -> QueueChange {
        QueueChange {
            paused: Some(paused),
            ..QueueChange::default()
        }
    }

    /// Checks each value against its bounds (`max_depth` and `concurrency` at least 1,
    /// a rate at most [`MAX_RATE_PER_SECOND`] a second). An empty change is valid: it
    /// changes nothing (a merge patch of `{}`).
    pub fn checked(self) -> Result<QueueChange, Invalid> {
        let mut c = Checker::new("");
        if let Some(Some(d)) = self.max_depth
            && !(1..=MAX_DEPTH_LIMIT).contains(&d)
        {
            c.invalid(
                "max_depth",
                format!("must be from 1 to {MAX_DEPTH_LIMIT}, or null"),
            );
        }
        if let Some(Some(n)) = self.concurrency
            && !(1..=MAX_CONCURRENCY).contains(&n)
        {
            c.invalid(
                "concurrency",
                format!(
                    "must be from 1 to {MAX_CONCURRENCY}, or null (pause the queue to stop leasing)"
                ),
            );
        }
        if let Some(Some(r)) = self.rate
            && r.per_second() > f64::from(MAX_RATE_PER_SECOND)
        {
            c.invalid("rate", format!("at most {MAX_RATE_PER_SECOND}/s, or null"));
        }
        c.finish()?;
        Ok(self)
    }

    /// Whether it changes the queue's rate (its bucket starts again, full).
    pub fn changes_rate(&self) -> bool {
        self.rate.is_some()
    }

    /// `queue` with this change made.
    pub fn apply(&self, queue: &mut Queue) {
        if let Some(p) = self.paused {
            queue.paused = p;
        }
        if let Some(d) = self.max_depth {
            queue.limits.max_depth = d;
        }
        if let Some(c) = self.concurrency {
            queue.limits.concurrency = c;
        }
        if let Some(r) = self.rate {
            queue.limits.rate = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_what_would_pass_its_depth() {
        let open = QueueLimits::default();
        assert!(open.admit("q", u64::MAX, 1).is_ok());
        let l = QueueLimits {
            max_depth: Some(3),
            ..QueueLimits::default()
        };
        assert!(l.admit("q", 2, 1).is_ok());
        let full = l.admit("q", 3, 1).unwrap_err();
        assert_eq!((full.max_depth, full.unfinished), (3, 3));
        assert!(l.admit("q", 1, 3).is_err(), "a batch that would pass it");
    }

    #[test]
    fn lease_room_is_the_least_of_concurrency_and_tokens() {
        let t0: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let rate: Rate = "5/s".parse().unwrap();
        let l = QueueLimits {
            concurrency: Some(3),
            rate: Some(rate),
            ..QueueLimits::default()
        };
        let full = Bucket::refilled(None, rate, t0);
        assert_eq!(l.lease_room(0, Some(&full)), Ok(3));
        assert_eq!(l.lease_room(2, Some(&full)), Ok(1));
        assert_eq!(l.lease_room(3, Some(&full)), Err(Held::Concurrency));
        let mut spent = full;
        spent.spend(5);
        assert_eq!(
            l.lease_room(0, Some(&spent)),
            Err(Held::Rate(t0 + jiff::SignedDuration::from_millis(200)))
        );
        assert_eq!(QueueLimits::default().lease_room(9, None), Ok(u32::MAX));
    }

    #[test]
    fn changes_are_checked_and_applied() {
        assert!(
            QueueChange::default().checked().is_ok(),
            "an empty change changes nothing"
        );
        for bad in [
            QueueChange {
                max_depth: Some(Some(0)),
                ..Default::default()
            },
            QueueChange {
                concurrency: Some(Some(0)),
                ..Default::default()
            },
            QueueChange {
                rate: Some(Some("2000000/s".parse().unwrap())),
                ..Default::default()
            },
        ] {
            assert!(bad.checked().is_err());
        }
        let mut q = Queue::new("q");
        let set = QueueChange {
            max_depth: Some(Some(10)),
            concurrency: Some(Some(2)),
            rate: Some(Some("10/m".parse().unwrap())),
            ..Default::default()
        }
        .checked()
        .unwrap();
        set.apply(&mut q);
        assert_eq!(q.limits.concurrency, Some(2));
        QueueChange {
            concurrency: Some(None),
            ..Default::default()
        }
        .apply(&mut q);
        assert_eq!((q.limits.concurrency, q.limits.max_depth), (None, Some(10)));
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["rate"], "10/m");
        assert_eq!(json["concurrency"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Queue>(json).unwrap(), q);
    }
}
