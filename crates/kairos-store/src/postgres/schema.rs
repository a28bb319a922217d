//! The PostgreSQL schema and its versioned migrations, embedded in the binary.
//!
//! Every node applies them at start (and `kairos migrate` does on demand) under a
//! transaction-level advisory lock, so nodes starting together migrate once; a schema
//! newer than this binary knows is refused rather than guessed at.
//!
//! Design notes (docs/architecture.md has the why):
//! - `seq bigint` identity is the internal key and the listing order; the public UUIDv7
//!   has its own unique index.
//! - Partial indexes keep the hot paths small: `jobs_lease` holds only available jobs in
//!   lease order (a job leaves it when leased), `jobs_due` only waiting jobs, `jobs_expiry`
//!   only running ones. Finished jobs are in none of them.
//! - Queue counts never become one hot row: every transaction appends its deltas to
//!   `queue_count_deltas` (insert-only, no row is updated by two writers), the maintenance
//!   pass folds them into `queue_counts`, and a read sums both, so counts are exact.
//! - A queue whose leasing is limited (`concurrency`, `rate`) is leased under its row's
//!   lock, so the nodes take turns counting its running jobs and spending its tokens;
//!   a queue with a `max_depth` is enqueued to under the same lock. Unlimited queues
//!   take no lock.
//! - Times are `timestamptz` and are compared with `kairos_now()`: the database's clock
//!   (`now()`), unless a test pinned `kairos.clock` for its transaction.

use crate::StoreError;
use tokio_postgres::Client;

/// Migrations, applied in order; index + 1 is the schema version after it.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE FUNCTION kairos_now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('kairos.clock', true), '')::timestamptz, now())
$$;

CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               uuid        NOT NULL,
    queue            text        NOT NULL,
    kind             text        NOT NULL,
    payload          text        NOT NULL,
    priority         integer     NOT NULL,
    state            smallint    NOT NULL,
    attempt          integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    unique_key       text,
    tags             text        NOT NULL,
    errors           text        NOT NULL,
    failures         integer     NOT NULL DEFAULT 0,
    result           text,
    timeout_ms       bigint      NOT NULL,
    backoff          text        NOT NULL,
    cancel_requested boolean     NOT NULL,
    lease_token      uuid,
    lease_worker     text,
    lease_expires_at timestamptz,
    lease_reported   smallint,
    schedule_id      uuid,
    scheduled_for    timestamptz
);
CREATE UNIQUE INDEX jobs_id ON jobs (id);
CREATE INDEX jobs_lease ON jobs (queue, priority DESC, run_at, seq) WHERE state = 1;
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN (0, 3);
CREATE INDEX jobs_expiry ON jobs (lease_expires_at) WHERE state = 2;
CREATE INDEX jobs_queue ON jobs (queue, seq);
CREATE INDEX jobs_dead ON jobs (queue, seq) WHERE state = 5;
CREATE UNIQUE INDEX jobs_unique ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN (0, 1, 2, 3);
-- One run per (schedule, fire time): no restart, retry or second node can fire a slot twice.
CREATE UNIQUE INDEX jobs_schedule_run ON jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_schedule_open ON jobs (schedule_id)
    WHERE schedule_id IS NOT NULL AND state IN (0, 1, 2, 3);

