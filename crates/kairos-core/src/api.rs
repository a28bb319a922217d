//! The JSON shapes of the v1 API, shared by the server and clients, and their validation
//! into domain values. Unknown fields are refused (`deny_unknown_fields`); a field left
//! out takes the documented default.

use crate::backoff::Backoff;
use crate::duration::Duration;
use crate::job::{Job, JobState, NewJob};
use crate::machine::Outcome;
use crate::problem::ProblemCode;
use crate::queue::{Queue, QueueChange};
use crate::rate::Rate;
use crate::validate::{self, Checker, Invalid, Limits};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// `POST /v1/jobs` body (and one element of a batch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueueRequest {
    /// Queue name, default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[A-Za-z0-9_.:-]{1,128}$",
            max_length = 128,
            example = "email"
        )
    )]
    pub queue: Option<String>,
    /// Required.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[A-Za-z0-9_.:-]{1,128}$",
            max_length = 128,
            example = "send_welcome"
        )
    )]
    pub kind: String,
    /// Any JSON value, default `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<RawValue>>,
    /// -100..=100, default 0.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = -100, maximum = 100))]
    pub priority: Option<i32>,
    /// Absolute time to run (not with `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
    /// Run after this long (not with `run_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Default 3.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub max_attempts: Option<u32>,
    /// Default exponential 2s ×2 up to 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// De-duplication key among unfinished jobs of the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub unique_key: Option<String>,
    /// Labels, default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub tags: Option<Vec<String>>,
}

/// The default queue's name.
pub const DEFAULT_QUEUE: &str = "default";
/// The default lease length per attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default attempts per job.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The default heartbeat extension.
pub const DEFAULT_EXTEND: Duration = Duration::from_secs(30);

impl EnqueueRequest {
    /// Checks every field, naming problems under `prefix` (`""` or `jobs[3].`).
    pub fn validate(self, prefix: &str, limits: &Limits) -> Result<NewJob, Invalid> {
        let mut c = Checker::new(prefix);
        let queue = self.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        c.name("queue", &queue);
        c.name("kind", &self.kind);
        let payload = self
            .payload
            .unwrap_or_else(|| RawValue::from_string("{}".to_string()).expect("valid JSON"));
        if payload.get().len() > limits.max_payload_bytes {
            c.too_large(
                "payload",
                format!("is larger than {} bytes", limits.max_payload_bytes),
            );
        } else {
            c.json_depth("payload", payload.get());
        }
        let priority = self.priority.unwrap_or(0);
        if !validate::PRIORITY_RANGE.contains(&priority) {
            c.invalid("priority", "must be from -100 to 100");
        }
        if self.run_at.is_some() && self.delay.is_some() {
            c.invalid("delay", "give run_at or delay, not both");
        }
        if let Some(d) = self.delay {
            c.duration("delay", d, Duration::ZERO, validate::MAX_DELAY);
        }
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=validate::MAX_ATTEMPTS).contains(&max_attempts) {
            c.invalid(
                "max_attempts",
                format!("must be from 1 to {}", validate::MAX_ATTEMPTS),
            );
        }
        let backoff = self.backoff.unwrap_or_default();
        for (field, message) in backoff.problems() {
            c.invalid(&format!("backoff.{field}"), message);
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        c.duration(
            "timeout",
            timeout,
            Duration::from_millis(1),
            validate::MAX_LEASE,
        );
        if let Some(key) = &self.unique_key
            && (key.is_empty() || key.len() > validate::MAX_UNIQUE_KEY_LEN)
        {
            c.invalid(
                "unique_key",
                format!("must be 1 to {} bytes", validate::MAX_UNIQUE_KEY_LEN),
            );
        }
        let tags = self.tags.unwrap_or_default();
        if tags.len() > validate::MAX_TAGS {
            c.invalid("tags", format!("at most {} tags", validate::MAX_TAGS));
        }
        for (i, tag) in tags.iter().enumerate() {
            if tag.is_empty() || tag.len() > validate::MAX_NAME_LEN {
                c.invalid(
                    &format!("tags[{i}]"),
                    format!("must be 1 to {} bytes", validate::MAX_NAME_LEN),
                );
            }
        }
        c.finish()?;
        Ok(NewJob {
            queue,
            kind: self.kind,
            payload,
            priority,
            run_at: self.run_at,
            delay: self.delay,
            max_attempts,
            backoff,
            timeout,
            unique_key: self.unique_key,
            tags,
            schedule_id: None,
            scheduled_for: None,
            trace: None,
        })
    }
}

