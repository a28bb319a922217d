//! The SQLite schema and its versioned migrations (tracked in `PRAGMA user_version`).
//!
//! Design notes (measured on this machine kind, see docs/performance.md):
//! - `seq INTEGER PRIMARY KEY` (the rowid) is the internal key: smaller and faster than a
//!   blob key; the public UUIDv7 has its own unique index.
//! - Partial indexes keep each hot path an index range read: `jobs_lease` holds only
//!   available jobs in lease order, `jobs_due` only waiting jobs by run_at, `jobs_expiry`
//!   only running jobs by lease expiry.
//! - No index has `state` as a key column: an index keyed by state churns on every
//!   transition (measured: a `(queue, state)` index halved lease+ack throughput).
//!   Listing by queue uses `jobs_queue` (queue never changes), the dead-letter queue
//!   `jobs_dead` (a partial index touched only when a job enters or leaves `dead`).
//! - `queue_counts` is kept by the writer (one upsert per queue and state per commit),
//!   so queue statistics never count rows.

use rusqlite::Connection;

/// Migrations, applied in order; index + 1 is the schema version after it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               BLOB    NOT NULL,
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    state            INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    unique_key       TEXT,
    tags             TEXT    NOT NULL,
    errors           TEXT    NOT NULL,
    result           TEXT,
    timeout_ms       INTEGER NOT NULL,
    backoff          TEXT    NOT NULL,
    cancel_requested INTEGER NOT NULL,
    lease_token      BLOB,
    lease_worker     TEXT,
    lease_expires_at INTEGER,
    lease_reported   INTEGER
);
CREATE UNIQUE INDEX jobs_id ON jobs (id);
CREATE INDEX jobs_lease ON jobs (queue, priority DESC, run_at, seq) WHERE state = 1;
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN (0, 3);
CREATE INDEX jobs_expiry ON jobs (lease_expires_at) WHERE state = 2;
CREATE INDEX jobs_queue ON jobs (queue);
CREATE INDEX jobs_dead ON jobs (queue) WHERE state = 5;
CREATE UNIQUE INDEX jobs_unique ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN (0, 1, 2, 3);

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE queue_counts (
    queue TEXT    NOT NULL,
    state INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    answer      TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
"#,
    r#"
ALTER TABLE jobs ADD COLUMN schedule_id BLOB;
ALTER TABLE jobs ADD COLUMN scheduled_for INTEGER;
-- One run per (schedule, fire time): no restart, retry or second node can fire a slot twice.
CREATE UNIQUE INDEX jobs_schedule_run ON jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE schedules (
    seq      INTEGER PRIMARY KEY,
    id       BLOB    NOT NULL UNIQUE,
    name     TEXT    NOT NULL UNIQUE,
    -- next_run_at while active, else NULL: what the timer looks at.
    next_due INTEGER,
    body     TEXT    NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_due) WHERE next_due IS NOT NULL;
"#,
    r#"
-- Unfinished runs of schedules, for overlap: "skip" (no scan of a schedule's history).
CREATE INDEX jobs_schedule_open ON jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND state IN (0, 1, 2, 3);
"#,
    r#"
-- Every failed attempt, counted; `errors` keeps only the most recent ones.
ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET failures = json_array_length(errors) WHERE errors <> '[]';
"#,
    r#"
-- Facts about the store itself: its identity (`store_id`, also in kairos.id).
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Finished jobs by when they finished: what retention deletes, oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN (4, 5, 6);
"#,
    r#"
-- The workers the server heard from, saved every few seconds per worker (not per lease).
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    queues       TEXT NOT NULL, -- a JSON array of names
    hostname     TEXT,
    version      TEXT,
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX workers_seen ON workers (last_seen_at);
"#,
    r#"
-- The producer's W3C trace context, as JSON ({"traceparent", "tracestate"}); set once.
ALTER TABLE jobs ADD COLUMN trace TEXT;
"#,
    r#"
-- A queue's limits (NULL: none); see kairos_core::QueueLimits.
ALTER TABLE queues ADD COLUMN max_depth INTEGER;
ALTER TABLE queues ADD COLUMN concurrency INTEGER;
ALTER TABLE queues ADD COLUMN rate TEXT;
"#,
    r#"
-- The event log (see kairos_core::event), written in the commit of what it records.
-- AUTOINCREMENT: an id is never used twice, even once every event was pruned.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    queue       TEXT,
    job_id      BLOB,
    schedule_id BLOB,
    data        TEXT NOT NULL
);
"#,
    r#"
-- Where each durable reader of the event log (a sink, a feature's subscriber) has read
-- up to: it resumes after `after` (an event id) once restarted.
CREATE TABLE event_cursors (
    name       TEXT PRIMARY KEY,
    after      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

/// Settings for every connection: WAL so readers never block the writer, and
/// `synchronous = FULL` so every commit is fsync'd before it is answered.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Savepoints (all-or-nothing operations) journal into memory, not a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Every statement the writer uses stays prepared (the default cache holds 16).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The schema version of the open database (0: a new, empty one).
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings the schema up to date.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_indexes_use_the_core_state_sets() {
        crate::states::assert_partial_indexes_use_core_sets(&super::MIGRATIONS.concat());
    }
}
