//! The event log of the PostgreSQL backend: every event SQL statement of this backend.
//!
//! A transaction's events are one row of `event_batches` (see [`crate::events::Batch`]).
//!
//! With many nodes writing, ids from a sequence commit out of order: a reader past id 11
//! could miss an id 10 that commits a moment later. So a commit inserts its batches
//! unnumbered, with an internal `seq` only (in its commit round trip), and a numbering
//! pass gives every committed, unnumbered batch its public ids, in `seq` order, in one
//! short transaction under the lock of the one-row `event_head`. Readers see numbered
//! batches only, so the ids they see are dense, strictly increasing, and never appear out
//! of order; one job's events keep their order (a job's next change commits after its
//! last one, and takes a later `seq`); a rolled-back transaction leaves no ids behind.
//!
//! Numbering after the commit, not in it, is what lets commits share a WAL flush: a
//! commit that numbered its own batch held the head's row lock through its flush, so the
//! node's commits went one flush at a time (docs/performance.md). A pass runs soon after
//! this node's commits wrote events (coalesced: many commits, one pass), once per poll
//! interval whatever happened (a node that died before its pass), and before any read of
//! the log that finds a batch unnumbered, so a read sees every event committed before it
//! began. A pass that finds nothing to number writes nothing: it locks the head's table,
//! which needs no transaction id and so no flush.

use super::Inner;
use super::notify::Announcements;
use crate::StoreError;
use crate::events::{self, Batch, Collector, Window};
use crate::signal::Signals;
use deadpool_postgres::{Object, Pool};
use kairos_core::Timestamp;
use kairos_core::event::{Event, EventFilter, EventPage, NewEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;

/// Inserts a commit's batches, unnumbered, in array order (identity values follow the
/// rows' order): each batch's count, time, types and events.
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO event_batches (n, at, types, events) \
     SELECT b.n, b.a, b.t, b.ev FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], \
       $4::text[]) WITH ORDINALITY AS b(n, a, t, ev, o) ORDER BY b.o";

/// A commit's batches as the columns [`INSERT_EVENTS`] takes.
pub(crate) struct BatchRows {
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
            counts: Vec::with_capacity(batches.len()),
            at: Vec::with_capacity(batches.len()),
            types: Vec::with_capacity(batches.len()),
            events: Vec::with_capacity(batches.len()),
        };
        for b in batches {
            rows.counts.push(b.count);
            rows.at.push(b.at);
            rows.types.push(b.types);
            rows.events.push(b.events);
        }
        Some(rows)
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.counts, &self.at, &self.types, &self.events]
    }
}

/// Most batches one numbering pass numbers (the rest in the next, at once).
const NUMBER_BATCHES: i64 = 1_000;

/// Numbers the oldest unnumbered batches (`$1` at most) after the head and moves the head
/// past them; answers how many it numbered and the new head (`NULL`: none). Run under
/// the head's lock, taken by the statement before, so its snapshot holds what every
/// earlier pass numbered.
const NUMBER: &str = "WITH head AS (SELECT last_id FROM event_head WHERE id = 1), \
     todo AS ( \
       SELECT seq, n, (sum(n) OVER (ORDER BY seq))::bigint AS e FROM \
         (SELECT seq, n FROM event_batches WHERE last_id IS NULL ORDER BY seq LIMIT $1) AS f \
     ), numbered AS ( \
       UPDATE event_batches AS b \
       SET first_id = head.last_id + todo.e - todo.n + 1, last_id = head.last_id + todo.e \
       FROM head, todo WHERE b.seq = todo.seq RETURNING b.last_id \
     ), moved AS ( \
       UPDATE event_head SET last_id = (SELECT max(last_id) FROM numbered) \
       WHERE id = 1 AND EXISTS (SELECT 1 FROM numbered) RETURNING last_id \
     ) SELECT (SELECT count(*) FROM numbered), (SELECT last_id FROM moved)";

/// Whether a batch waits to be numbered (a cheap look before a pass).
const PENDING: &str = "SELECT EXISTS (SELECT 1 FROM event_batches WHERE last_id IS NULL)";