/// `POST /v1/jobs/batch` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRequest {
    /// 1 to 1000 jobs, created all or none.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub jobs: Vec<EnqueueRequest>,
}

impl BatchRequest {
    /// Checks every job; any problem refuses the whole batch.
    pub fn validate(self, limits: &Limits) -> Result<Vec<NewJob>, Invalid> {
        if self.jobs.is_empty() || self.jobs.len() > validate::MAX_BATCH {
            return Err(Invalid::field(
                "jobs",
                format!("must hold 1 to {} jobs", validate::MAX_BATCH),
            ));
        }
        let mut errors = Vec::new();
        let mut out = Vec::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.into_iter().enumerate() {
            match job.validate(&format!("jobs[{i}]."), limits) {
                Ok(j) => out.push(j),
                Err(Invalid(e)) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(Invalid(errors))
        }
    }
}

/// Answer of `POST /v1/jobs/batch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobBatch {
    /// The jobs, in request order.
    pub jobs: Vec<Job>,
}

/// Lean answer of `POST /v1/jobs/batch` with `Prefer: return=minimal`: for producers that
/// need no echo of the jobs (rendering 1,000 whole jobs is a fifth of the server's cost
/// of the batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobBatchMinimal {
    /// The jobs, in request order.
    pub jobs: Vec<EnqueuedJob>,
}

/// One job of a [`JobBatchMinimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueuedJob {
    pub id: Uuid,
    pub state: JobState,
    /// `false`: an unfinished job of the queue held the same `unique_key`; this is that
    /// job.
    pub created: bool,
}

impl EnqueuedJob {
    /// The lean form of `job` (`created`: made by this request).
    pub fn of(job: &Job, created: bool) -> EnqueuedJob {
        EnqueuedJob {
            id: job.id,
            state: job.state,
            created,
        }
    }
}

/// Answer of `GET /v1/jobs`: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/lease` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRequest {
    /// Queues to take from (at least one).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100, example = json!(["email"])))]
    pub queues: Vec<String>,
    /// The worker's name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, example = "worker-1")
    )]
    pub worker: String,
    /// Most jobs to take, default 1, up to 1000.
    #[serde(
        default,
        deserialize_with = "crate::int::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max: Option<u32>,
    /// Long-poll up to this long for jobs, default 0s, up to 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    /// Lease length; default each job's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Duration>,
}

/// A validated lease request.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// Queues to take from, without repeats.
    pub queues: Vec<String>,
    /// The worker's name.
    pub worker: String,
    /// Most jobs to take.
    pub max: u32,
    /// How long to wait for jobs.
    pub wait: Duration,
    /// Lease length override.
    pub lease: Option<Duration>,
}

