//! Kairos core: the pure domain of the job server, with no I/O.
//!
//! A map of the modules:
//! - [`duration`]: durations as the API writes them (`250ms`, `30s`, `1h30m`).
//! - [`backoff`]: how long a failed job waits before its next attempt.
//! - [`job`]: the job resource, its states and the records it carries.
//! - [`machine`]: the state machine: every legal transition of a job lives there.
//! - [`validate`]: names, sizes and ranges, reported per field.
//! - [`int`]: integers as JSON means them (`-0` and `5.0` are integers).
//! - [`api`]: the JSON shapes of the v1 API requests, and their validation into domain values.
//! - [`queue`]: queue objects and per-state counts.
//! - [`problem`]: the closed table of problem codes the API answers with.
//! - [`clock`]: the clock the store and engine read, so tests can move time.
//! - [`cron`]: cron expressions and their next matching wall-clock time.
//! - [`timetable`]: fire times of a cron expression in a time zone, with DST policies.
//! - [`schedule`]: the schedule resource (recurring jobs) and its API shapes.
//! - [`diagnosis`]: why a job is not running, read from the leasing rules.
//! - [`fingerprint`]: error texts with what varies replaced, to group failures.
//!
//! Backends (`kairos-store`) persist what the state machine decides; the server
//! (`kairos-server`) translates HTTP to these types. Neither decides what a job
//! may do next: that is [`machine`]'s job alone.

pub mod api;
pub mod backoff;
pub mod clock;
pub mod cron;
pub mod diagnosis;
pub mod duration;
pub mod event;
pub mod fingerprint;
pub mod int;
pub mod job;
pub mod machine;
#[cfg(feature = "openapi")]
mod openapi;
pub mod problem;
pub mod queue;
pub mod rate;
pub mod retention;
pub mod schedule;
pub mod timetable;
pub mod trace;
pub mod validate;
pub mod worker;

pub use backoff::{Backoff, BackoffKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::Duration;
pub use job::{AttemptError, Job, JobState, Lease, NewJob, Reported};
pub use machine::{AckEffect, OperatorActions, Outcome, TransitionError};
pub use problem::ProblemCode;
pub use queue::{Held, Queue, QueueChange, QueueFull, QueueLimits, StateCounts};
pub use retention::{Cutoffs, Retention};
pub use trace::Trace;
pub use validate::{FieldError, FieldErrorKind, Invalid, Limits};

/// Timestamps everywhere in Kairos: UTC instants with microsecond storage precision.
pub use jiff::Timestamp;
/// Raw JSON values (payloads and results) kept as the client sent them, never re-parsed.
pub use serde_json::value::RawValue;
