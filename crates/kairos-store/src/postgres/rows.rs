//! Mapping between `jobs` rows and [`Job`]: the only place that knows the column layout,
//! and the two statements that write whole batches of jobs in one round trip each
//! (`unnest` of one array per column).

use crate::{StoreError, stored};
use kairos_core::{Duration, Job, JobState, Lease, RawValue, Reported, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Every column, in the order [`job_from_row`] expects. Transitions that neither need nor
/// answer the payload (ack, heartbeat, expiry, promotion) read `job_columns!("'null'")`
/// instead, so a 1 MiB payload is not shipped per report; [`SAVE_JOBS`] never writes the
/// payload back.
pub(crate) const JOB_COLUMNS: &str = job_columns!("payload");

/// A job row: its internal key, the job, and the state as stored (the job's `state`
/// field may be changed by transitions before it is saved).
#[derive(Debug, Clone)]
pub(crate) struct StoredJob {
    pub seq: i64,
    pub stored_state: JobState,
    pub job: Job,
}

fn bad(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged(format!("a stored job's {what} does not read: {e}"))
}

fn raw(text: String, what: &str) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(text).map_err(|e| bad(what, e))
}

/// Reads a row selected with [`JOB_COLUMNS`] (or [`JOB_COLUMNS_NO_PAYLOAD`]).
pub(crate) fn job_from_row(r: &Row) -> Result<StoredJob, StoreError> {
    let code: i16 = r.try_get(6)?;
    let state = u8::try_from(code)
        .ok()
        .and_then(JobState::from_code)
        .ok_or_else(|| bad("state", code))?;
    let lease = match r.try_get::<_, Option<Uuid>>(20)? {
        Some(token) => Some(Lease {
            token,
            worker: r.try_get::<_, Option<String>>(21)?.unwrap_or_default(),
            expires_at: r.try_get(22)?,
            reported: r
                .try_get::<_, Option<i16>>(23)?
                .and_then(|c| u8::try_from(c).ok())
                .and_then(Reported::from_code),
        }),
        None => None,
    };
    let attempt: i32 = r.try_get(7)?;
    let max_attempts: i32 = r.try_get(8)?;
    let failures: i32 = r.try_get(26)?;
    let timeout_ms: i64 = r.try_get(17)?;
    let job = Job {
        id: r.try_get(1)?,
        queue: r.try_get(2)?,
        kind: r.try_get(3)?,
        payload: raw(r.try_get(4)?, "payload")?,
        priority: r.try_get(5)?,
        state,
        attempt: attempt.max(0) as u32,
        max_attempts: max_attempts.max(0) as u32,
        run_at: r.try_get(9)?,
        created_at: r.try_get(10)?,
        started_at: r.try_get(11)?,
        finished_at: r.try_get(12)?,
        unique_key: r.try_get(13)?,
        tags: stored::list(r.try_get(14)?).map_err(|e| bad("tags", e))?,
        errors: stored::list(r.try_get(15)?).map_err(|e| bad("errors", e))?,
        result: r
            .try_get::<_, Option<String>>(16)?
            .map(|t| raw(t, "result"))
            .transpose()?,
        timeout: Duration::from_millis(timeout_ms.max(0) as u64),
        backoff: stored::backoff(r.try_get(18)?).map_err(|e| bad("backoff", e))?,
        cancel_requested: r.try_get(19)?,
        schedule_id: r.try_get(24)?,
        scheduled_for: r.try_get(25)?,
        failures: failures.max(0) as u32,
        trace: r
            .try_get::<_, Option<String>>(27)?
            .map(|t| serde_json::from_str(&t).map_err(|e| bad("trace", e)))
            .transpose()?,
        lease,
    };
    Ok(StoredJob {
        seq: r.try_get(0)?,
        stored_state: state,
        job,
    })
}

/// Inserts new jobs (one round trip for the batch), in order; answers `(seq, id)` of each
/// one inserted. A job whose unique key an unfinished job holds, or whose schedule slot
/// has its run, is not inserted (the partial unique indexes decide, for every node).
pub(crate) const INSERT_JOBS: &str = "INSERT INTO jobs (id, queue, kind, payload, priority, state, \
     attempt, max_attempts, run_at, created_at, unique_key, tags, errors, timeout_ms, backoff, \
     cancel_requested, schedule_id, scheduled_for, trace) \
     SELECT id, queue, kind, payload, priority, state, 0, max_attempts, run_at, created_at, \
     unique_key, tags, '[]', timeout_ms, backoff, false, schedule_id, scheduled_for, trace \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::smallint[], \
     $7::int[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::bigint[], \
     $13::text[], $14::uuid[], $15::timestamptz[], $16::text[]) WITH ORDINALITY AS u(id, queue, \
     kind, payload, priority, state, max_attempts, run_at, created_at, unique_key, tags, \
     timeout_ms, backoff, schedule_id, scheduled_for, trace, ord) ORDER BY ord \
     ON CONFLICT DO NOTHING RETURNING seq, id";

