//! The job state machine. Every legal transition of a job is a method here; backends load
//! a job, call one of these, and persist the result. Anything not allowed returns a
//! [`TransitionError`] and leaves the job untouched.
//!
//! ```text
//!   scheduled ──(run_at passes)──▶ available ──lease──▶ running ──ack completed──▶ completed
//!       ▲                              ▲                  │  ack failed, attempts left / lease expired
//!       │                              └──(run_at)── retryable ◀┘
//!       │                                                  │  no attempts left / retry=false ──▶ dead
//!  cancel: scheduled/available/retryable ──▶ cancelled; running ──▶ cancel_requested, then cancelled
//!  retry:  completed/dead/cancelled ──▶ available (attempt 0); scheduled/retryable ──▶ available now
//! ```

use crate::duration::Duration;
use crate::event::EventType;
use crate::job::{AttemptError, Job, JobState, Lease, Reported};
use crate::validate::MAX_ERRORS_KEPT;
use jiff::Timestamp;
use serde_json::value::RawValue;
use uuid::Uuid;

/// What a worker reports for a lease.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The work is done.
    Completed {
        /// Optional result to keep on the job.
        result: Option<Box<RawValue>>,
    },
    /// The work failed.
    Failed {
        /// What went wrong.
        error: String,
        /// `false` sends the job straight to `dead`.
        retry: bool,
        /// Overrides the backoff delay for this retry.
        retry_in: Option<Duration>,
    },
}

impl Outcome {
    fn reported(&self) -> Reported {
        match self {
            Outcome::Completed { .. } => Reported::Completed,
            Outcome::Failed { .. } => Reported::Failed,
        }
    }
}

/// The events one transition makes, in order: none, one, or two (the last failed
/// attempt is `job.failed` then `job.dead`). Backends write them in the transaction that
/// saves the job, so the event log says exactly what the state machine did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Happened([Option<EventType>; 2]);

impl Happened {
    /// Nothing worth an event (a heartbeat, a repeated report, a cancel asked of a
    /// running job: its end is the event).
    pub const NOTHING: Happened = Happened([None, None]);

    fn one(t: EventType) -> Happened {
        Happened([Some(t), None])
    }

    /// What a report (or a lease expiry) that moved a job to `state` made.
    fn report(state: JobState) -> Happened {
        match state {
            JobState::Completed => Happened::one(EventType::JobCompleted),
            JobState::Cancelled => Happened::one(EventType::JobCancelled),
            JobState::Dead => Happened([Some(EventType::JobFailed), Some(EventType::JobDead)]),
            _ => Happened::one(EventType::JobFailed),
        }
    }

    /// The events, in order.
    pub fn events(self) -> impl Iterator<Item = EventType> {
        self.0.into_iter().flatten()
    }
}

/// What an accepted ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckEffect {
    /// The job moved to this state.
    Applied(JobState),
    /// The same outcome was already reported for this lease: nothing changed.
    Repeated(JobState),
}

impl AckEffect {
    /// The job's state after the ack.
    pub fn state(self) -> JobState {
        match self {
            AckEffect::Applied(s) | AckEffect::Repeated(s) => s,
        }
    }

    /// The events the ack made: none for a repeat.
    pub fn happened(self) -> Happened {
        match self {
            AckEffect::Applied(s) => Happened::report(s),
            AckEffect::Repeated(_) => Happened::NOTHING,
        }
    }
}

/// A transition the job's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The token is not the job's current lease.
    #[error("the lease token is not the job's current lease")]
    StaleLease,
    /// The lease ran out (by the store's clock) before this report.
    #[error("the lease expired before this report")]
    LeaseExpired,
    /// A different outcome was already reported for this lease.
    #[error("this lease was already reported as {0}")]
    AlreadyReported(Reported),
    /// The job is finished (completed, dead or cancelled).
    #[error("the job is {0}")]
    Finished(JobState),
    /// The job is running.
    #[error("the job is running")]
    Running,
    /// The job cannot be leased from this state.
    #[error("the job is {0}, not available")]
    NotAvailable(JobState),
}

