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
    r#"
-- The event log, one row per commit (see kairos_store::events::Batch): its events packed
-- as a JSON array of [type, at (µs), queue, job_id, schedule_id, data], ids first_id to
-- last_id. `at` is the latest event's time (pruning), `types` has bit `type` set for
-- each type in the batch. `event_head` holds the last id given, pruned ones included.
-- The rows of the first log move over, each a batch of one.
CREATE TABLE event_batches (
    last_id  INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    types    INTEGER NOT NULL,
    events   TEXT NOT NULL
);
CREATE TABLE event_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO event_head (id, last_id) VALUES (1, coalesce(
    (SELECT max(seq) FROM sqlite_sequence WHERE name = 'events'),
    (SELECT max(id) FROM events), 0));
INSERT INTO event_batches (last_id, first_id, at, types, events)
SELECT id, id, at, 1 << type, json_array(json_array(type, at, queue,
    CASE WHEN job_id IS NULL THEN NULL ELSE lower(substr(hex(job_id), 1, 8) || '-' ||
      substr(hex(job_id), 9, 4) || '-' || substr(hex(job_id), 13, 4) || '-' ||
      substr(hex(job_id), 17, 4) || '-' || substr(hex(job_id), 21)) END,
    CASE WHEN schedule_id IS NULL THEN NULL ELSE lower(substr(hex(schedule_id), 1, 8) || '-' ||
      substr(hex(schedule_id), 9, 4) || '-' || substr(hex(schedule_id), 13, 4) || '-' ||
      substr(hex(schedule_id), 17, 4) || '-' || substr(hex(schedule_id), 21)) END,
    json(data)))
FROM events ORDER BY id;
DROP TABLE events;
"#,
    r#"
-- Partial indexes over job rows without IN lists in their predicates (see
-- kairos_store::states::condition): SQLite built a temporary b-tree for each IN list on
-- every job row it wrote, to decide whether the row belongs in the index.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (run_at) WHERE (state = 0 OR state = 3);
DROP INDEX jobs_unique;
CREATE UNIQUE INDEX jobs_unique ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state < 4;
DROP INDEX jobs_schedule_open;
CREATE INDEX jobs_schedule_open ON jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND state < 4;
"#,
    r#"
-- The last IN list over job rows, jobs_finished's: every job row written (inserted,
-- leased, acked) still built a temporary b-tree for it.
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state >= 4;
"#,
    r#"