impl LeaseRequest {
    /// Checks every field.
    pub fn validate(self) -> Result<LeaseSpec, Invalid> {
        let mut c = Checker::new("");
        let mut queues: Vec<String> = Vec::with_capacity(self.queues.len());
        if self.queues.is_empty() {
            c.invalid("queues", "name at least one queue");
        } else if self.queues.len() > validate::MAX_LEASE_QUEUES {
            // Not even looked at one by one: the request is refused as a whole.
            c.invalid(
                "queues",
                format!("name at most {} queues", validate::MAX_LEASE_QUEUES),
            );
        } else {
            let mut seen = std::collections::HashSet::with_capacity(self.queues.len());
            for (i, q) in self.queues.into_iter().enumerate() {
                c.name(&format!("queues[{i}]"), &q);
                if seen.insert(q.clone()) {
                    queues.push(q);
                }
            }
        }
        c.worker("worker", &self.worker);
        let max = self.max.unwrap_or(1);
        if !(1..=validate::MAX_LEASE_MAX).contains(&max) {
            c.invalid(
                "max",
                format!("must be from 1 to {}", validate::MAX_LEASE_MAX),
            );
        }
        let wait = self.wait.unwrap_or(Duration::ZERO);
        c.duration("wait", wait, Duration::ZERO, validate::MAX_WAIT);
        if let Some(l) = self.lease {
            c.duration("lease", l, Duration::from_millis(1), validate::MAX_LEASE);
        }
        c.finish()?;
        Ok(LeaseSpec {
            queues,
            worker: self.worker,
            max,
            wait,
            lease: self.lease,
        })
    }
}

/// A job handed to a worker: the job's fields plus `lease_token` and `lease_expires_at`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasedJob {
    /// The job, as leased.
    #[serde(flatten)]
    pub job: Job,
    /// The token to ack and heartbeat with.
    pub lease_token: Uuid,
    /// When the lease runs out by the store's clock.
    pub lease_expires_at: Timestamp,
}

impl<'de> Deserialize<'de> for LeasedJob {
    /// Reads the flat object twice (as a job, then for the lease fields): `flatten` cannot
    /// carry the raw payload through serde's buffering. Needs a `serde_json` deserializer.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct LeaseFields {
            lease_token: Uuid,
            lease_expires_at: Timestamp,
        }
        let raw = Box::<RawValue>::deserialize(d)?;
        let job: Job = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        let lease: LeaseFields = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(LeasedJob {
            job,
            lease_token: lease.lease_token,
            lease_expires_at: lease.lease_expires_at,
        })
    }
}

/// What a worker reports in an ack item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OutcomeKind {
    /// Done.
    Completed,
    /// Failed.
    Failed,
}

/// `POST /v1/ack` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckRequest {
    /// The worker's name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub worker: String,
    /// One item per lease, up to 1000.
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub results: Vec<AckItem>,
}

/// One lease's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckItem {
    /// The job.
    pub id: Uuid,
    /// The lease being reported.
    pub lease_token: Uuid,
    /// `completed` or `failed`.
    pub outcome: OutcomeKind,
    /// With `completed`: a result to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
    /// With `failed`: what went wrong (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub error: Option<String>,
    /// With `failed`: `false` sends the job to dead at once. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// With `failed`: wait this long instead of the backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in: Option<Duration>,
}

impl AckItem {
    /// A `completed` report with no result.
    pub fn completed(id: Uuid, lease_token: Uuid) -> AckItem {
        AckItem {
            id,
            lease_token,
            outcome: OutcomeKind::Completed,
            result: None,
            error: None,
            retry: None,
            retry_in: None,
        }
    }
}

/// A validated ack item.
#[derive(Debug, Clone)]
pub struct AckReport {
    /// The job.
    pub id: Uuid,
    /// The lease being reported.
    pub lease_token: Uuid,
    /// What happened.
    pub outcome: Outcome,
}