fn later(now: Timestamp, by: Duration) -> Timestamp {
    now.saturating_add(by.as_signed()).unwrap_or(now)
}

/// What an operator may do to a job now ([`Job::operator_actions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorActions {
    /// Run it again now.
    pub retry: bool,
    /// Cancel it (at its next report when it is running).
    pub cancel: bool,
    /// Delete it.
    pub delete: bool,
}

impl Job {
    /// The state the job behaves as at `now`: a waiting job whose time has come is available.
    pub fn effective_state(&self, now: Timestamp) -> JobState {
        if self.state.is_waiting() && self.run_at <= now {
            JobState::Available
        } else {
            self.state
        }
    }

    /// Makes a waiting job whose time has come `available`. Returns whether it changed.
    pub fn promote(&mut self, now: Timestamp) -> bool {
        let next = self.effective_state(now);
        let changed = next != self.state;
        self.state = next;
        changed
    }

    /// Hands the job to `worker` under `token` for `lease_for` (default: the job's timeout).
    /// Each lease is one attempt.
    pub fn lease(
        &mut self,
        worker: &str,
        token: Uuid,
        lease_for: Option<Duration>,
        now: Timestamp,
    ) -> Result<Happened, TransitionError> {
        let state = self.effective_state(now);
        if state != JobState::Available || self.attempt >= self.max_attempts {
            return Err(TransitionError::NotAvailable(state));
        }
        self.state = JobState::Running;
        self.attempt += 1;
        self.started_at = Some(now);
        self.lease = Some(Lease {
            token,
            worker: worker.to_string(),
            expires_at: later(now, lease_for.unwrap_or(self.timeout)),
            reported: None,
        });
        Ok(Happened::one(EventType::JobStarted))
    }

    /// Checks that `token` is the live lease, or recognises a repeat of a finished report.
    fn live_lease(&self, token: Uuid, now: Timestamp) -> Result<Option<Reported>, TransitionError> {
        let lease = match &self.lease {
            Some(l) if l.token == token => l,
            _ => return Err(TransitionError::StaleLease),
        };
        if let Some(r) = lease.reported {
            return Ok(Some(r));
        }
        if self.state != JobState::Running {
            return Err(TransitionError::StaleLease);
        }
        if now >= lease.expires_at {
            return Err(TransitionError::LeaseExpired);
        }
        Ok(None)
    }

    /// A worker's report for the lease `token`. `sample` is a uniform random number in
    /// `[0, 1)` for backoff jitter.
    pub fn ack(
        &mut self,
        token: Uuid,
        outcome: Outcome,
        now: Timestamp,
        sample: f64,
    ) -> Result<AckEffect, TransitionError> {
        match self.live_lease(token, now)? {
            Some(Reported::Expired) => return Err(TransitionError::LeaseExpired),
            Some(r) if r == outcome.reported() => return Ok(AckEffect::Repeated(self.state)),
            Some(r) => return Err(TransitionError::AlreadyReported(r)),
            None => {}
        }
        let reported = outcome.reported();
        match outcome {
            Outcome::Completed { result } => {
                self.result = result;
                let to = if self.cancel_requested {
                    JobState::Cancelled
                } else {
                    JobState::Completed
                };
                self.finish(to, now);
            }
            Outcome::Failed {
                error,
                retry,
                retry_in,
            } => self.fail_attempt(error, retry, retry_in, now, sample),
        }
        if let Some(l) = self.lease.as_mut() {
            l.reported = Some(reported);
        }
        Ok(AckEffect::Applied(self.state))
    }

    /// Ends a running job whose lease ran out at `now` without a report: a failed attempt
    /// with error `lease expired`, under the same retry rule as a failure.
    pub fn expire(&mut self, now: Timestamp, sample: f64) -> Result<Happened, TransitionError> {
        let expired = match &self.lease {
            Some(l) => {
                self.state == JobState::Running && l.reported.is_none() && now >= l.expires_at
            }
            None => false,
        };
        if !expired {
            return Err(TransitionError::StaleLease);
        }
        self.fail_attempt("lease expired".to_string(), true, None, now, sample);
        if let Some(l) = self.lease.as_mut() {
            l.reported = Some(Reported::Expired);
        }
        Ok(Happened::report(self.state))
    }

