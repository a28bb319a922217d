//! Events: what happened to jobs, queues and schedules, as the event log keeps it and as
//! `GET /v1/events`, the stream and the sinks show it.
//!
//! Each type has a stable name (what the API and the sinks' routing keys say) and a
//! stable storage code (what backends store; never renumber). Which events a job
//! transition makes is decided by the state machine ([`crate::machine::Happened`]); this
//! module says what an event holds and how a query for them is checked.

use crate::api::empty_as_none;
use crate::job::{Job, JobState};
use crate::schedule::Schedule;
use crate::validate::{Checker, Invalid};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// What happened. The storage code is the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventType {
    /// A job was created.
    JobEnqueued = 0,
    /// A worker leased the job (an attempt began).
    JobStarted = 1,
    /// An attempt succeeded; the job is completed.
    JobCompleted = 2,
    /// An attempt failed (a lease expiry too); `data.state` is `retryable` or `dead`.
    JobFailed = 3,
    /// The job is dead (after the `job.failed` of its last attempt).
    JobDead = 4,
    /// The job was cancelled (at once, or at the report of its running attempt).
    JobCancelled = 5,
    /// Someone asked for the job to run again now.
    JobRetried = 6,
    /// The job was deleted.
    JobDeleted = 7,
    /// A queue was paused.
    QueuePaused = 8,
    /// A queue was resumed.
    QueueResumed = 9,
    /// A schedule was created.
    ScheduleCreated = 10,
    /// A schedule was changed.
    ScheduleUpdated = 11,
    /// A schedule was deleted.
    ScheduleDeleted = 12,
    /// A schedule made a run.
    ScheduleFired = 13,
    /// A task's reminder came due (the tasks feature's reminder worker).
    TaskDue = 14,
    /// A notification was created (the tasks feature's notifications).
    NotificationCreated = 15,
}

impl EventType {
    /// Every type, in code order.
    pub const ALL: [EventType; 16] = [
        EventType::JobEnqueued,
        EventType::JobStarted,
        EventType::JobCompleted,
        EventType::JobFailed,
        EventType::JobDead,
        EventType::JobCancelled,
        EventType::JobRetried,
        EventType::JobDeleted,
        EventType::QueuePaused,
        EventType::QueueResumed,
        EventType::ScheduleCreated,
        EventType::ScheduleUpdated,
        EventType::ScheduleDeleted,
        EventType::ScheduleFired,
        EventType::TaskDue,
        EventType::NotificationCreated,
    ];

    /// The name the API and the sinks use (`job.dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobEnqueued => "job.enqueued",
            EventType::JobStarted => "job.started",
            EventType::JobCompleted => "job.completed",
            EventType::JobFailed => "job.failed",
            EventType::JobDead => "job.dead",
            EventType::JobCancelled => "job.cancelled",
            EventType::JobRetried => "job.retried",
            EventType::JobDeleted => "job.deleted",
            EventType::QueuePaused => "queue.paused",
            EventType::QueueResumed => "queue.resumed",
            EventType::ScheduleCreated => "schedule.created",
            EventType::ScheduleUpdated => "schedule.updated",
            EventType::ScheduleDeleted => "schedule.deleted",
            EventType::ScheduleFired => "schedule.fired",
            EventType::TaskDue => "task.due",
            EventType::NotificationCreated => "notification.created",
        }
    }

    /// The stable storage code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether the type is a job's (its data is the job's summary).
    pub fn is_job(self) -> bool {
        self.code() <= EventType::JobDeleted.code()
    }

    /// The type stored as `code`.
    pub fn from_code(code: u8) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an event type (like job.dead)"))
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A job as events show it: everything but its payload and result, which may be large
/// and private (a consumer that needs them reads the job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job's id.
    pub id: Uuid,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its state after what happened.
    pub state: JobState,
    /// Attempts begun.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: i32,
    /// When it runs (next).
    pub run_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it finished, if it has.
    pub finished_at: Option<Timestamp>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The schedule that made it, if one did.
    pub schedule_id: Option<Uuid>,
    /// The latest attempt's error, if an attempt failed.
    pub error: Option<String>,
}