impl AckRequest {
    /// Checks every item; any problem refuses the whole request.
    pub fn validate(self, limits: &Limits) -> Result<(String, Vec<AckReport>), Invalid> {
        let mut c = Checker::new("");
        c.worker("worker", &self.worker);
        if self.results.len() > validate::MAX_BATCH {
            c.invalid("results", format!("at most {} items", validate::MAX_BATCH));
        }
        let mut out = Vec::with_capacity(self.results.len());
        for (i, item) in self.results.into_iter().enumerate() {
            let f = |name: &str| format!("results[{i}].{name}");
            let outcome = match item.outcome {
                OutcomeKind::Completed => {
                    for (present, name) in [
                        (item.error.is_some(), "error"),
                        (item.retry.is_some(), "retry"),
                        (item.retry_in.is_some(), "retry_in"),
                    ] {
                        if present {
                            c.invalid(&f(name), "only goes with outcome \"failed\"");
                        }
                    }
                    if let Some(r) = &item.result {
                        if r.get().len() > limits.max_payload_bytes {
                            c.too_large(
                                &f("result"),
                                format!("is larger than {} bytes", limits.max_payload_bytes),
                            );
                        } else {
                            c.json_depth(&f("result"), r.get());
                        }
                    }
                    Outcome::Completed {
                        result: item.result,
                    }
                }
                OutcomeKind::Failed => {
                    if item.result.is_some() {
                        c.invalid(&f("result"), "only goes with outcome \"completed\"");
                    }
                    if let Some(d) = item.retry_in {
                        c.duration(
                            &f("retry_in"),
                            d,
                            Duration::ZERO,
                            Duration::from_secs(30 * 86_400),
                        );
                    }
                    let error = match item.error {
                        Some(e) if e.is_empty() => {
                            c.invalid(&f("error"), "must say what went wrong (not empty)");
                            e
                        }
                        Some(e) => truncate(e, validate::MAX_ERROR_LEN),
                        None => {
                            c.invalid(&f("error"), "is required with outcome \"failed\"");
                            String::new()
                        }
                    };
                    Outcome::Failed {
                        error,
                        retry: item.retry.unwrap_or(true),
                        retry_in: item.retry_in,
                    }
                }
            };
            out.push(AckReport {
                id: item.id,
                lease_token: item.lease_token,
                outcome,
            });
        }
        c.finish()?;
        Ok((self.worker, out))
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// An RFC 9457 problem, as answered for a request or for one item of an ack or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, fixed summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Per-field problems for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// The request's id (its `X-Request-Id`), to find it in the server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem of `code` with the code's status and title.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: code.type_uri(),
            title: code.title().to_string(),
            status: code.status(),
            detail: detail.into(),
            errors: Vec::new(),
            request_id: None,
        }
    }

    /// The problem's code, when its `type` is one of Kairos's.
    pub fn code(&self) -> Option<ProblemCode> {
        ProblemCode::from_type_uri(&self.kind)
    }
}

/// One field's problem in a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProblemField {
    /// The field's path, like `jobs[3].kind`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// One item of an ack answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckResult {
    /// The job.
    pub id: Uuid,
    /// Accepted (applied or a harmless repeat).
    pub ok: bool,
    /// The job's state after the ack, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// `POST /v1/heartbeat` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatRequest {
    /// The worker's name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub worker: String,
    /// Leases to extend, up to 1000.
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub leases: Vec<HeartbeatItem>,
}

/// One lease to extend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatItem {
    /// The job.
    pub id: Uuid,
    /// The lease.
    pub lease_token: Uuid,
    /// New lease length from now, default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend: Option<Duration>,
}

/// A validated heartbeat item.
#[derive(Debug, Clone, Copy)]
pub struct Extension {
    /// The job.
    pub id: Uuid,
    /// The lease.
    pub lease_token: Uuid,
    /// New lease length from now.
    pub extend: Duration,
}

impl HeartbeatRequest {
    /// Checks every item.
    pub fn validate(self) -> Result<(String, Vec<Extension>), Invalid> {
        let mut c = Checker::new("");
        c.worker("worker", &self.worker);
        if self.leases.len() > validate::MAX_BATCH {
            c.invalid("leases", format!("at most {} items", validate::MAX_BATCH));
        }
        let mut out = Vec::with_capacity(self.leases.len());
        for (i, item) in self.leases.into_iter().enumerate() {
            let extend = item.extend.unwrap_or(DEFAULT_EXTEND);
            c.duration(
                &format!("leases[{i}].extend"),
                extend,
                Duration::from_millis(1),
                validate::MAX_LEASE,
            );
            out.push(Extension {
                id: item.id,
                lease_token: item.lease_token,
                extend,
            });
        }
        c.finish()?;
        Ok((self.worker, out))
    }
}