    /// Extends the live lease `token` to `now + extend`. Returns the new expiry.
    pub fn heartbeat(
        &mut self,
        token: Uuid,
        extend: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, TransitionError> {
        match self.live_lease(token, now)? {
            // Expired is expired, whether or not the timer has ended the lease yet.
            Some(Reported::Expired) => return Err(TransitionError::LeaseExpired),
            Some(_) => return Err(TransitionError::StaleLease),
            None => {}
        }
        let until = later(now, extend);
        if let Some(l) = self.lease.as_mut() {
            l.expires_at = until;
        }
        Ok(until)
    }

    /// Cancels the job: at once when it is not running, at its next report (or lease
    /// expiry) when it is.
    pub fn cancel(&mut self, now: Timestamp) -> Result<Happened, TransitionError> {
        match self.state {
            s if s.is_finished() => Err(TransitionError::Finished(s)),
            JobState::Running => {
                self.cancel_requested = true;
                Ok(Happened::NOTHING)
            }
            _ => {
                self.finish(JobState::Cancelled, now);
                Ok(Happened::one(EventType::JobCancelled))
            }
        }
    }

    /// Runs the job again now. A finished job starts over with attempt 0 (its errors and
    /// failure count are kept); a waiting job just stops waiting.
    pub fn retry(&mut self, now: Timestamp) -> Result<Happened, TransitionError> {
        match self.state {
            JobState::Running => return Err(TransitionError::Running),
            JobState::Available => return Ok(Happened::NOTHING),
            s if s.is_finished() => {
                self.attempt = 0;
                self.finished_at = None;
                self.result = None;
                self.cancel_requested = false;
            }
            _ => {}
        }
        self.state = JobState::Available;
        self.run_at = now;
        Ok(Happened::one(EventType::JobRetried))
    }

    /// What an operator may do to the job as it stands: the requests [`Job::retry`],
    /// [`Job::cancel`] and [`Job::check_delete`] would accept and that change something
    /// (a retry of an available job is accepted but does nothing). The dashboard shows
    /// its buttons by this.
    pub fn operator_actions(&self) -> OperatorActions {
        OperatorActions {
            retry: !matches!(self.state, JobState::Running | JobState::Available),
            cancel: !self.state.is_finished() && !self.cancel_requested,
            delete: self.state != JobState::Running,
        }
    }

    /// Whether the job may be deleted now (not while it runs), and the event its deletion
    /// makes.
    pub fn check_delete(&self) -> Result<Happened, TransitionError> {
        if self.state == JobState::Running {
            Err(TransitionError::Running)
        } else {
            Ok(Happened::one(EventType::JobDeleted))
        }
    }

    fn fail_attempt(
        &mut self,
        error: String,
        retry: bool,
        retry_in: Option<Duration>,
        now: Timestamp,
        sample: f64,
    ) {
        // A job retried again and again must not grow without bound: keep the latest.
        if self.errors.len() >= MAX_ERRORS_KEPT {
            let excess = self.errors.len() + 1 - MAX_ERRORS_KEPT;
            self.errors.drain(..excess);
        }
        self.errors.push(AttemptError {
            attempt: self.attempt,
            at: now,
            error,
            worker: self.lease.as_ref().map(|l| l.worker.clone()),
            started_at: self.started_at,
        });
        self.failures = self.failures.saturating_add(1);
        if self.cancel_requested {
            self.finish(JobState::Cancelled, now);
        } else if retry && self.attempt < self.max_attempts {
            self.state = JobState::Retryable;
            let wait = retry_in.unwrap_or_else(|| self.backoff.delay(self.attempt, sample));
            self.run_at = later(now, wait);
        } else {
            self.finish(JobState::Dead, now);
        }
    }

    fn finish(&mut self, to: JobState, now: Timestamp) {
        self.state = to;
        self.finished_at = Some(now);
    }
}

#[cfg(test)]
mod tests;
