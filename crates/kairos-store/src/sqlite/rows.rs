//! Mapping between `jobs` rows and [`Job`]: the only place that knows the column layout.

use crate::{StoreError, stored};
use kairos_core::{Duration, Job, JobState, Lease, RawValue, Reported, Timestamp};
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

/// What a job read brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Every column.
    Full,
    /// `null` for the payload: for transitions that neither need nor answer it (ack,
    /// heartbeat, expiry, promotion), so a 1 MiB payload is not copied and re-validated on
    /// every report. [`save_job`] never writes the payload back.
    WithoutPayload,
}

/// Columns read for a job, in the order [`job_from_row`] expects.
pub(crate) const JOB_COLUMNS: &str = job_columns!("payload");

const BY_ID: [&str; 2] = [
    concat!(
        "SELECT ",
        job_columns!("payload"),
        " FROM jobs WHERE id = ?1"
    ),
    concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE id = ?1"
    ),
];
const BY_SEQ: [&str; 2] = [
    concat!(
        "SELECT ",
        job_columns!("payload"),
        " FROM jobs WHERE seq = ?1"
    ),
    concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE seq = ?1"
    ),
];

/// One job by its public id.
pub(crate) fn job_by_id(
    conn: &rusqlite::Connection,
    id: Uuid,
    read: Read,
) -> Result<Option<StoredJob>, StoreError> {
    Ok(conn
        .prepare_cached(BY_ID[read as usize])?
        .query_row([id.as_bytes()], job_from_row)
        .optional()?)
}

/// One job by its internal key.
pub(crate) fn job_by_seq(
    conn: &rusqlite::Connection,
    seq: i64,
    read: Read,
) -> Result<StoredJob, StoreError> {
    Ok(conn
        .prepare_cached(BY_SEQ[read as usize])?
        .query_row([seq], job_from_row)?)
}

/// Microseconds since the epoch: the stored form of every time.
pub(crate) fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// A stored time back as a timestamp.
pub(crate) fn ts(us: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| bad(12, e))
}

fn bad(col: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
}

fn uuid(bytes: Vec<u8>, col: usize) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(&bytes).map_err(|e| bad(col, e))
}

/// A text column, borrowed from the row.
fn text<'r>(r: &'r Row<'_>, col: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(col)?.as_str().map_err(|e| bad(col, e))
}

fn raw(text: String, col: usize) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| bad(col, e))
}

/// A job row: its internal key, the job, and the state as stored (the job's `state`
/// field may be changed by transitions before it is saved).
#[derive(Clone)]
pub(crate) struct StoredJob {
    pub seq: i64,
    pub stored_state: JobState,
    pub job: Job,
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(crate) fn job_from_row(r: &Row<'_>) -> rusqlite::Result<StoredJob> {
    let state_code: u8 = r.get(6)?;
    let state = JobState::from_code(state_code)
        .ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(6, state_code as i64))?;
    let lease = match r.get::<_, Option<Vec<u8>>>(20)? {
        Some(token) => Some(Lease {
            token: uuid(token, 20)?,
            worker: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
            expires_at: ts(r.get(22)?)?,
            reported: r.get::<_, Option<u8>>(23)?.and_then(Reported::from_code),
        }),
        None => None,
    };
    let job = Job {
        id: uuid(r.get(1)?, 1)?,
        queue: r.get(2)?,
        kind: r.get(3)?,
        payload: raw(r.get(4)?, 4)?,
        priority: r.get(5)?,
        state,
        attempt: r.get(7)?,
        max_attempts: r.get(8)?,
        run_at: ts(r.get(9)?)?,
        created_at: ts(r.get(10)?)?,
        started_at: r.get::<_, Option<i64>>(11)?.map(ts).transpose()?,
        finished_at: r.get::<_, Option<i64>>(12)?.map(ts).transpose()?,
        unique_key: r.get(13)?,
        tags: stored::list(text(r, 14)?).map_err(|e| bad(14, e))?,
        errors: stored::list(text(r, 15)?).map_err(|e| bad(15, e))?,
        result: r
            .get::<_, Option<String>>(16)?
            .map(|t| raw(t, 16))
            .transpose()?,
        timeout: Duration::from_millis(r.get::<_, i64>(17)? as u64),
        backoff: stored::backoff(text(r, 18)?).map_err(|e| bad(18, e))?,
        cancel_requested: r.get(19)?,
        schedule_id: r
            .get::<_, Option<Vec<u8>>>(24)?
            .map(|b| uuid(b, 24))
            .transpose()?,
        scheduled_for: r.get::<_, Option<i64>>(25)?.map(ts).transpose()?,
        failures: r.get(26)?,
        trace: r
            .get::<_, Option<String>>(27)?
            .map(|t| serde_json::from_str(&t).map_err(|e| bad(27, e)))
            .transpose()?,
        lease,
    };
    Ok(StoredJob {
        seq: r.get(0)?,
        stored_state: state,
        job,
    })
}

/// Inserts a new job row (see [`insert_job`]).
pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs \
     (id, queue, kind, payload, priority, state, attempt, max_attempts, run_at, created_at, \
     started_at, finished_at, unique_key, tags, errors, result, timeout_ms, backoff, \
     cancel_requested, schedule_id, scheduled_for, trace) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, ?11, ?12, '[]', NULL, \
     ?13, ?14, 0, ?15, ?16, ?17)";

/// Writes back a job row after a transition (see [`save_job`]).
pub(crate) const SAVE_JOB: &str = "UPDATE jobs SET \
     state = ?2, attempt = ?3, run_at = ?4, started_at = ?5, finished_at = ?6, errors = ?7, \
     result = ?8, cancel_requested = ?9, lease_token = ?10, lease_worker = ?11, \
     lease_expires_at = ?12, lease_reported = ?13, failures = ?14 WHERE seq = ?1";

/// Inserts a new job; returns its `seq`.
pub(crate) fn insert_job(tx: &rusqlite::Connection, j: &Job) -> Result<i64, StoreError> {
    let mut stmt = tx.prepare_cached(INSERT_JOB)?;
    stmt.execute(params![
        j.id.as_bytes(),
        j.queue,
        j.kind,
        j.payload.get(),
        j.priority,
        j.state.code(),
        j.attempt,
        j.max_attempts,
        us(j.run_at),
        us(j.created_at),
        j.unique_key,
        stored::list_text(&j.tags)?,
        j.timeout.as_millis() as i64,
        stored::backoff_text(&j.backoff)?,
        j.schedule_id.map(|id| id.as_bytes().to_vec()),
        j.scheduled_for.map(us),
        j.trace.as_ref().map(serde_json::to_string).transpose()?,
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Writes back every column a transition may change.
pub(crate) fn save_job(tx: &rusqlite::Connection, seq: i64, j: &Job) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(SAVE_JOB)?;
    let lease = j.lease.as_ref();
    let errors = stored::list_text(&j.errors)?;
    stmt.execute(params![
        seq,
        j.state.code(),
        j.attempt,
        us(j.run_at),
        j.started_at.map(us),
        j.finished_at.map(us),
        errors,
        j.result.as_ref().map(|r| r.get()),
        j.cancel_requested,
        lease.map(|l| l.token.as_bytes().to_vec()),
        lease.map(|l| l.worker.as_str()),
        lease.map(|l| us(l.expires_at)),
        lease.and_then(|l| l.reported).map(|r| r.code()),
        j.failures,
    ])?;
    Ok(())
}