CREATE TABLE queues (
    name       text PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE TABLE queue_counts (
    queue text     NOT NULL,
    state smallint NOT NULL,
    n     bigint   NOT NULL,
    PRIMARY KEY (queue, state)
);
CREATE TABLE queue_count_deltas (
    queue text     NOT NULL,
    state smallint NOT NULL,
    n     bigint   NOT NULL
);
CREATE INDEX queue_count_deltas_queue ON queue_count_deltas (queue);

CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY,
    fingerprint bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    answer      text        NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE schedules (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id       uuid NOT NULL UNIQUE,
    name     text NOT NULL UNIQUE,
    -- next_run_at while active, else NULL: what the timer looks at.
    next_due timestamptz,
    body     text NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_due) WHERE next_due IS NOT NULL;
"#,
    r#"
-- The nodes sharing this schema, and which one leads the background duties: a lease on
-- a row, judged by the database clock (expires_at), renewed by the leader every second.
CREATE TABLE nodes (
    id           uuid PRIMARY KEY,
    address      text        NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
-- Finished jobs by when they finished: what retention deletes, oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN (4, 5, 6);
CREATE TABLE leader (
    role       text PRIMARY KEY,
    node       uuid        NOT NULL,
    renewed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
    r#"
-- The workers the nodes heard from, saved every few seconds per worker (not per lease).
CREATE TABLE workers (
    name         text PRIMARY KEY,
    queues       text[]      NOT NULL,
    hostname     text,
    version      text,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX workers_seen ON workers (last_seen_at);
"#,
    r#"
-- The producer's W3C trace context, as JSON ({"traceparent", "tracestate"}); set once.
ALTER TABLE jobs ADD COLUMN trace text;
"#,
    r#"
-- A queue's limits (NULL: none; see kairos_core::QueueLimits), and its rate's token
-- bucket as last spent (NULL: full), shared by every node under the row's lock.
ALTER TABLE queues
    ADD COLUMN max_depth   bigint,
    ADD COLUMN concurrency bigint,
    ADD COLUMN rate        text,
    ADD COLUMN rate_tokens double precision,
    ADD COLUMN rate_at     timestamptz;
"#,
    r#"
-- The event log (see kairos_core::event and postgres/events.rs). Writers insert with
-- only `seq` (CACHE 1: handed out in the order asked, across sessions); whoever numbers
-- next gives every committed, unnumbered event its public id, in `seq` order, under the
-- lock of `event_head`. Readers see numbered events only.
CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    public_id   bigint,
    type        smallint    NOT NULL,
    at          timestamptz NOT NULL,
    queue       text,
    job_id      uuid,
    schedule_id uuid,
    data        text        NOT NULL
);
CREATE UNIQUE INDEX events_public ON events (public_id) WHERE public_id IS NOT NULL;
CREATE INDEX events_unnumbered ON events (seq) WHERE public_id IS NULL;
CREATE TABLE event_head (
    id      smallint PRIMARY KEY CHECK (id = 1),
    last_id bigint   NOT NULL
);
INSERT INTO event_head VALUES (1, 0);
"#,
    r#"
-- Where each durable reader of the event log (a sink, a feature's subscriber) has read
-- up to: it resumes after `after` (an event's public id) once restarted.
CREATE TABLE event_cursors (
    name       text        PRIMARY KEY,
    after      bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);
"#,
    r#"
-- The event log, one row per transaction (see postgres/events.rs): each commit's events
-- packed as a JSON array of [type, at (µs), queue, job_id, schedule_id, data], with ids
-- first_id to last_id taken from event_head in its last statement. `at` is the latest
-- event's time (pruning), `types` has bit `type` set for each type in the batch.
-- The rows of the first log move over, each a batch of one, unnumbered ones (left by a
-- numbering pass that had not run yet) numbered after the rest in `seq` order.
CREATE TABLE event_batches (
    last_id  bigint      PRIMARY KEY,
    first_id bigint      NOT NULL,
    at       timestamptz NOT NULL,
    types    bigint      NOT NULL,
    events   text        NOT NULL
);
LOCK TABLE event_head, events IN EXCLUSIVE MODE;
WITH todo AS (
    SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM events WHERE public_id IS NULL
)
UPDATE events SET public_id = (SELECT last_id FROM event_head) + todo.n
FROM todo WHERE events.seq = todo.seq;
UPDATE event_head SET last_id = greatest(last_id, (SELECT coalesce(max(public_id), 0) FROM events));
INSERT INTO event_batches (last_id, first_id, at, types, events)
SELECT public_id, public_id, at, 1::bigint << type,
       json_build_array(json_build_array(
           type, (extract(epoch FROM at) * 1000000)::bigint, queue, job_id, schedule_id,
           data::json))::text
FROM events;
DROP TABLE events;
"#,
    r#"
-- Batches are inserted unnumbered and numbered after their commit (see
-- postgres/events.rs): a commit that numbered its own batch held event_head's row lock
-- through its WAL flush, so commits could not share one. `seq` (CACHE 1: handed out in
-- the order asked, across sessions) is the numbering order, `n` the batch's event count;
-- first_id and last_id stay NULL until a numbering pass sets them under the head's lock.
-- The rows kept are all numbered already.
ALTER TABLE event_batches ADD COLUMN n bigint;
UPDATE event_batches SET n = last_id - first_id + 1;
ALTER TABLE event_batches ALTER COLUMN n SET NOT NULL;
ALTER TABLE event_batches ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY (CACHE 1);
ALTER TABLE event_batches DROP CONSTRAINT event_batches_pkey;
ALTER TABLE event_batches ALTER COLUMN last_id DROP NOT NULL,
    ALTER COLUMN first_id DROP NOT NULL;
ALTER TABLE event_batches ADD PRIMARY KEY (seq);
CREATE UNIQUE INDEX event_batches_numbered ON event_batches (last_id);
CREATE INDEX event_batches_unnumbered ON event_batches (seq) WHERE last_id IS NULL;
"#,
];

/// The advisory lock key under which migrations run ("kairos" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b61_6972_6f73;

/// The version this binary's schema has.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The schema version in `schema` (0: none yet).
pub(crate) async fn version(client: &Client, schema: &str) -> Result<i64, StoreError> {
    let exists = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL",
            &[&schema],
        )
        .await?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {}.schema_migrations",
                ident(schema)
            ),
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0) as i64)
}

/// Brings `schema` up to date, creating it if needed. Returns the versions applied.
/// Refuses a schema newer than this binary knows.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i64>, StoreError> {
    let tx = client.transaction().await?;
    // Held until commit: nodes starting at once take turns, and the second finds it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let schema_id = ident(schema);
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages TO warning;
         CREATE SCHEMA IF NOT EXISTS {schema_id};
         CREATE TABLE IF NOT EXISTS {schema_id}.schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SET LOCAL search_path TO {schema_id};"
    ))
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let current = current as i64;
    if current > latest() {
        // Rolled back now, not when the connection is next polled: the advisory lock
        // must not outlive the refusal.
        tx.rollback().await?;
        return Err(StoreError::Backend(format!(
            "the database schema {schema:?} is at version {current}, newer than this binary knows ({}): run a newer kairos",
            latest()
        )));
    }
    let mut applied = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(version as i32)],
        )
        .await?;
        applied.push(version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Drops `schema` and everything in it (the bench's own schema, once it is done).
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    let result = client
        .batch_execute(&format!(
            "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS {} CASCADE",
            ident(schema)
        ))
        .await;
    drop(client);
    let _ = conn.await;
    Ok(result?)
}

/// `name` quoted as an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_indexes_use_the_core_state_sets() {
        crate::states::assert_partial_indexes_use_core_sets(
            &super::MIGRATIONS.concat(),
            &crate::states::JOB_INDEXES,
        );
    }
}