/// One numbering pass on `client`: answers how many batches it numbered and the head
/// after them (`None`: it numbered none). On an error the connection may be inside a
/// transaction: the caller must not hand it back to the pool.
async fn number_on(client: &Object) -> Result<(i64, Option<u64>), tokio_postgres::Error> {
    let lock = client
        .prepare_cached("LOCK TABLE event_head IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let numbering = client.prepare_cached(NUMBER).await?;
    let c: &tokio_postgres::Client = client;
    let limit: [&(dyn ToSql + Sync); 1] = [&NUMBER_BATCHES];
    // The lock in a statement of its own: the numbering statement after it takes a fresh
    // snapshot, so it sees what a pass that held the lock before numbered, and numbers
    // none of it again. A pass that numbers nothing commits no transaction id.
    let (_, _, row, _) = tokio::try_join!(
        c.batch_execute("BEGIN"),
        c.execute(&lock, &[]),
        c.query_one(&numbering, &limit),
        c.batch_execute("COMMIT"),
    )?;
    let (n, head): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
    Ok((n, head.map(|h| h.max(0) as u64)))
}

/// Numbers what is pending, pass after pass, with `client`, and announces the new head
/// to this node's readers and to other nodes'. On an error the connection is dropped,
/// never handed back with a transaction open.
async fn number_all(
    client: Object,
    signals: &Signals,
    out: &Announcements,
) -> Result<Object, StoreError> {
    loop {
        match number_on(&client).await {
            Ok((n, head)) => {
                if let Some(head) = head {
                    signals.events_committed(head);
                    out.add_events(head);
                }
                if n < NUMBER_BATCHES {
                    return Ok(client);
                }
            }
            Err(e) => {
                drop(Object::take(client));
                return Err(e.into());
            }
        }
    }
}

/// Numbers events until aborted: soon after `wake` (this node's commits wrote events),
/// and every `poll` whatever happened, when a batch is pending.
pub(crate) async fn run(
    pool: Pool,
    wake: Arc<Notify>,
    signals: Arc<Signals>,
    out: Arc<Announcements>,
    poll: Duration,
) {
    loop {
        let _ = tokio::time::timeout(poll, wake.notified()).await;
        let pass = async {
            let client = super::get(&pool).await?;
            let pending = client.prepare_cached(PENDING).await?;
            if client
                .query_one(&pending, &[])
                .await?
                .try_get::<_, bool>(0)?
            {
                // Back to the pool: the pass committed.
                drop(number_all(client, &signals, &out).await?);
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = pass.await {
            tracing::debug!(error = %e, "numbering events failed; the next pass retries");
        }
    }
}

/// The head and the oldest kept id, once every batch committed before is numbered (a
/// read sees what committed before it).
async fn bounds(inner: &Inner) -> Result<(Object, i64, Option<i64>), StoreError> {
    let mut client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "SELECT (SELECT last_id FROM event_head WHERE id = 1), \
             (SELECT first_id FROM event_batches WHERE last_id IS NOT NULL \
              ORDER BY last_id LIMIT 1), \
             EXISTS (SELECT 1 FROM event_batches WHERE last_id IS NULL)",
        )
        .await?;
    let row = client.query_one(&stmt, &[]).await?;
    if !row.try_get::<_, bool>(2)? {
        return Ok((client, row.try_get(0)?, row.try_get(1)?));
    }
    client = number_all(client, &inner.signals, &inner.announcements).await?;
    let row = client.query_one(&stmt, &[]).await?;
    Ok((client, row.try_get(0)?, row.try_get(1)?))
}

/// The latest public id (0: none yet).
pub(crate) async fn last_id(inner: &Inner) -> Result<u64, StoreError> {
    let (_, head, _) = bounds(inner).await?;
    Ok(head.max(0) as u64)
}

/// A page of events (see [`crate::Store::events`]).
pub(crate) async fn page(inner: &Inner, f: &EventFilter) -> Result<EventPage, StoreError> {
    // The head is read before the events: a page never claims to have looked past an
    // event it did not see.
    let (client, head, oldest) = bounds(inner).await?;
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
                 (SELECT last_id FROM event_batches WHERE last_id IS NOT NULL \
                  ORDER BY last_id LIMIT $2) AND at < $1 \
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
    use super::BatchRows;
    use crate::Store;
    use crate::conformance::database::TestDatabase;
    use crate::postgres::schema::{MIGRATIONS, ident};
    use crate::postgres::{Options, PostgresStore};
    use kairos_core::event::{EventQuery, EventType, NewEvent};

    /// A store on `db`'s schema.
    async fn open(db: &TestDatabase) -> PostgresStore {
        let options = Options {
            schema: db.schema.clone(),
            ..Options::default()
        };
        PostgresStore::connect(&db.url, options).await.unwrap()
    }

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
        // The schema version before batches (8): the first log's last version.
        let before = 7;
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

        let store = open(&db).await;
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

    /// A batch its node committed but never numbered (it died before its pass) is read
    /// at once by the next read anywhere (which numbers it), after the ones numbered
    /// before it and before what commits next; the ids stay dense.
    #[tokio::test]
    async fn a_batch_left_unnumbered_is_read_at_once_in_order() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = open(&db).await;
        let due = |task: &str| {
            NewEvent::feature(
                EventType::TaskDue,
                None,
                None,
                &serde_json::json!({ "task_id": task }),
            )
        };
        store.append_events(vec![due("t1")]).await.unwrap();
        assert_eq!(store.last_event_id().await.unwrap(), 1);
        // What a commit writes, with no pass after it: two events in one batch.
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let rows = BatchRows::of(&[due("t2"), due("t3")]).unwrap();
        client
            .batch_execute(&format!("SET search_path TO {}", ident(&db.schema)))
            .await
            .unwrap();
        client
            .execute(super::INSERT_EVENTS, &rows.params())
            .await
            .unwrap();
        let page = store
            .events(EventQuery::default().validate().unwrap())
            .await
            .unwrap();
        let tasks: Vec<(u64, String)> = page
            .events
            .iter()
            .map(|e| {
                let data: serde_json::Value = serde_json::from_str(e.data.get()).unwrap();
                (e.id, data["task_id"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(
            tasks,
            [(1, "t1".into()), (2, "t2".into()), (3, "t3".into())]
        );
        store.append_events(vec![due("t4")]).await.unwrap();
        assert_eq!(store.last_event_id().await.unwrap(), 4);
    }
}
