//! The job resource: what a job is, the states it can be in, and the records it carries
//! (attempt errors, the current lease). How a job moves between states is in
//! [`crate::machine`].

use crate::backoff::Backoff;
use crate::duration::Duration;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Where a job is in its life. Each state has a stable storage code, written down here
/// once (never renumber: it is what backends store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobState {
    /// Waiting for its `run_at` in the future.
    Scheduled = 0,
    /// Ready to be leased.
    Available = 1,
    /// Leased by a worker.
    Running = 2,
    /// Failed, will run again at `run_at`.
    Retryable = 3,
    /// Done.
    Completed = 4,
    /// Attempts used up, or failed without retry.
    Dead = 5,
    /// Cancelled before it finished.
    Cancelled = 6,
}

impl JobState {
    /// Every state, in the order the API lists them.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// Not finished: such a job holds its unique key (no other unfinished job of its
    /// queue may have it) and counts as its schedule's unfinished run (`overlap: skip`).
    pub const UNFINISHED: [JobState; 4] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
    ];

    /// Waiting for `run_at`: promoted to available when it passes.
    pub const WAITING: [JobState; 2] = [JobState::Scheduled, JobState::Retryable];

    /// Finished: nothing more will happen unless someone retries it; deleted once its
    /// retention has passed ([`crate::Retention`]).
    pub const FINISHED: [JobState; 3] = [JobState::Completed, JobState::Dead, JobState::Cancelled];

    /// Completed, dead or cancelled: nothing more will happen unless someone retries it.
    pub fn is_finished(self) -> bool {
        !JobState::UNFINISHED.contains(&self)
    }

    /// Waiting for its time (scheduled or retryable).
    pub fn is_waiting(self) -> bool {
        JobState::WAITING.contains(&self)
    }

    /// The lowercase name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The stable storage code (see the enum's discriminants).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state stored as `code`.
    pub fn from_code(code: u8) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown state {s:?}; one of scheduled, available, running, retryable, completed, dead, cancelled")
            })
    }
}

/// One failed attempt, kept on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptError {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// When it was reported (or the lease expired).
    pub at: Timestamp,
    /// What the worker said, or `lease expired`.
    pub error: String,
    /// The worker whose lease it was (absent on attempts recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// When the attempt's lease began (absent on attempts recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
}

/// What became of a lease, once its worker reported (or it expired). Stable storage codes,
/// as for [`JobState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Reported {
    /// The worker acked `completed`.
    Completed = 0,
    /// The worker acked `failed`.
    Failed = 1,
    /// Nobody reported before the lease ran out.
    Expired = 2,
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reported::Completed => "completed",
            Reported::Failed => "failed",
            Reported::Expired => "expired",
        })
    }
}

impl Reported {
    /// A stable small number for storage.
    pub fn code(self) -> u8 {
        self as u8
    }
    /// The value stored as `code`.
    pub fn from_code(code: u8) -> Option<Reported> {
        [Reported::Completed, Reported::Failed, Reported::Expired]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

/// The current (or last) lease of a job. Only the holder of `token` may ack or extend it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The secret the worker proves itself with.
    pub token: Uuid,
    /// The worker's self-chosen name.
    pub worker: String,
    /// When the lease runs out by the store's clock.
    pub expires_at: Timestamp,
    /// Set once the lease is over: how it ended.
    pub reported: Option<Reported>,
}

/// A job as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// UUIDv7, time-ordered.
    pub id: Uuid,
    /// Queue name.
    pub queue: String,
    /// What kind of work this is; workers dispatch on it.
    pub kind: String,
    /// The job's arguments, kept exactly as sent.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub payload: Box<RawValue>,
    /// -100..=100, higher runs first.
    pub priority: i32,
    /// Where it is in its life.
    pub state: JobState,
    /// Leases so far (each lease adds one).
    pub attempt: u32,
    /// Leases allowed before the job is dead.
    pub max_attempts: u32,
    /// When it may run next.
    pub run_at: Timestamp,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its latest attempt started.
    pub started_at: Option<Timestamp>,
    /// When it reached a finished state.
    pub finished_at: Option<Timestamp>,
    /// De-duplication key among unfinished jobs of its queue.
    pub unique_key: Option<String>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// The most recent failed attempts, oldest first: at most
    /// [`MAX_ERRORS_KEPT`](crate::validate::MAX_ERRORS_KEPT) of them.
    pub errors: Vec<AttemptError>,
    /// Every failed attempt the job ever had, including those no longer in `errors`.
    #[serde(default)]
    pub failures: u32,
    /// What the worker returned on completion.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
    /// Default lease length for each attempt.
    pub timeout: Duration,
    /// Delay policy between attempts.
    pub backoff: Backoff,
    /// Someone asked to cancel it while it was running.
    pub cancel_requested: bool,
    /// The schedule that made this run, if a schedule did.
    pub schedule_id: Option<Uuid>,
    /// The fire time this run was made for (with `schedule_id`).
    pub scheduled_for: Option<Timestamp>,
    /// The producer's trace context (W3C `traceparent`/`tracestate`), when it sent one.
    #[serde(default)]
    pub trace: Option<crate::Trace>,
    /// The current or last lease; never shown by the API except to its worker.
    #[serde(skip)]
    pub lease: Option<Lease>,
}

