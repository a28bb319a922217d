//! Schedules: recurring jobs fired by a cron timetable in a time zone.
//!
//! Every run a schedule makes is an ordinary job carrying `schedule_id` and
//! `scheduled_for` (its intended fire time); the store keeps one run per pair, so no
//! restart, retry or second node can fire the same slot twice. This module holds the
//! resource, its request shapes and their validation, and the misfire rule.

use crate::api::EnqueueRequest;
use crate::backoff::Backoff;
use crate::cron::Cron;
use crate::duration::Duration;
use crate::job::NewJob;
use crate::timetable::{DstMark, DstRepeated, DstSkipped, Timetable};
use crate::validate::{Checker, Invalid, Limits};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// What to do about fire times that passed while the server could not fire them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Misfire {
    /// Fire nothing for missed times.
    Skip,
    /// One run, for the latest missed time.
    #[default]
    RunOnce,
    /// One run per missed time (the most recent 1,000 at most), oldest first.
    RunAll,
}

/// Whether a new run may start while the previous one is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Overlap {
    /// Always make the run.
    #[default]
    Allow,
    /// Make no run while the schedule's previous run is unfinished.
    Skip,
}

/// Most runs one catch-up makes under [`Misfire::RunAll`].
pub const MAX_CATCH_UP: usize = 1_000;
/// A fire time at most this old when the server gets to it is on time, not missed.
pub const MISFIRE_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);
/// Most times a preview shows.
pub const MAX_PREVIEW: usize = 100;

/// The job each run of a schedule enqueues (defaults filled in).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobTemplate {
    /// Queue name.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Payload, kept as sent.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub payload: Box<RawValue>,
    /// -100..=100.
    pub priority: i32,
    /// Attempts per run.
    pub max_attempts: u32,
    /// Delay policy between attempts.
    pub backoff: Backoff,
    /// Lease length per attempt.
    pub timeout: Duration,
    /// Labels.
    pub tags: Vec<String>,
}

/// The `job` object of a schedule request: an enqueue without timing or unique key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobTemplateRequest {
    /// Queue, default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", max_length = 128)
    )]
    pub queue: Option<String>,
    /// Required.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[A-Za-z0-9_.:-]{1,128}$",
            max_length = 128,
            example = "report"
        )
    )]
    pub kind: String,
    /// Default `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<RawValue>>,
    /// Default 0.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = -100, maximum = 100))]
    pub priority: Option<i32>,
    /// Default 3.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub max_attempts: Option<u32>,
    /// Default exponential from 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub tags: Option<Vec<String>>,
}

impl From<JobTemplate> for JobTemplateRequest {
    /// The request that makes this template again (every default spelled out).
    fn from(t: JobTemplate) -> JobTemplateRequest {
        JobTemplateRequest {
            queue: Some(t.queue),
            kind: t.kind,
            payload: Some(t.payload),
            priority: Some(t.priority),
            max_attempts: Some(t.max_attempts),
            backoff: Some(t.backoff),
            timeout: Some(t.timeout),
            tags: Some(t.tags),
        }
    }
}

impl JobTemplateRequest {
    fn validate(self, limits: &Limits) -> Result<JobTemplate, Invalid> {
        let job = EnqueueRequest {
            queue: self.queue,
            kind: self.kind,
            payload: self.payload,
            priority: self.priority,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            timeout: self.timeout,
            tags: self.tags,
            ..Default::default()
        }
        .validate("job.", limits)?;
        Ok(JobTemplate {
            queue: job.queue,
            kind: job.kind,
            payload: job.payload,
            priority: job.priority,
            max_attempts: job.max_attempts,
            backoff: job.backoff,
            timeout: job.timeout,
            tags: job.tags,
        })
    }
}

