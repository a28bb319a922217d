//! The event log of the PostgreSQL backend: every event SQL statement of this backend.
//!
//! A transaction's events are one row of `event_batches` (see [`crate::events::Batch`]).
//!
//! With many nodes writing, ids from a sequence commit out of order: a reader past id 11
//! could miss an id 10 that commits a moment later. So a batch takes its ids from the
//! one-row `event_head` in its transaction's last statement before `COMMIT` (one
//! statement moves the head and inserts the batch, pipelined with the commit): the
//! head's row lock is held from there to the commit, so the next writer numbers after it
//! only once it is visible. The ids readers see are dense, strictly increasing, and never
//! appear out of order; one job's events keep their order (a job's next change commits
//! after its last one). A long transaction holds the lock only for its final round trip,
//! and a transaction that rolls back gives its ids back.

use super::Inner;
use crate::StoreError;
use crate::events::{self, Batch, Collector, Window};
use kairos_core::Timestamp;
use kairos_core::event::{Event, EventFilter, EventPage, NewEvent};
use tokio_postgres::types::ToSql;

/// Moves the head past a commit's events and inserts their batches; answers the new
/// head. The last statement before `COMMIT` (see the module header). `$1` is the events'
/// count, `$2` each batch's end counted from the old head (its count summed with the
/// batches' before it), then each batch's count, time, types and events.
pub(crate) const INSERT_EVENTS: &str = "WITH head AS ( \
       UPDATE event_head SET last_id = last_id + $1 WHERE id = 1 \
       RETURNING last_id - $1 AS before \
     ), inserted AS ( \
       INSERT INTO event_batches (first_id, last_id, at, types, events) \
       SELECT before + b.e - b.n + 1, before + b.e, b.a, b.t, b.ev FROM head, \
         unnest($2::bigint[], $3::bigint[], $4::timestamptz[], $5::bigint[], $6::text[]) \
           AS b(e, n, a, t, ev) \
       RETURNING last_id \
     ) SELECT max(last_id) FROM inserted";

/// A commit's batches as the columns [`INSERT_EVENTS`] takes.
pub(crate) struct BatchRows {
    total: i64,
    ends: Vec<i64>,
    counts: Vec<i64>,
    at: Vec<Timestamp>,
    types: Vec<i64>,
    events: Vec<String>,
}

impl BatchRows {
    /// The rows of a commit's `events` (`None`: there are none).
    pub(crate) fn of(events: &[NewEvent]) -> Option<BatchRows> {
        let batches = Batch::all_of(events);
        if batches.is_empty() {
            return None;
        }
        let mut rows = BatchRows {
            total: 0,
            ends: Vec::with_capacity(batches.len()),
            counts: Vec::with_capacity(batches.len()),
            at: Vec::with_capacity(batches.len()),
            types: Vec::with_capacity(batches.len()),
            events: Vec::with_capacity(batches.len()),
        };
        for b in batches {
            rows.total += b.count;
            rows.ends.push(rows.total);
            rows.counts.push(b.count);
            rows.at.push(b.at);
            rows.types.push(b.types);
            rows.events.push(b.events);
        }
        Some(rows)
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.total,
            &self.ends,
            &self.counts,
            &self.at,
            &self.types,
            &self.events,
        ]
    }
}

/// The latest public id (0: none yet).
pub(crate) async fn last_id(inner: &Inner) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("SELECT last_id FROM event_head WHERE id = 1")
        .await?;
    let last: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(last.max(0) as u64)
}

/// A page of events (see [`crate::Store::events`]).
pub(crate) async fn page(inner: &Inner, f: &EventFilter) -> Result<EventPage, StoreError> {
    let client = inner.connection().await?;
    let bounds = client
        .prepare_cached(
            "SELECT (SELECT last_id FROM event_head WHERE id = 1), \
             (SELECT first_id FROM event_batches ORDER BY last_id LIMIT 1)",
        )
        .await?;
    // The head is read before the events: a page never claims to have looked past an
    // event it did not see.
    let row = client.query_one(&bounds, &[]).await?;
    let head: i64 = row.try_get(0)?;
    let oldest: Option<i64> = row.try_get(1)?;
    let window = events::window(f, oldest.map(|o| o.max(0) as u64));
    let found = read(&client, f, window).await?;
    Ok(events::page(f, window, head.max(0) as u64, found))
}

/// Batch rows read per round trip of a page.
const BATCHES_PER_READ: i64 = 64;

/// The events of `w` that pass `f`, oldest first, at most `f.limit`.
async fn read(
    client: &deadpool_postgres::Object,
    f: &EventFilter,
    w: Window,
) -> Result<Vec<Event>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT first_id, last_id, events FROM event_batches \
             WHERE last_id > $1 AND first_id <= $2 AND ($3::bigint IS NULL OR types & $3 <> 0) \
             ORDER BY last_id LIMIT $4",
        )
        .await?;
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let mut found = Collector::new(f, w);
    let (mut from, upto, types) = (clamp(w.after), clamp(w.upto), found.types());
    loop {
        let rows = client
            .query(&stmt, &[&from, &upto, &types, &BATCHES_PER_READ])
            .await?;
        for r in &rows {
            from = r.try_get(1)?;
            if found.add(r.try_get(0)?, from, r.try_get(2)?)? {
                return Ok(found.into_events());
            }
        }
        if (rows.len() as i64) < BATCHES_PER_READ {
            return Ok(found.into_events());
        }
    }
}