impl JobSummary {
    /// The summary of `job` as it is now.
    pub fn of(job: &Job) -> JobSummary {
        JobSummary {
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            state: job.state,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            priority: job.priority,
            run_at: job.run_at,
            created_at: job.created_at,
            finished_at: job.finished_at,
            unique_key: job.unique_key.clone(),
            tags: job.tags.clone(),
            schedule_id: job.schedule_id,
            error: job.errors.last().map(|e| e.error.clone()),
        }
    }
}

/// A job summary as stored: a positional array without the id and queue, which the
/// event row keeps in columns of its own (`S`: `&str` written, `String` read). About a
/// quarter of the bytes of the summary's JSON object,
/// and written without copying the job's strings: the event log's cost in the writer is
/// mostly the bytes it adds to each commit (docs/performance.md).
///
/// `[kind, state code, attempt, max_attempts, priority, run_at µs, created_at µs,
/// finished_at µs | null, unique_key | null, tags, schedule_id | null, error | null]`
type StoredSummary<S, T> = (
    S,
    u8,
    u32,
    u32,
    i32,
    i64,
    i64,
    Option<i64>,
    Option<S>,
    T,
    Option<Uuid>,
    Option<S>,
);

/// The stored summary of `job` (see [`JobSummary::from_stored`]).
pub fn stored_summary(job: &Job) -> Box<RawValue> {
    let stored: StoredSummary<&str, &[String]> = (
        &job.kind,
        job.state.code(),
        job.attempt,
        job.max_attempts,
        job.priority,
        job.run_at.as_microsecond(),
        job.created_at.as_microsecond(),
        job.finished_at.map(|t| t.as_microsecond()),
        job.unique_key.as_deref(),
        &job.tags,
        job.schedule_id,
        job.errors.last().map(|e| e.error.as_str()),
    );
    raw(&stored)
}

impl JobSummary {
    /// The summary stored as `stored` (by [`stored_summary`]) for job `id` of `queue`.
    pub fn from_stored(id: Uuid, queue: &str, stored: &str) -> Result<JobSummary, String> {
        let (
            kind,
            state,
            attempt,
            max_attempts,
            priority,
            run_at,
            created_at,
            finished_at,
            unique_key,
            tags,
            schedule_id,
            error,
        ): StoredSummary<String, Vec<String>> =
            serde_json::from_str(stored).map_err(|e| e.to_string())?;
        let ts = |us: i64| Timestamp::from_microsecond(us).map_err(|e| e.to_string());
        Ok(JobSummary {
            id,
            queue: queue.to_string(),
            kind,
            state: JobState::from_code(state)
                .ok_or_else(|| format!("unknown job state code {state}"))?,
            attempt,
            max_attempts,
            priority,
            run_at: ts(run_at)?,
            created_at: ts(created_at)?,
            finished_at: finished_at.map(ts).transpose()?,
            unique_key,
            tags,
            schedule_id,
            error,
        })
    }
}

/// An event's data as shown, from its stored form: a job event's stored summary made
/// whole again (with the row's `job_id` and `queue`), any other data as stored (a
/// summary stored whole, a JSON object as the first version wrote, included).
pub fn shown_data(
    kind: EventType,
    job_id: Option<Uuid>,
    queue: Option<&str>,
    stored: String,
) -> Result<Box<RawValue>, String> {
    match (kind.is_job(), job_id, queue) {
        (true, Some(id), Some(queue)) if !stored.trim_start().starts_with('{') => {
            Ok(raw(&JobSummary::from_stored(id, queue, &stored)?))
        }
        _ => RawValue::from_string(stored).map_err(|e| e.to_string()),
    }
}

/// A schedule as events show it: its timing and target, without the template's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSummary {
    /// The schedule's id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// Whether it fires.
    pub active: bool,
    /// The queue its runs go to.
    pub queue: String,
    /// The kind of its runs.
    pub kind: String,
    /// Intended time of its latest run.
    pub last_run_at: Option<Timestamp>,
    /// Its next fire time.
    pub next_run_at: Option<Timestamp>,
}