/// A schedule as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// UUIDv7.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The cron expression as written.
    pub cron: String,
    /// IANA time zone name.
    pub timezone: String,
    /// Policy for local times skipped by a spring-forward jump.
    pub dst_skipped: DstSkipped,
    /// Policy for local times repeated by a fall-back jump.
    pub dst_repeated: DstRepeated,
    /// The job each run enqueues.
    pub job: JobTemplate,
    /// Inactive schedules fire nothing.
    pub active: bool,
    /// Catch-up policy after downtime.
    pub misfire: Misfire,
    /// Whether runs may overlap.
    pub overlap: Overlap,
    /// Intended time of the latest run it made.
    pub last_run_at: Option<Timestamp>,
    /// Next fire time (null when inactive or never firing again).
    pub next_run_at: Option<Timestamp>,
    /// Why the server deactivated it (a stored cron or zone that no longer parses);
    /// cleared by a change of its timing.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// `POST /v1/schedules` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleRequest {
    /// Required, unique: 1 to 200 characters without control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, example = "weekday-report")
    )]
    pub name: String,
    /// Optional free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Required.
    #[cfg_attr(feature = "openapi", schema(min_length = 9, example = "0 9 * * 1-5"))]
    pub cron: String,
    /// Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Default `shift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_skipped: Option<DstSkipped>,
    /// Default `first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_repeated: Option<DstRepeated>,
    /// Required.
    pub job: JobTemplateRequest,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Default `run_once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    /// Default `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
}

/// `PATCH /v1/schedules/{id}` body: any subset of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulePatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// New time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// New skipped-time policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_skipped: Option<DstSkipped>,
    /// New repeated-time policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_repeated: Option<DstRepeated>,
    /// New job template (replaces the old one whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobTemplateRequest>,
    /// Activate or deactivate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// New misfire policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    /// New overlap policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
}

/// `POST /v1/schedules/preview` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewRequest {
    /// Required.
    #[cfg_attr(feature = "openapi", schema(min_length = 9, example = "0 9 * * 1-5"))]
    pub cron: String,
    /// Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Default `shift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_skipped: Option<DstSkipped>,
    /// Default `first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_repeated: Option<DstRepeated>,
    /// Default 5, at most 100.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub count: Option<u32>,
    /// Exclusive start; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Timestamp>,
}

/// `POST /v1/schedules/preview` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    /// Fire times in UTC.
    pub times: Vec<Timestamp>,
    /// The same times with the zone's offset (RFC 3339).
    pub local_times: Vec<String>,
    /// Per time: null, or how a daylight-saving rule placed it (shifted out of a
    /// spring-forward gap, or one occurrence of a wall time a fall-back repeats).
    #[serde(default)]
    pub dst: Vec<Option<DstMark>>,
    /// Wall times the expression names before the last time shown that fire nothing
    /// of their own: skipped by a spring-forward jump, or folded into the one shifted
    /// fire of their gap. Not counted in `count`.
    #[serde(default)]
    pub dropped: Vec<String>,
}

/// Longest schedule description.
pub const MAX_DESCRIPTION: usize = 4096;
/// Longest schedule name, in characters.
pub const MAX_SCHEDULE_NAME: usize = 200;

/// Schedule names are display names (`Daily Email Notification`): 1 to 200 characters,
/// no control characters. (Queue and kind names keep their strict pattern.)
pub fn check_schedule_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_SCHEDULE_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {MAX_SCHEDULE_NAME} characters without control characters"
        ));
    }
    Ok(())
}

fn timetable(
    c: &mut Checker<'_>,
    cron: &str,
    timezone: &str,
    skipped: DstSkipped,
    repeated: DstRepeated,
) -> Option<Timetable> {
    let cron: Option<Cron> = match cron.parse() {
        Ok(x) => Some(x),
        Err(e) => {
            c.invalid("cron", e.to_string());
            None
        }
    };
    let tz = match TimeZone::get(timezone) {
        Ok(tz) => Some(tz),
        Err(_) => {
            c.invalid(
                "timezone",
                format!("{timezone:?} is not an IANA time zone name (like Europe/Berlin)"),
            );
            None
        }
    };
    Some(Timetable::new(cron?, tz?, skipped, repeated))
}

impl PreviewRequest {
    /// The next fire times, validated.
    pub fn run(self, now: Timestamp) -> Result<Preview, Invalid> {
        let mut c = Checker::new("");
        let zone = self.timezone.unwrap_or_else(|| "UTC".to_string());
        let tt = timetable(
            &mut c,
            &self.cron,
            &zone,
            self.dst_skipped.unwrap_or_default(),
            self.dst_repeated.unwrap_or_default(),
        );
        let count = self.count.unwrap_or(5) as usize;
        if !(1..=MAX_PREVIEW).contains(&count) {
            c.invalid("count", format!("must be from 1 to {MAX_PREVIEW}"));
        }
        c.finish()?;
        let tt = tt.expect("checked");
        let after = self.after.unwrap_or(now);
        let times = tt.upcoming(after, count);
        let local_times = times
            .iter()
            .map(|t| t.display_with_offset(tt.tz().to_offset(*t)).to_string())
            .collect();
        let (dst, dropped) = tt.explain(after, &times);
        Ok(Preview {
            times,
            local_times,
            dst,
            dropped: dropped.iter().map(ToString::to_string).collect(),
        })
    }
}

