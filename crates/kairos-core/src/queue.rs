//! Queues as the API shows them: a name, whether leasing is paused, and how many jobs
//! are in each state (kept by the store, never counted on demand).

use crate::job::JobState;
use serde::{Deserialize, Serialize};

/// Jobs per state in one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Queue {
    /// Its name.
    pub name: String,
    /// Leasing from it is paused (enqueue still works).
    pub paused: bool,
    /// Jobs per state.
    pub counts: StateCounts,
}
