//! How long finished jobs are kept: completed and cancelled jobs for `completed` after
//! they finished, dead jobs for `dead` (longer by default: they wait for someone to look
//! at them). Schedule runs are jobs like any other. Events are kept for `events` after
//! they happened. Backends delete what [`Retention::cutoffs`] says in small batches.

use crate::Duration;
use jiff::Timestamp;

/// Retention of finished jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed and cancelled jobs are kept this long after they finished.
    pub completed: Duration,
    /// Dead jobs are kept this long after they died.
    pub dead: Duration,
    /// Events are kept this long after they happened.
    pub events: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            completed: Duration::from_secs(24 * 3600),
            dead: Duration::from_secs(7 * 24 * 3600),
            events: Duration::from_secs(24 * 3600),
        }
    }
}

/// Finished jobs that may be deleted at some instant: those that finished before these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Completed and cancelled jobs finished before this go.
    pub completed_before: Timestamp,
    /// Dead jobs that died before this go.
    pub dead_before: Timestamp,
    /// Events that happened before this go.
    pub events_before: Timestamp,
}

impl Retention {
    /// What may be deleted at `now`.
    pub fn cutoffs(&self, now: Timestamp) -> Cutoffs {
        let before = |d: Duration| now.saturating_sub(d.as_signed()).unwrap_or(now);
        Cutoffs {
            completed_before: before(self.completed),
            dead_before: before(self.dead),
            events_before: before(self.events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_now_minus_each_retention() {
        let now: Timestamp = "2030-01-08T00:00:00Z".parse().unwrap();
        let c = Retention::default().cutoffs(now);
        assert_eq!(c.completed_before, "2030-01-07T00:00:00Z".parse().unwrap());
        assert_eq!(c.dead_before, "2030-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(c.events_before, "2030-01-07T00:00:00Z".parse().unwrap());
    }
}