-- A fire writes a schedule's timing, not its whole body: next_due is its next_run_at,
-- last_run its last_run_at when later than the body's (NULL: the body's holds).
ALTER TABLE schedules ADD COLUMN last_run INTEGER;
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
    use rusqlite::Connection;
    /// A log written by the version before batches: its rows move into batches of one
    /// with their ids, times, queues, job ids and data, and new events number after the
    /// last id ever given (here past pruned ones).
    #[test]
    fn the_first_logs_rows_move_into_batches() {
        use kairos_core::event::{EventQuery, EventType, NewEvent};
        let mut conn = Connection::open_in_memory().unwrap();
        let before = super::MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE event_batches"))
            .unwrap();
        for m in &super::MIGRATIONS[..before] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        let job = uuid::Uuid::parse_str("0190f1a2-b3c4-7d5e-8f60-718293a4b5c6").unwrap();
        let whole = format!(r#"{{"id":"{job}","queue":"mail","kind":"send"}}"#);
        conn.execute(
            "INSERT INTO events (id, type, at, queue, job_id, schedule_id, data) \
             VALUES (4, ?1, 1000001, 'mail', ?2, NULL, ?3), \
                    (5, ?4, 2000000, NULL, NULL, NULL, '{\"task_id\": \"t1\"}')",
            rusqlite::params![
                EventType::JobEnqueued.code(),
                job.as_bytes().as_slice(),
                whole,
                EventType::TaskDue.code(),
            ],
        )
        .unwrap();
        // Ids 1 to 3 were given and pruned; AUTOINCREMENT remembers 5.
        super::migrate(&mut conn).unwrap();

        let all = EventQuery::default().validate().unwrap();
        let page = crate::sqlite::events::page(&conn, &all).unwrap();
        let seen: Vec<_> = page
            .events
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.kind,
                    e.at.as_microsecond(),
                    e.queue.clone(),
                    e.job_id,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    4,
                    EventType::JobEnqueued,
                    1_000_001,
                    Some("mail".into()),
                    Some(job)
                ),
                (5, EventType::TaskDue, 2_000_000, None, None),
            ]
        );
        let data: serde_json::Value = serde_json::from_str(page.events[0].data.get()).unwrap();
        assert_eq!(
            data,
            serde_json::from_str::<serde_json::Value>(&whole).unwrap()
        );
        assert_eq!(page.events[1].data.get(), r#"{"task_id":"t1"}"#);

        let new = NewEvent::feature(EventType::TaskDue, None, None, &"t2");
        let last = crate::sqlite::events::insert(&conn, &[new.clone(), new]).unwrap();
        assert_eq!(last, Some(7));
        assert_eq!(crate::sqlite::events::last_id(&conn).unwrap(), 7);
    }

    /// Column `column` of every row `EXPLAIN [QUERY PLAN]` (`explain`) answers for `sql`
    /// on a fully migrated database, its parameters bound to 0.
    fn explained(explain: &str, sql: &str, column: usize) -> Vec<String> {
        let mut conn = Connection::open_in_memory().unwrap();
        super::migrate(&mut conn).unwrap();
        let mut stmt = conn.prepare(&format!("{explain} {sql}")).unwrap();
        stmt.query_map(
            rusqlite::params_from_iter(std::iter::repeat_n(0i64, stmt.parameter_count())),
            |r| r.get::<_, String>(column),
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// The statements meant to use the partial indexes over job rows do (their state
    /// conditions match the indexes' predicates term for term).
    #[test]
    fn statements_use_the_partial_indexes_over_job_rows() {
        for (sql, index) in [
            (&*crate::sqlite::ops::UNIQUE_HOLDER, "jobs_unique"),
            (&*crate::sqlite::ops::OTHER_UNIQUE_HOLDER, "jobs_unique"),
            (&*crate::sqlite::ops::UNFINISHED_RUN, "jobs_schedule_open"),
            (&*crate::sqlite::ops::NEXT_RUN_AT, "jobs_due"),
            (&*crate::sqlite::writer::DUE_WAITING, "jobs_due"),
            (&*crate::sqlite::ops::PRUNE_FINISHED, "jobs_finished"),
            (&*crate::sqlite::read::OLDEST_AVAILABLE, "jobs_lease"),
            (&*crate::sqlite::ops::LEASE_CANDIDATES, "jobs_lease"),
            (&*crate::sqlite::ops::LEASE_ROWS, "jobs_lease"),
        ] {
            let plan = explained("EXPLAIN QUERY PLAN", sql, 3);
            assert!(
                plan.iter()
                    .any(|line| line.contains(&format!("INDEX {index}"))),
                "{sql}: {plan:?}"
            );
        }
    }

    /// A statement that writes job rows must not build a temporary b-tree per row (as a
    /// partial index's `IN` list made SQLite do): each cost about a quarter of an
    /// insert's work.
    #[test]
    fn job_row_writes_build_no_temporary_tables() {
        for sql in [
            crate::sqlite::rows::INSERT_JOB,
            crate::sqlite::rows::SAVE_JOB,
        ] {
            let ops = explained("EXPLAIN", sql, 1);
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {ops:?}"
            );
        }
    }

    #[test]
    fn partial_indexes_use_the_core_state_sets() {
        let mut clauses = crate::states::JOB_INDEXES;
        for (index, clause) in &mut clauses {
            *clause = match *index {
                "jobs_due" => "WHERE {is_waiting}",
                "jobs_unique" | "jobs_schedule_open" => "AND {is_unfinished}",
                "jobs_finished" => "WHERE {is_finished}",
                _ => clause,
            };
        }
        crate::states::assert_partial_indexes_use_core_sets(&super::MIGRATIONS.concat(), &clauses);
    }
}