impl ScheduleRequest {
    /// Validates the request into a new schedule created at `now`, and its timetable.
    pub fn validate(self, id: Uuid, now: Timestamp, limits: &Limits) -> Result<Schedule, Invalid> {
        let mut c = Checker::new("");
        if let Err(m) = check_schedule_name(&self.name) {
            c.invalid("name", m);
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            c.invalid("description", format!("at most {MAX_DESCRIPTION} bytes"));
        }
        let mut errors = Vec::new();
        let job = match self.job.validate(limits) {
            Ok(j) => Some(j),
            Err(Invalid(e)) => {
                errors.extend(e);
                None
            }
        };
        let Some(job) = job else {
            // Report the timing fields' problems too, not just the job's.
            let zone = self.timezone.as_deref().unwrap_or("UTC");
            timetable(
                &mut c,
                &self.cron,
                zone,
                DstSkipped::Shift,
                DstRepeated::First,
            );
            c.drain_into(&mut errors);
            return Err(Invalid(errors));
        };
        let schedule = Schedule {
            id,
            name: self.name,
            description: self.description,
            cron: self.cron.trim().to_string(),
            timezone: self.timezone.unwrap_or_else(|| "UTC".to_string()),
            dst_skipped: self.dst_skipped.unwrap_or_default(),
            dst_repeated: self.dst_repeated.unwrap_or_default(),
            job,
            active: self.active.unwrap_or(true),
            misfire: self.misfire.unwrap_or_default(),
            overlap: self.overlap.unwrap_or_default(),
            last_run_at: None,
            next_run_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        schedule.checked(c, errors, now)
    }
}

impl Schedule {
    /// Checks cron and zone, and sets `next_run_at` from `now`.
    fn checked(
        mut self,
        mut c: Checker<'_>,
        mut errors: Vec<crate::validate::FieldError>,
        now: Timestamp,
    ) -> Result<Schedule, Invalid> {
        let tt = timetable(
            &mut c,
            &self.cron,
            &self.timezone,
            self.dst_skipped,
            self.dst_repeated,
        );
        c.drain_into(&mut errors);
        if !errors.is_empty() {
            return Err(Invalid(errors));
        }
        self.next_run_at = if self.active {
            tt.and_then(|t| t.next_after(now))
        } else {
            None
        };
        Ok(self)
    }

    /// The schedule's timetable (its cron and zone were validated when it was made).
    pub fn timetable(&self) -> Option<Timetable> {
        let cron = self.cron.parse().ok()?;
        let tz = TimeZone::get(&self.timezone).ok()?;
        Some(Timetable::new(
            cron,
            tz,
            self.dst_skipped,
            self.dst_repeated,
        ))
    }

    /// Applies a partial update at `now`. A change of cron, zone, DST policy or `active`
    /// recomputes `next_run_at` from now.
    pub fn patch(
        &self,
        p: SchedulePatch,
        now: Timestamp,
        limits: &Limits,
    ) -> Result<Schedule, Invalid> {
        let mut c = Checker::new("");
        let mut next = self.clone();
        let retime = p.cron.is_some()
            || p.timezone.is_some()
            || p.dst_skipped.is_some()
            || p.dst_repeated.is_some()
            || p.active.is_some_and(|a| a != self.active);
        if let Some(name) = p.name {
            if let Err(m) = check_schedule_name(&name) {
                c.invalid("name", m);
            }
            next.name = name;
        }
        if let Some(d) = p.description {
            if d.len() > MAX_DESCRIPTION {
                c.invalid("description", format!("at most {MAX_DESCRIPTION} bytes"));
            }
            next.description = Some(d);
        }
        next.cron = p.cron.map_or(next.cron, |x| x.trim().to_string());
        next.timezone = p.timezone.unwrap_or(next.timezone);
        next.dst_skipped = p.dst_skipped.unwrap_or(next.dst_skipped);
        next.dst_repeated = p.dst_repeated.unwrap_or(next.dst_repeated);
        next.active = p.active.unwrap_or(next.active);
        next.misfire = p.misfire.unwrap_or(next.misfire);
        next.overlap = p.overlap.unwrap_or(next.overlap);
        let mut errors = Vec::new();
        if let Some(job) = p.job {
            match job.validate(limits) {
                Ok(j) => next.job = j,
                Err(Invalid(e)) => errors.extend(e),
            }
        }
        next.updated_at = now;
        let keep_next = next.next_run_at;
        let mut next = next.checked(c, errors, now)?;
        if retime {
            // A timing that parses again is the fix for what deactivated it.
            next.last_error = None;
        } else {
            next.next_run_at = keep_next;
        }
        Ok(next)
    }