/// One item of a heartbeat answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResult {
    /// The job.
    pub id: Uuid,
    /// Extended.
    pub ok: bool,
    /// The new expiry, when extended.
    pub lease_expires_at: Option<Timestamp>,
    /// Someone asked to cancel the job: stop working on it.
    pub cancel_requested: Option<bool>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// `PATCH /v1/queues/{name}` body: any of the fields; a limit given as `null` is removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuePatch {
    /// Pause or resume leasing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Most unfinished jobs; past it enqueues answer 503 with `Retry-After`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, nullable, minimum = 1, maximum = 1_000_000_000))]
    pub max_depth: Option<Option<u64>>,
    /// Most running jobs at once, across all workers.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 1_000_000))]
    pub concurrency: Option<Option<u32>>,
    /// Most jobs leased per second, minute or hour: `"100/s"`, `"10/m"`, `"500/h"`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, pattern = r"^[0-9]+/[smh]$", example = "100/s"))]
    pub rate: Option<Option<String>>,
}

/// A field that is there, `null` or not: `Some(None)` for `null`.
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl QueuePatch {
    /// Checks every field.
    pub fn validate(self) -> Result<QueueChange, Invalid> {
        let mut c = Checker::new("");
        let rate = match self.rate {
            Some(Some(text)) => match text.parse::<Rate>() {
                Ok(r) => Some(Some(r)),
                Err(m) => {
                    c.invalid("rate", m);
                    None
                }
            },
            Some(None) => Some(None),
            None => None,
        };
        c.finish()?;
        QueueChange {
            paused: self.paused,
            max_depth: self.max_depth,
            concurrency: self.concurrency,
            rate,
        }
        .checked()
    }
}

/// A Kairos server process sharing the store (`GET /v1/cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterNode {
    /// Chosen by the process at start.
    pub id: Uuid,
    /// The address it advertises (`--advertise`, default its listening address).
    pub address: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it last said it is alive, by the store's clock.
    pub last_seen_at: Timestamp,
    /// It runs the background duties (lease expiry, promotion, cron, pruning) now.
    pub leader: bool,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cluster {
    /// Every node seen in the last hour, oldest first.
    pub nodes: Vec<ClusterNode>,
}

pub use crate::worker::{WORKER_FORGOTTEN_AFTER, WORKER_OFFLINE_AFTER, WorkerState};

/// A worker the server has heard from (`GET /v1/workers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// The name it leases, acks and heartbeats with.
    pub name: String,
    /// The queues its leases named.
    pub queues: Vec<String>,
    /// From its `X-Kairos-Worker-Hostname` header, when it sends one.
    pub hostname: Option<String>,
    /// From its `X-Kairos-Worker-Version` header, when it sends one.
    pub version: Option<String>,
    /// When this server first heard from it.
    pub started_at: Timestamp,
    /// When this server last heard from it.
    pub last_seen_at: Timestamp,
    /// Jobs it holds leased now.
    pub running: u64,
    /// `online` or `offline`.
    pub state: WorkerState,
}

/// `GET /v1/workers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// Every worker heard from in the last 24 hours, most recently seen first.
    pub workers: Vec<WorkerInfo>,
}

/// `GET /v1/queues` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueList {
    /// Every known queue, by name.
    pub queues: Vec<Queue>,
}