impl ScheduleSummary {
    /// The summary of `s` as it is now.
    pub fn of(s: &Schedule) -> ScheduleSummary {
        ScheduleSummary {
            id: s.id,
            name: s.name.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            active: s.active,
            queue: s.job.queue.clone(),
            kind: s.job.kind.clone(),
            last_run_at: s.last_run_at,
            next_run_at: s.next_run_at,
        }
    }
}

/// The data of `schedule.fired`: the schedule, the run it made and the slot it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    /// The schedule after firing.
    pub schedule: ScheduleSummary,
    /// The run's id.
    pub job_id: Uuid,
    /// The slot the run is for.
    pub scheduled_for: Timestamp,
    /// A trigger through the API, outside the timetable.
    pub manual: bool,
}

fn raw<T: Serialize>(data: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).expect("event data serializes")
}

/// An event to be written, in the same transaction as the change it records; the store
/// gives it its id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventType,
    /// When (the store's clock).
    pub at: Timestamp,
    /// The queue it concerns, if any.
    pub queue: Option<String>,
    /// The job it concerns, if any.
    pub job_id: Option<Uuid>,
    /// The schedule it concerns, if any.
    pub schedule_id: Option<Uuid>,
    /// Its data, as JSON.
    pub data: Box<RawValue>,
}

impl NewEvent {
    /// An event about `job` (after the change), its summary as data (in its stored form:
    /// see [`stored_summary`]; stores give it back whole through [`shown_data`]).
    pub fn job(kind: EventType, job: &Job, at: Timestamp) -> NewEvent {
        NewEvent {
            kind,
            at,
            queue: Some(job.queue.clone()),
            job_id: Some(job.id),
            schedule_id: job.schedule_id,
            data: stored_summary(job),
        }
    }

    /// An event about schedule `s` (created, updated, deleted), its summary as data.
    pub fn schedule(kind: EventType, s: &Schedule, at: Timestamp) -> NewEvent {
        NewEvent {
            kind,
            at,
            queue: Some(s.job.queue.clone()),
            job_id: None,
            schedule_id: Some(s.id),
            data: raw(&ScheduleSummary::of(s)),
        }
    }

    /// `schedule.fired`: `s` made `run` for `scheduled_for` (`manual`: a trigger).
    pub fn fired(
        s: &Schedule,
        run: &Job,
        scheduled_for: Timestamp,
        manual: bool,
        at: Timestamp,
    ) -> NewEvent {
        NewEvent {
            kind: EventType::ScheduleFired,
            at,
            queue: Some(run.queue.clone()),
            job_id: Some(run.id),
            schedule_id: Some(s.id),
            data: raw(&Fired {
                schedule: ScheduleSummary::of(s),
                job_id: run.id,
                scheduled_for,
                manual,
            }),
        }
    }

    /// An event about queue `queue` (paused or resumed): `{"queue": name}` as data.
    pub fn queue(kind: EventType, queue: &str, at: Timestamp) -> NewEvent {
        NewEvent {
            kind,
            at,
            queue: Some(queue.to_string()),
            job_id: None,
            schedule_id: None,
            data: raw(&serde_json::json!({ "queue": queue })),
        }
    }
}

impl NewEvent {
    /// An event a feature emits (`task.due`, say), with `data` as its data; the store
    /// stamps it with its clock.
    pub fn feature<T: Serialize>(
        kind: EventType,
        queue: Option<&str>,
        job_id: Option<Uuid>,
        data: &T,
    ) -> NewEvent {
        NewEvent {
            kind,
            at: Timestamp::UNIX_EPOCH,
            queue: queue.map(str::to_string),
            job_id,
            schedule_id: None,
            data: raw(data),
        }
    }
}

