//! Mapping between `jobs` rows and [`Job`]: the only place that knows the column layout.

use crate::StoreError;
use kairos_core::{Backoff, Duration, Job, JobState, Lease, RawValue, Reported, Timestamp};
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

/// The column list of a job read, with `$payload` in the payload's place.
macro_rules! job_columns {
    ($payload:literal) => {
        concat!(
            "seq, id, queue, kind, ",
            $payload,
            ", priority, state, attempt, max_attempts, run_at, created_at, started_at, \
             finished_at, unique_key, tags, errors, result, timeout_ms, backoff, \
             cancel_requested, lease_token, lease_worker, lease_expires_at, lease_reported, \
             schedule_id, scheduled_for, failures"
        )
    };
}

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

fn json<T: serde::de::DeserializeOwned>(text: &str, col: usize) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| bad(col, e))
}

/// A stored JSON list; the common empty one without a parser.
fn json_list<T: serde::de::DeserializeOwned>(text: &str, col: usize) -> rusqlite::Result<Vec<T>> {
    if text == "[]" {
        Ok(Vec::new())
    } else {
        json(text, col)
    }
}

/// A stored backoff policy; the default one (most jobs) without a parser.
fn backoff_from(text: &str) -> rusqlite::Result<Backoff> {
    if text == default_backoff_json() {
        Ok(Backoff::default())
    } else {
        json(text, 18)
    }
}

fn default_backoff_json() -> &'static str {
    static DEFAULT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        serde_json::to_string(&Backoff::default()).expect("a backoff renders")
    });
    &DEFAULT
}

fn raw(text: String, col: usize) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| bad(col, e))
}

/// A job row: its internal key, the job, and the state as stored (the job's `state`
/// field may be changed by transitions before it is saved).
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
        tags: json_list(r.get_ref(14)?.as_str().map_err(|e| bad(14, e))?, 14)?,
        errors: json_list(r.get_ref(15)?.as_str().map_err(|e| bad(15, e))?, 15)?,
        result: r
            .get::<_, Option<String>>(16)?
            .map(|t| raw(t, 16))
            .transpose()?,
        timeout: Duration::from_millis(r.get::<_, i64>(17)? as u64),
        backoff: backoff_from(r.get_ref(18)?.as_str().map_err(|e| bad(18, e))?)?,
        cancel_requested: r.get(19)?,
        schedule_id: r
            .get::<_, Option<Vec<u8>>>(24)?
            .map(|b| uuid(b, 24))
            .transpose()?,
        scheduled_for: r.get::<_, Option<i64>>(25)?.map(ts).transpose()?,
        failures: r.get(26)?,
        lease,
    };
    Ok(StoredJob {
        seq: r.get(0)?,
        stored_state: state,
        job,
    })
}

/// The stored form of a backoff policy; most jobs use the default, rendered once.
fn backoff_json(b: &Backoff) -> Result<String, StoreError> {
    if *b == Backoff::default() {
        Ok(default_backoff_json().to_string())
    } else {
        Ok(serde_json::to_string(b)?)
    }
}

/// Inserts a new job; returns its `seq`.
pub(crate) fn insert_job(tx: &rusqlite::Connection, j: &Job) -> Result<i64, StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO jobs (id, queue, kind, payload, priority, state, attempt, max_attempts, \
         run_at, created_at, started_at, finished_at, unique_key, tags, errors, result, \
         timeout_ms, backoff, cancel_requested, schedule_id, scheduled_for) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, ?11, ?12, '[]', NULL, \
         ?13, ?14, 0, ?15, ?16)",
    )?;
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
        if j.tags.is_empty() {
            "[]".to_string()
        } else {
            serde_json::to_string(&j.tags)?
        },
        j.timeout.as_millis() as i64,
        backoff_json(&j.backoff)?,
        j.schedule_id.map(|id| id.as_bytes().to_vec()),
        j.scheduled_for.map(us),
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Writes back every column a transition may change.
pub(crate) fn save_job(tx: &rusqlite::Connection, seq: i64, j: &Job) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE jobs SET state = ?2, attempt = ?3, run_at = ?4, started_at = ?5, \
         finished_at = ?6, errors = ?7, result = ?8, cancel_requested = ?9, \
         lease_token = ?10, lease_worker = ?11, lease_expires_at = ?12, lease_reported = ?13, \
         failures = ?14 WHERE seq = ?1",
    )?;
    let lease = j.lease.as_ref();
    let errors = if j.errors.is_empty() {
        "[]".to_string()
    } else {
        serde_json::to_string(&j.errors)?
    };
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