    /// The job for one run intended for `scheduled_for`.
    pub fn run(&self, scheduled_for: Timestamp) -> NewJob {
        let t = &self.job;
        NewJob {
            queue: t.queue.clone(),
            kind: t.kind.clone(),
            payload: t.payload.clone(),
            priority: t.priority,
            run_at: None,
            delay: None,
            max_attempts: t.max_attempts,
            backoff: t.backoff.clone(),
            timeout: t.timeout,
            unique_key: None,
            tags: t.tags.clone(),
            schedule_id: Some(self.id),
            scheduled_for: Some(scheduled_for),
            trace: None,
        }
    }

    /// Fires the schedule at `now`: answers the slots to make runs for (oldest first) and
    /// moves `next_run_at` past now. A schedule whose stored cron or zone no longer parses
    /// (an old row, a newer tzdb) is deactivated with `last_error` instead: it would
    /// otherwise stay due forever and keep the timer busy.
    pub fn fire(&mut self, now: Timestamp, up_since: Timestamp) -> Vec<Timestamp> {
        let timetable = self.timetable();
        self.fire_by(timetable.as_ref(), now, up_since)
    }

    /// [`Schedule::fire`] by a timetable built beforehand (`timetable`: what
    /// [`Schedule::timetable`] answered for this schedule's cron and zone), for a store
    /// that keeps it between fires instead of parsing the cron at every one.
    pub fn fire_by(
        &mut self,
        timetable: Option<&Timetable>,
        now: Timestamp,
        up_since: Timestamp,
    ) -> Vec<Timestamp> {
        if timetable.is_none() {
            let why = match self.cron.parse::<Cron>() {
                Err(e) => e.to_string(),
                Ok(_) => format!("{:?} is not a known time zone", self.timezone),
            };
            self.active = false;
            self.next_run_at = None;
            self.last_error = Some(format!("deactivated: {why}"));
            return Vec::new();
        }
        let (runs, next) = self.due_by(timetable, now, up_since);
        self.next_run_at = next;
        runs
    }

    /// The overlap rule: whether a run may be made now. A manual trigger always may; a
    /// timetabled run under `overlap: skip` may not while an earlier run is unfinished
    /// (`unfinished` is asked only then).
    pub fn admits_run<E>(
        &self,
        manual: bool,
        unfinished: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        if !self.overlap_applies(manual) {
            return Ok(true);
        }
        Ok(!unfinished()?)
    }

    /// Whether the overlap rule looks at unfinished runs for this run (a backend that
    /// must fetch that answer ahead of [`Schedule::admits_run`] asks only then).
    pub fn overlap_applies(&self, manual: bool) -> bool {
        !manual && self.overlap != Overlap::Allow
    }

    /// The instants a manual trigger at `now` may take its run at, in order: `now`, then
    /// each next microsecond, so two triggers in one instant both run (a slot holds one
    /// run). Bounded: a backend that finds them all taken refuses the trigger.
    pub fn trigger_instants(now: Timestamp) -> impl Iterator<Item = Timestamp> {
        (0..1_000i64)
            .filter_map(move |us| now.checked_add(jiff::SignedDuration::from_micros(us)).ok())
    }

    /// Records that a run was made for `slot`.
    pub fn record_run(&mut self, slot: Timestamp) {
        self.last_run_at = Some(self.last_run_at.map_or(slot, |l| l.max(slot)));
    }

    /// The fire times due at `now` (from `next_run_at` on) and which of them to run, with
    /// the next fire time after now. `up_since` is when the server (its store) started:
    /// a slot at or after it, or at most [`MISFIRE_GRACE`] old, is on time and runs even
    /// if the server is behind; only slots that passed while the server was down are
    /// misfires, handled by the misfire policy. Returns `(runs, next_run_at)`, runs oldest
    /// first.
    pub fn due(&self, now: Timestamp, up_since: Timestamp) -> (Vec<Timestamp>, Option<Timestamp>) {
        self.due_by(self.timetable().as_ref(), now, up_since)
    }