/// Deletes up to `limit` of the oldest batches whose events are all older than
/// `before`; answers how many events they held.
pub(crate) async fn prune(inner: &Inner, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "WITH gone AS ( \
               DELETE FROM event_batches WHERE last_id IN \
                 (SELECT last_id FROM event_batches ORDER BY last_id LIMIT $2) AND at < $1 \
               RETURNING last_id - first_id + 1 AS n \
             ) SELECT coalesce(sum(n), 0)::bigint FROM gone",
        )
        .await?;
    let n: i64 = client
        .query_one(&stmt, &[&before, &i64::from(limit)])
        .await?
        .try_get(0)?;
    Ok(n.max(0) as u64)
}

/// Where the durable reader `name` has read up to (see [`crate::Store::cursor`]).
pub(crate) async fn cursor(inner: &Inner, name: &str) -> Result<Option<u64>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("SELECT after FROM event_cursors WHERE name = $1")
        .await?;
    let row = client.query_opt(&stmt, &[&name]).await?;
    Ok(match row {
        Some(r) => Some(r.try_get::<_, i64>(0)?.max(0) as u64),
        None => None,
    })
}

/// Moves `name`'s cursor forward to `after` (never back).
pub(crate) async fn save_cursor(inner: &Inner, name: &str, after: u64) -> Result<(), StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO event_cursors (name, after, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET \
             after = greatest(event_cursors.after, excluded.after), \
             updated_at = excluded.updated_at",
        )
        .await?;
    let after = after.min(i64::MAX as u64) as i64;
    client.execute(&stmt, &[&name, &after]).await?;
    Ok(())
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use crate::Store;
    use crate::conformance::database::TestDatabase;
    use crate::postgres::schema::{MIGRATIONS, ident};
    use crate::postgres::{Options, PostgresStore};
    use kairos_core::event::{EventQuery, EventType, NewEvent};

    /// A log written by the version before batches: its rows move into batches, the
    /// numbered ones with their ids and the unnumbered ones after them in `seq` order,
    /// each read back as written, and new events number after them all.
    #[tokio::test]
    async fn the_first_logs_rows_move_into_batches() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let before = MIGRATIONS.len() - 1;
        let schema = ident(&db.schema);
        let mut sql = format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             CREATE TABLE schema_migrations (version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version) SELECT generate_series(1, {before});"
        );
        for m in &MIGRATIONS[..before] {
            sql.push_str(m);
        }
        // Two numbered (ids 1 and 2), then one the numbering pass had not reached.
        sql.push_str(&format!(
            "INSERT INTO events (public_id, type, at, queue, job_id, schedule_id, data) VALUES
               (1, {paused}, '2026-01-01T00:00:00.000001Z', 'mail', NULL, NULL, '{{}}'),
               (2, {due}, '2026-01-01T00:00:01Z', NULL, NULL, NULL, '{{\"task_id\": \"t1\"}}');
             INSERT INTO events (type, at, queue, job_id, schedule_id, data) VALUES
               ({resumed}, '2026-01-01T00:00:02Z', 'mail', NULL, NULL, '{{}}');
             UPDATE event_head SET last_id = 2;",
            paused = EventType::QueuePaused.code(),
            due = EventType::TaskDue.code(),
            resumed = EventType::QueueResumed.code(),
        ));
        client.batch_execute(&sql).await.unwrap();

        let store = PostgresStore::connect(
            &db.url,
            Options {
                schema: db.schema.clone(),
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let all = EventQuery::default().validate().unwrap();
        let page = store.events(all.clone()).await.unwrap();
        let seen: Vec<_> = page
            .events
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.kind,
                    e.queue.clone(),
                    e.at.to_string(),
                    e.data.get(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    1,
                    EventType::QueuePaused,
                    Some("mail".to_string()),
                    "2026-01-01T00:00:00.000001Z".to_string(),
                    "{}"
                ),
                (
                    2,
                    EventType::TaskDue,
                    None,
                    "2026-01-01T00:00:01Z".to_string(),
                    "{\"task_id\": \"t1\"}"
                ),
                (
                    3,
                    EventType::QueueResumed,
                    Some("mail".to_string()),
                    "2026-01-01T00:00:02Z".to_string(),
                    "{}"
                ),
            ]
        );
        store
            .append_events(vec![NewEvent::feature(
                EventType::TaskDue,
                None,
                None,
                &serde_json::json!({"task_id": "t2"}),
            )])
            .await
            .unwrap();
        assert_eq!(store.last_event_id().await.unwrap(), 4);
        let types = EventQuery {
            types: Some("task.due".to_string()),
            ..EventQuery::default()
        }
        .validate()
        .unwrap();
        let ids: Vec<u64> = store
            .events(types)
            .await
            .unwrap()
            .events
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [2, 4]);
    }
}