/// The columns of new jobs, one array each, for [`INSERT_JOBS`].
#[derive(Default)]
pub(crate) struct NewRows {
    id: Vec<Uuid>,
    queue: Vec<String>,
    kind: Vec<String>,
    payload: Vec<String>,
    priority: Vec<i32>,
    state: Vec<i16>,
    max_attempts: Vec<i32>,
    run_at: Vec<Timestamp>,
    created_at: Vec<Timestamp>,
    unique_key: Vec<Option<String>>,
    tags: Vec<String>,
    timeout_ms: Vec<i64>,
    backoff: Vec<String>,
    schedule_id: Vec<Option<Uuid>>,
    scheduled_for: Vec<Option<Timestamp>>,
    trace: Vec<Option<String>>,
}

impl NewRows {
    pub(crate) fn push(&mut self, j: &Job) -> Result<(), StoreError> {
        self.id.push(j.id);
        self.queue.push(j.queue.clone());
        self.kind.push(j.kind.clone());
        self.payload.push(j.payload.get().to_string());
        self.priority.push(j.priority);
        self.state.push(j.state.code() as i16);
        self.max_attempts
            .push(j.max_attempts.min(i32::MAX as u32) as i32);
        self.run_at.push(j.run_at);
        self.created_at.push(j.created_at);
        self.unique_key.push(j.unique_key.clone());
        self.tags.push(stored::list_text(&j.tags)?);
        self.timeout_ms
            .push(j.timeout.as_millis().min(i64::MAX as u64) as i64);
        self.backoff.push(stored::backoff_text(&j.backoff)?);
        self.schedule_id.push(j.schedule_id);
        self.scheduled_for.push(j.scheduled_for);
        self.trace
            .push(j.trace.as_ref().map(serde_json::to_string).transpose()?);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.id,
            &self.queue,
            &self.kind,
            &self.payload,
            &self.priority,
            &self.state,
            &self.max_attempts,
            &self.run_at,
            &self.created_at,
            &self.unique_key,
            &self.tags,
            &self.timeout_ms,
            &self.backoff,
            &self.schedule_id,
            &self.scheduled_for,
            &self.trace,
        ]
    }
}

/// Writes back every column a transition may change, for a batch of jobs at once.
pub(crate) const SAVE_JOBS: &str = "UPDATE jobs SET state = u.state, attempt = u.attempt, \
     run_at = u.run_at, started_at = u.started_at, finished_at = u.finished_at, \
     errors = u.errors, result = u.result, cancel_requested = u.cancel_requested, \
     lease_token = u.lease_token, lease_worker = u.lease_worker, \
     lease_expires_at = u.lease_expires_at, lease_reported = u.lease_reported, \
     failures = u.failures \
     FROM unnest($1::bigint[], $2::smallint[], $3::int[], $4::timestamptz[], \
     $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::bool[], $10::uuid[], \
     $11::text[], $12::timestamptz[], $13::smallint[], $14::int[]) AS u(seq, state, attempt, \
     run_at, started_at, finished_at, errors, result, cancel_requested, lease_token, \
     lease_worker, lease_expires_at, lease_reported, failures) \
     WHERE jobs.seq = u.seq";

/// The changed columns of saved jobs, one array each, for [`SAVE_JOBS`].
#[derive(Default)]
pub(crate) struct SavedRows {
    seq: Vec<i64>,
    state: Vec<i16>,
    attempt: Vec<i32>,
    run_at: Vec<Timestamp>,
    started_at: Vec<Option<Timestamp>>,
    finished_at: Vec<Option<Timestamp>>,
    errors: Vec<String>,
    result: Vec<Option<String>>,
    cancel_requested: Vec<bool>,
    lease_token: Vec<Option<Uuid>>,
    lease_worker: Vec<Option<String>>,
    lease_expires_at: Vec<Option<Timestamp>>,
    lease_reported: Vec<Option<i16>>,
    failures: Vec<i32>,
}

impl SavedRows {
    pub(crate) fn push(&mut self, seq: i64, j: &Job) -> Result<(), StoreError> {
        let lease = j.lease.as_ref();
        self.seq.push(seq);
        self.state.push(j.state.code() as i16);
        self.attempt.push(j.attempt.min(i32::MAX as u32) as i32);
        self.run_at.push(j.run_at);
        self.started_at.push(j.started_at);
        self.finished_at.push(j.finished_at);
        self.errors.push(stored::list_text(&j.errors)?);
        self.result
            .push(j.result.as_ref().map(|r| r.get().to_string()));
        self.cancel_requested.push(j.cancel_requested);
        self.lease_token.push(lease.map(|l| l.token));
        self.lease_worker.push(lease.map(|l| l.worker.clone()));
        self.lease_expires_at.push(lease.map(|l| l.expires_at));
        self.lease_reported
            .push(lease.and_then(|l| l.reported).map(|r| r.code() as i16));
        self.failures.push(j.failures.min(i32::MAX as u32) as i32);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.seq,
            &self.state,
            &self.attempt,
            &self.run_at,
            &self.started_at,
            &self.finished_at,
            &self.errors,
            &self.result,
            &self.cancel_requested,
            &self.lease_token,
            &self.lease_worker,
            &self.lease_expires_at,
            &self.lease_reported,
            &self.failures,
        ]
    }
}