/// An event as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Strictly increasing: a later event has a greater id.
    pub id: u64,
    /// What happened (`job.enqueued`, `job.started`, `job.completed`, `job.failed`,
    /// `job.dead`, `job.cancelled`, `job.retried`, `job.deleted`, `queue.paused`,
    /// `queue.resumed`, `schedule.created`, `schedule.updated`, `schedule.deleted`,
    /// `schedule.fired`, `task.due`, `notification.created`).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "job.completed"))]
    pub kind: EventType,
    /// When.
    pub at: Timestamp,
    /// The queue it concerns, or null.
    pub queue: Option<String>,
    /// The job it concerns, or null.
    pub job_id: Option<Uuid>,
    /// The schedule it concerns, or null.
    pub schedule_id: Option<Uuid>,
    /// What the type says it holds (a job summary for job events).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Box<RawValue>,
}

/// `GET /v1/events`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    /// Oldest first.
    pub events: Vec<Event>,
    /// Where the next page starts (its `after`): the last event's id on a full page;
    /// otherwise how far this page looked, past events the filters passed over (at most
    /// [`EVENT_SCAN_WINDOW`] ids per page, so a rare filter costs bounded work per page).
    pub next_after: u64,
}

/// Most event ids one page looks through: a filter that matches one event in a
/// million answers a page per window, each cheap, instead of one page that reads the
/// whole log.
pub const EVENT_SCAN_WINDOW: u64 = 10_000;

/// The greatest id an event can have (ids are stored as signed 64-bit integers).
pub const MAX_EVENT_ID: u64 = i64::MAX as u64;

/// Most events one page holds.
pub const MAX_EVENTS_PAGE: u32 = 1000;
/// Events one page holds unless asked.
pub const DEFAULT_EVENTS_PAGE: u32 = 100;

/// `GET /v1/events` query parameters, as sent. An empty parameter means "not given", so
/// the numbers are documented as digit strings that may be empty (as `GET /v1/jobs`'s
/// `state` is).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events with greater ids (default 0: from the oldest kept).
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, pattern = r"^\+?[0-9]*$"))]
    pub after: Option<u64>,
    /// Comma-separated types (`job.dead,job.completed`); default every type.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub types: Option<String>,
    /// Only events of this queue.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub queue: Option<String>,
    /// Most events (default 100, at most 1,000).
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(
        feature = "openapi",
        param(value_type = Option<String>, pattern = r"^\+?[0-9]*$")
    )]
    pub limit: Option<u32>,
}

/// `GET /v1/events/stream` query parameters, as sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EventStreamQuery {
    /// Start after this id (a `Last-Event-ID` header wins); default: new events only.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, pattern = r"^\+?[0-9]*$"))]
    pub after: Option<u64>,
    /// Comma-separated types (`job.dead,job.completed`); default every type.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub types: Option<String>,
    /// Only events of this queue.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub queue: Option<String>,
}

impl EventStreamQuery {
    /// Checks the filters, naming the one at fault; the filter reads `MAX_EVENTS_PAGE`
    /// events a page, from `after` (the caller sets where the stream starts).
    pub fn validate(self) -> Result<EventFilter, Invalid> {
        EventQuery {
            after: self.after,
            types: self.types,
            queue: self.queue,
            limit: Some(MAX_EVENTS_PAGE),
        }
        .validate()
    }
}

/// A checked event query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// Only ids greater than this.
    pub after: u64,
    /// Only these types (empty: every type).
    pub types: Vec<EventType>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Most events.
    pub limit: u32,
}

impl EventFilter {
    /// Whether `event` passes the type and queue filters (not `after` or `limit`).
    pub fn admits(&self, kind: EventType, queue: Option<&str>) -> bool {
        (self.types.is_empty() || self.types.contains(&kind))
            && self.queue.as_deref().is_none_or(|q| queue == Some(q))
    }
}