/// `GET /v1/jobs` query string. An empty parameter (`?queue=&state=`) means "not given".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this queue.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub queue: Option<String>,
    /// Only this state.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(
        feature = "openapi",
        param(pattern = r"^(|scheduled|available|running|retryable|completed|dead|cancelled)$")
    )]
    pub state: Option<String>,
    /// Only this kind.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub kind: Option<String>,
    /// Only runs of this schedule (its id, a UUID; documented without a format since an
    /// empty parameter means "not given").
    #[serde(default, deserialize_with = "empty_as_none")]
    pub schedule_id: Option<String>,
    /// Page size, default 50, up to 500 (documented as a digit string that may be empty,
    /// since an empty parameter means "not given").
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(
        feature = "openapi",
        param(value_type = Option<String>, pattern = r"^\+?[0-9]*$")
    )]
    pub limit: Option<u32>,
    /// Where the previous page ended.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cursor: Option<String>,
    /// Only jobs whose id is this, or whose kind, unique key or a tag contains it
    /// (case-sensitive), 1 to 128 bytes. A page of a search looks at the newest 10,000
    /// jobs the other filters allow: it may hold fewer than `limit` jobs and still have a
    /// `next_cursor`, which goes on from where it stopped looking.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[cfg_attr(feature = "openapi", param(max_length = 128))]
    pub q: Option<String>,
}

/// A job search (`q` of a listing): a job matches when `id` is its id, or its kind, its
/// unique key or one of its tags contains `text`. Backends implement [`JobSearch::matches`]
/// in SQL; the conformance suite holds them to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSearch {
    /// The text, as given.
    pub text: String,
    /// The text as a job id, when it is one.
    pub id: Option<Uuid>,
}

impl JobSearch {
    /// A search for `text`.
    pub fn new(text: &str) -> JobSearch {
        JobSearch {
            text: text.to_string(),
            id: Uuid::parse_str(text).ok(),
        }
    }

    /// Whether `job` matches.
    pub fn matches(&self, job: &Job) -> bool {
        let t = self.text.as_str();
        self.id == Some(job.id)
            || job.kind.contains(t)
            || job.unique_key.as_deref().is_some_and(|k| k.contains(t))
            || job.tags.iter().any(|tag| tag.contains(t))
    }
}

/// Reads a query parameter, taking an empty value as absent.
pub fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A validated job listing request.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs that read as this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only runs of this schedule.
    pub schedule_id: Option<Uuid>,
    /// Page size.
    pub limit: u32,
    /// Opaque position from a previous page.
    pub cursor: Option<String>,
    /// Only jobs matching this search (pages look at most
    /// [`validate::MAX_SEARCH_SCAN`] jobs each).
    pub search: Option<JobSearch>,
}

impl EnqueueRequest {
    /// The request that enqueues a job like `job` again, to run now: its queue, kind,
    /// payload, priority, attempts, backoff, timeout, unique key and tags.
    pub fn recreating(job: Job) -> EnqueueRequest {
        EnqueueRequest {
            queue: Some(job.queue),
            kind: job.kind,
            payload: Some(job.payload),
            priority: Some(job.priority),
            max_attempts: Some(job.max_attempts),
            backoff: Some(job.backoff),
            timeout: Some(job.timeout),
            unique_key: job.unique_key,
            tags: (!job.tags.is_empty()).then_some(job.tags),
            ..EnqueueRequest::default()
        }
    }
}