    fn due_by(
        &self,
        timetable: Option<&Timetable>,
        now: Timestamp,
        up_since: Timestamp,
    ) -> (Vec<Timestamp>, Option<Timestamp>) {
        let (Some(first), Some(tt)) = (self.next_run_at, timetable) else {
            return (Vec::new(), self.next_run_at);
        };
        if !self.active || first > now {
            return (Vec::new(), self.next_run_at);
        }
        // Every fire time from `first` (inclusive) to now; the most recent 1,000 at most.
        let just_before = first
            .checked_sub(jiff::SignedDuration::from_nanos(1))
            .unwrap_or(first);
        let mut due = tt.recent(just_before, now, MAX_CATCH_UP);
        if due.is_empty() {
            due.push(first);
        }
        let (missed, on_time): (Vec<Timestamp>, Vec<Timestamp>) = due
            .into_iter()
            .partition(|t| *t < up_since && now.duration_since(*t) > MISFIRE_GRACE);
        let mut runs = match self.misfire {
            Misfire::RunAll => missed,
            Misfire::RunOnce => missed.last().copied().into_iter().collect(),
            Misfire::Skip => Vec::new(),
        };
        runs.extend(on_time);
        (runs, tt.next_after(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(cron: &str, misfire: Misfire) -> Schedule {
        ScheduleRequest {
            name: "s".into(),
            cron: cron.into(),
            job: JobTemplateRequest {
                kind: "k".into(),
                ..Default::default()
            },
            misfire: Some(misfire),
            ..Default::default()
        }
        .validate(
            Uuid::now_v7(),
            at("2030-01-01T00:00:00Z"),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn next_run_at_is_filled() {
        let s = schedule("0 * * * *", Misfire::RunOnce);
        assert_eq!(s.next_run_at, Some(at("2030-01-01T01:00:00Z")));
        assert_eq!(s.job.queue, "default");
    }

    #[test]
    fn misfire_policies_after_downtime() {
        // Hourly; the server comes back at 05:30, after fires at 01..05.
        let back = at("2030-01-01T05:30:00Z");
        let all = schedule("0 * * * *", Misfire::RunAll).due(back, back);
        assert_eq!(all.0.len(), 5);
        assert_eq!(all.0[0], at("2030-01-01T01:00:00Z"));
        assert_eq!(all.1, Some(at("2030-01-01T06:00:00Z")));
        assert_eq!(
            schedule("0 * * * *", Misfire::RunOnce).due(back, back).0,
            vec![at("2030-01-01T05:00:00Z")]
        );
        assert!(
            schedule("0 * * * *", Misfire::Skip)
                .due(back, back)
                .0
                .is_empty()
        );
        // On time, every policy fires once.
        let now = at("2030-01-01T01:00:00.003Z");
        let up = at("2030-01-01T00:00:00Z");
        for m in [Misfire::Skip, Misfire::RunOnce, Misfire::RunAll] {
            assert_eq!(
                schedule("0 * * * *", m).due(now, up).0,
                vec![at("2030-01-01T01:00:00Z")]
            );
        }
    }

    #[test]
    fn a_server_that_was_up_but_behind_runs_every_slot() {
        // Per-second schedule, server up since midnight, its tick 10 s late: not a misfire.
        let now = at("2030-01-01T00:00:10Z");
        for m in [Misfire::Skip, Misfire::RunOnce, Misfire::RunAll] {
            let (runs, _) = schedule("* * * * * *", m).due(now, at("2030-01-01T00:00:00Z"));
            assert_eq!(runs.len(), 10, "{m:?}");
        }
        // Down until 00:00:10: slots more than 5 s old are missed, newer ones on time.
        let (runs, _) = schedule("* * * * * *", Misfire::Skip).due(now, now);
        assert_eq!(
            runs.first(),
            Some(&at("2030-01-01T00:00:05Z")),
            "within the grace"
        );
        assert_eq!(runs.len(), 6);
    }

    #[test]
    fn run_all_is_capped_to_the_most_recent() {
        let s = schedule("* * * * * *", Misfire::RunAll);
        let t = at("2030-01-01T01:00:00Z");
        let (runs, _) = s.due(t, t);
        assert_eq!(runs.len(), MAX_CATCH_UP);
        assert_eq!(*runs.last().unwrap(), at("2030-01-01T01:00:00Z"));
        assert!(runs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn invalid_requests_name_fields() {
        let bad = ScheduleRequest {
            name: "".into(),
            cron: "61 * * * *".into(),
            timezone: Some("Mars/Olympus".into()),
            job: JobTemplateRequest {
                kind: "".into(),
                ..Default::default()
            },
            ..Default::default()
        }
        .validate(
            Uuid::now_v7(),
            at("2030-01-01T00:00:00Z"),
            &Limits::default(),
        )
        .unwrap_err();
        let fields: Vec<&str> = bad.0.iter().map(|e| e.field.as_str()).collect();
        for f in ["name", "cron", "timezone", "job.kind"] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
    }

    #[test]
    fn patch_retimes_only_on_timing_changes() {
        let s = schedule("0 * * * *", Misfire::RunOnce);
        let later = at("2030-01-01T00:30:00Z");
        let renamed = s
            .patch(
                SchedulePatch {
                    name: Some("t".into()),
                    ..Default::default()
                },
                later,
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(renamed.next_run_at, s.next_run_at);
        let retimed = s
            .patch(
                SchedulePatch {
                    cron: Some("*/10 * * * *".into()),
                    ..Default::default()
                },
                later,
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(retimed.next_run_at, Some(at("2030-01-01T00:40:00Z")));
        let off = s
            .patch(
                SchedulePatch {
                    active: Some(false),
                    ..Default::default()
                },
                later,
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(off.next_run_at, None);
    }

    #[test]
    fn a_schedule_that_no_longer_parses_is_deactivated_not_due_forever() {
        let mut s = schedule("0 * * * *", Misfire::RunOnce);
        s.timezone = "Atlantis/Capital".into();
        let runs = s.fire(at("2030-01-01T05:00:00Z"), at("2030-01-01T00:00:00Z"));
        assert!(runs.is_empty());
        assert!(!s.active);
        assert_eq!(s.next_run_at, None, "no longer due");
        assert!(s.last_error.as_deref().unwrap().contains("Atlantis"));
        // Fixing the zone clears the error.
        let fixed = s
            .patch(
                SchedulePatch {
                    timezone: Some("UTC".into()),
                    active: Some(true),
                    ..Default::default()
                },
                at("2030-01-01T05:30:00Z"),
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(fixed.last_error, None);
        assert_eq!(fixed.next_run_at, Some(at("2030-01-01T06:00:00Z")));
    }

    #[test]
    fn names_are_display_names() {
        assert!(check_schedule_name("Daily Email Notification").is_ok());
        assert!(check_schedule_name("Rapport für Zürich, 09:00").is_ok());
        assert!(check_schedule_name(&"é".repeat(200)).is_ok());
        assert!(check_schedule_name(&"é".repeat(201)).is_err());
        assert!(check_schedule_name("").is_err());
        assert!(check_schedule_name("tab\there").is_err());
    }

    #[test]
    fn overlap_and_run_records() {
        let mut s = schedule("0 * * * *", Misfire::RunOnce);
        let never = || -> Result<bool, ()> { panic!("not asked under overlap: allow") };
        assert_eq!(s.admits_run(false, never), Ok(true));
        s.overlap = Overlap::Skip;
        assert_eq!(s.admits_run(false, || Ok::<_, ()>(true)), Ok(false));
        assert_eq!(s.admits_run(false, || Ok::<_, ()>(false)), Ok(true));
        assert_eq!(
            s.admits_run(true, || Ok::<_, ()>(true)),
            Ok(true),
            "a trigger always runs"
        );
        s.record_run(at("2030-01-01T02:00:00Z"));
        s.record_run(at("2030-01-01T01:00:00Z"));
        assert_eq!(s.last_run_at, Some(at("2030-01-01T02:00:00Z")));
    }

    #[test]
    fn preview_shows_utc_and_local() {
        let p = PreviewRequest {
            cron: "0 9 * * 1-5".into(),
            timezone: Some("Europe/Berlin".into()),
            count: Some(2),
            after: Some(at("2026-11-20T12:00:00Z")),
            ..Default::default()
        }
        .run(at("2000-01-01T00:00:00Z"))
        .unwrap();
        assert_eq!(
            p.times,
            vec![at("2026-11-23T08:00:00Z"), at("2026-11-24T08:00:00Z")]
        );
        assert_eq!(p.local_times[0], "2026-11-23T09:00:00+01:00");
    }
}