impl EventQuery {
    /// Checks every parameter, naming the one at fault.
    pub fn validate(self) -> Result<EventFilter, Invalid> {
        let mut c = Checker::new("");
        if let Some(q) = &self.queue {
            c.name("queue", q);
        }
        let mut types = Vec::new();
        for name in self.types.iter().flat_map(|t| t.split(',')) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            match name.parse::<EventType>() {
                Ok(t) if !types.contains(&t) => types.push(t),
                Ok(_) => {}
                Err(m) => c.invalid("types", m),
            }
        }
        if self.after.is_some_and(|a| a > MAX_EVENT_ID) {
            c.invalid("after", format!("must be at most {MAX_EVENT_ID}"));
        }
        let limit = self.limit.unwrap_or(DEFAULT_EVENTS_PAGE);
        if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
            c.invalid("limit", format!("must be from 1 to {MAX_EVENTS_PAGE}"));
        }
        c.finish()?;
        Ok(EventFilter {
            after: self.after.unwrap_or(0),
            types,
            queue: self.queue,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_summary_reads_back_whole() {
        let spec = crate::api::EnqueueRequest {
            kind: "mail".into(),
            unique_key: Some("u1".into()),
            tags: Some(vec!["a \"quoted\"".into(), "b".into()]),
            ..Default::default()
        }
        .validate("", &crate::Limits::default())
        .unwrap();
        let mut job = Job::new(
            spec,
            Uuid::now_v7(),
            "2026-01-01T00:00:00.123456Z".parse().unwrap(),
        );
        job.schedule_id = Some(Uuid::now_v7());
        let stored = stored_summary(&job);
        assert!(stored.get().starts_with('['), "{}", stored.get());
        let whole = JobSummary::of(&job);
        assert_eq!(
            JobSummary::from_stored(job.id, &job.queue, stored.get()).unwrap(),
            whole
        );
        let shown = shown_data(
            EventType::JobEnqueued,
            Some(job.id),
            Some(&job.queue),
            stored.get().to_string(),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<JobSummary>(shown.get()).unwrap(),
            whole
        );
        // A summary stored whole (by an earlier version) reads as it was.
        let old = serde_json::to_string(&whole).unwrap();
        let shown_old = shown_data(
            EventType::JobEnqueued,
            Some(job.id),
            Some(&job.queue),
            old.clone(),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<JobSummary>(shown_old.get()).unwrap(),
            whole
        );
        // Other events' data is shown as stored, arrays included.
        let feature = shown_data(EventType::TaskDue, None, None, "[1,2]".into()).unwrap();
        assert_eq!(feature.get(), "[1,2]");
        assert!(
            stored.get().len() * 2 < old.len(),
            "{} vs {}",
            stored.get(),
            old
        );
    }

    #[test]
    fn names_and_codes_round_trip_and_never_move() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(EventType::from_code(t.code()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
        }
        // Stored codes: a change here breaks every store written before it.
        assert_eq!(EventType::JobEnqueued.code(), 0);
        assert_eq!(EventType::JobDead.code(), 4);
        assert_eq!(EventType::ScheduleFired.code(), 13);
        assert_eq!(EventType::TaskDue.code(), 14);
        assert_eq!(EventType::NotificationCreated.code(), 15);
        assert_eq!(EventType::from_code(16), None);
        assert!("job.exploded".parse::<EventType>().is_err());
    }

    #[test]
    fn queries_are_checked_field_by_field() {
        let f = EventQuery {
            types: Some("job.dead, job.completed,job.dead,".into()),
            queue: Some("mail".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            f,
            EventFilter {
                after: 0,
                types: vec![EventType::JobDead, EventType::JobCompleted],
                queue: Some("mail".into()),
                limit: DEFAULT_EVENTS_PAGE,
            }
        );
        assert!(f.admits(EventType::JobDead, Some("mail")));
        assert!(!f.admits(EventType::JobDead, Some("sms")));
        assert!(!f.admits(EventType::JobStarted, Some("mail")));
        assert!(!f.admits(EventType::JobDead, None));
        let Invalid(errors) = EventQuery {
            types: Some("job.dead,nope".into()),
            queue: Some("bad name".into()),
            limit: Some(1001),
            after: Some(MAX_EVENT_ID + 1),
        }
        .validate()
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["queue", "types", "after", "limit"]);
    }
}