impl ListQuery {
    /// Checks every parameter.
    pub fn validate(self) -> Result<JobFilter, Invalid> {
        let mut c = Checker::new("");
        if let Some(q) = &self.queue {
            c.name("queue", q);
        }
        if let Some(k) = &self.kind {
            c.name("kind", k);
        }
        let state = match self.state.as_deref().map(str::parse::<JobState>) {
            Some(Ok(s)) => Some(s),
            Some(Err(m)) => {
                c.invalid("state", m);
                None
            }
            None => None,
        };
        let schedule_id = match self.schedule_id.as_deref().map(Uuid::parse_str) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                c.invalid("schedule_id", "must be a schedule id (a UUID)");
                None
            }
            None => None,
        };
        if let Some(q) = &self.q
            && (q.len() > validate::MAX_SEARCH_LEN || q.chars().any(char::is_control))
        {
            c.invalid(
                "q",
                format!(
                    "must be 1 to {} bytes without control characters",
                    validate::MAX_SEARCH_LEN
                ),
            );
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=validate::MAX_LIST_LIMIT).contains(&limit) {
            c.invalid(
                "limit",
                format!("must be from 1 to {}", validate::MAX_LIST_LIMIT),
            );
        }
        c.finish()?;
        Ok(JobFilter {
            queue: self.queue,
            state,
            kind: self.kind,
            schedule_id,
            limit,
            cursor: self.cursor,
            search: self.q.as_deref().map(JobSearch::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn enqueue_defaults() {
        let r: EnqueueRequest = parse(r#"{"kind":"email"}"#);
        let j = r.validate("", &Limits::default()).unwrap();
        assert_eq!(j.queue, "default");
        assert_eq!(j.payload.get(), "{}");
        assert_eq!(j.max_attempts, 3);
        assert_eq!(j.timeout, Duration::from_secs(30));
        assert_eq!(j.backoff, Backoff::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<EnqueueRequest>(r#"{"kind":"x","colour":1}"#).is_err());
        assert!(
            serde_json::from_str::<EnqueueRequest>(r#"{"kind":"x","backoff":{"colour":1}}"#)
                .is_err()
        );
    }

    #[test]
    fn run_at_and_delay_together_names_delay() {
        let r: EnqueueRequest =
            parse(r#"{"kind":"x","run_at":"2030-01-01T00:00:00Z","delay":"5s"}"#);
        let e = r.validate("", &Limits::default()).unwrap_err();
        assert_eq!(e.0[0].field, "delay");
    }

    #[test]
    fn batch_names_the_job() {
        let r: BatchRequest = parse(r#"{"jobs":[{"kind":"ok"},{"kind":"bad name"}]}"#);
        let e = r.validate(&Limits::default()).unwrap_err();
        assert_eq!(e.0[0].field, "jobs[1].kind");
    }

    #[test]
    fn payload_limit_is_too_large() {
        let r: EnqueueRequest = parse(r#"{"kind":"x","payload":"0123456789"}"#);
        let e = r
            .validate(
                "",
                &Limits {
                    max_payload_bytes: 5,
                },
            )
            .unwrap_err();
        assert!(e.is_too_large());
    }

    #[test]
    fn failed_ack_needs_an_error() {
        let id = Uuid::now_v7();
        let r: AckRequest = parse(&format!(
            r#"{{"worker":"w","results":[{{"id":"{id}","lease_token":"{id}","outcome":"failed"}}]}}"#
        ));
        let e = r.validate(&Limits::default()).unwrap_err();
        assert_eq!(e.0[0].field, "results[0].error");
    }

    #[test]
    fn a_recreating_request_makes_the_same_job() {
        let req: EnqueueRequest = parse(
            r#"{"queue":"q","kind":"k","payload":{"a":1},"priority":-3,"max_attempts":9,
                "backoff":{"type":"fixed","base":"5s"},"timeout":"2m","unique_key":"u",
                "tags":["t"],"delay":"1h"}"#,
        );
        let job = Job::new(
            req.validate("", &Limits::default()).unwrap(),
            Uuid::now_v7(),
            Timestamp::UNIX_EPOCH,
        );
        let again = Job::new(
            EnqueueRequest::recreating(job.clone())
                .validate("", &Limits::default())
                .unwrap(),
            Uuid::now_v7(),
            Timestamp::UNIX_EPOCH,
        );
        let kept = |j: &Job| {
            (
                j.queue.clone(),
                j.kind.clone(),
                j.payload.get().to_string(),
                j.priority,
                j.max_attempts,
                j.backoff.clone(),
                j.timeout,
                j.unique_key.clone(),
                j.tags.clone(),
            )
        };
        assert_eq!(kept(&again), kept(&job));
        // It runs now, not after the first one's delay.
        assert_eq!(again.run_at, Timestamp::UNIX_EPOCH);
    }
}