/// A validated request to create a job: everything but the identity and the clock.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Queue name (validated).
    pub queue: String,
    /// Kind (validated).
    pub kind: String,
    /// Payload (size-checked).
    pub payload: Box<RawValue>,
    /// -100..=100.
    pub priority: i32,
    /// An absolute run time; `None` means now.
    pub run_at: Option<Timestamp>,
    /// A delay from the store's now; used when `run_at` is `None`.
    pub delay: Option<Duration>,
    /// At least 1.
    pub max_attempts: u32,
    /// Delay policy between attempts.
    pub backoff: Backoff,
    /// Lease length per attempt.
    pub timeout: Duration,
    /// De-duplication key.
    pub unique_key: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// The schedule making this run (set by the scheduler only).
    pub schedule_id: Option<Uuid>,
    /// The fire time this run is for (set by the scheduler only).
    pub scheduled_for: Option<Timestamp>,
    /// The producer's trace context (from its request's headers).
    pub trace: Option<crate::Trace>,
}

impl Job {
    /// The unique key a transition out of a finished state would take back (a retry):
    /// the backend must make sure no other unfinished job of the queue holds it first.
    pub fn unique_key_to_reclaim(&self) -> Option<&str> {
        if self.state.is_finished() {
            self.unique_key.as_deref()
        } else {
            None
        }
    }

    /// A new job from a validated request, created at `now` with `id`.
    /// Its state is `scheduled` when it is due in the future, `available` otherwise.
    pub fn new(spec: NewJob, id: Uuid, now: Timestamp) -> Job {
        let run_at = match (spec.run_at, spec.delay) {
            // Stored with microsecond precision: answer what a later read will show.
            (Some(at), _) => Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at),
            (None, Some(d)) => now.saturating_add(d.as_signed()).unwrap_or(now),
            (None, None) => now,
        };
        let state = if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        Job {
            id,
            queue: spec.queue,
            kind: spec.kind,
            payload: spec.payload,
            priority: spec.priority,
            state,
            attempt: 0,
            max_attempts: spec.max_attempts,
            run_at,
            created_at: now,
            started_at: None,
            finished_at: None,
            unique_key: spec.unique_key,
            tags: spec.tags,
            errors: Vec::new(),
            failures: 0,
            result: None,
            timeout: spec.timeout,
            backoff: spec.backoff,
            cancel_requested: false,
            schedule_id: spec.schedule_id,
            scheduled_for: spec.scheduled_for,
            trace: spec.trace,
            lease: None,
        }
    }
}

/// A plain job spec for the core's tests: queue `default`, kind `k`, payload `{}`, a 30 s
/// timeout, the default backoff.
#[cfg(test)]
pub(crate) fn test_spec(max_attempts: u32, run_at: Option<Timestamp>) -> NewJob {
    NewJob {
        queue: "default".into(),
        kind: "k".into(),
        payload: RawValue::from_string("{}".into()).unwrap(),
        priority: 0,
        run_at,
        delay: None,
        max_attempts,
        backoff: Backoff::default(),
        timeout: Duration::from_secs(30),
        unique_key: None,
        tags: vec![],
        schedule_id: None,
        scheduled_for: None,
        trace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_codes_are_the_documented_ones() {
        let codes: Vec<(JobState, u8)> = JobState::ALL.iter().map(|s| (*s, s.code())).collect();
        assert_eq!(
            codes,
            [
                (JobState::Scheduled, 0),
                (JobState::Available, 1),
                (JobState::Running, 2),
                (JobState::Retryable, 3),
                (JobState::Completed, 4),
                (JobState::Dead, 5),
                (JobState::Cancelled, 6)
            ]
        );
        for s in JobState::ALL {
            assert_eq!(JobState::from_code(s.code()), Some(s));
            assert_eq!(s.is_finished(), !JobState::UNFINISHED.contains(&s));
        }
        assert_eq!(JobState::from_code(7), None);
        assert_eq!(
            Reported::from_code(Reported::Expired.code()),
            Some(Reported::Expired)
        );
    }
}
