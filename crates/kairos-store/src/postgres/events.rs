//! The event log of the PostgreSQL backend: every event SQL statement of this backend.
//!
//! With many nodes writing, ids from a sequence commit out of order: a reader past id 11
//! could miss an id 10 that commits a moment later. So writers insert events with an
//! internal `seq` only (in the commit round trip of what they record, one statement per
//! transaction), and a numbering pass gives every committed, unnumbered event its public
//! id, in `seq` order, in one short transaction under the lock of the one-row
//! `event_head`. Readers see numbered events only, so the ids they see are dense,
//! strictly increasing, and never appear out of order; one job's events keep their order
//! (a job's next change commits after its last one, and takes a later `seq`); a long
//! transaction delays only its own events.
//!
//! Every node runs a numbering pass soon after its own commits wrote events (coalesced:
//! many commits, one pass) and once per poll interval whatever happened (events of a
//! node that died before numbering them), then announces the new head to its own
//! readers and, through the wake-up notification, to other nodes'.

use super::Inner;
use super::notify::Announcements;
use crate::StoreError;
use crate::events::{self, Window};
use deadpool_postgres::Pool;
use kairos_core::Timestamp;
use kairos_core::event::{Event, EventFilter, EventPage, EventType, NewEvent, shown_data};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Inserts events in array order (identity values follow the rows' order).
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO events \
     (type, at, queue, job_id, schedule_id, data) \
     SELECT t, a, q, j, s, d FROM unnest($1::smallint[], $2::timestamptz[], $3::text[], \
       $4::uuid[], $5::uuid[], $6::text[]) WITH ORDINALITY AS u(t, a, q, j, s, d, n) \
     ORDER BY n";

/// Events of one transaction, as the columns [`INSERT_EVENTS`] takes.
#[derive(Default)]
pub(crate) struct EventRows {
    types: Vec<i16>,
    at: Vec<Timestamp>,
    queues: Vec<Option<String>>,
    jobs: Vec<Option<Uuid>>,
    schedules: Vec<Option<Uuid>>,
    data: Vec<String>,
}

impl EventRows {
    pub(crate) fn of(events: Vec<NewEvent>) -> EventRows {
        let mut rows = EventRows::default();
        for e in events {
            rows.types.push(i16::from(e.kind.code()));
            rows.at.push(e.at);
            rows.queues.push(e.queue);
            rows.jobs.push(e.job_id);
            rows.schedules.push(e.schedule_id);
            rows.data.push(String::from(Box::<str>::from(e.data)));
        }
        rows
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.types,
            &self.at,
            &self.queues,
            &self.jobs,
            &self.schedules,
            &self.data,
        ]
    }
}

/// Most events one numbering pass numbers (the rest in the next, at once).
const NUMBER_BATCH: i64 = 10_000;

const NUMBER: &str = "WITH todo AS ( \
       SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM \
         (SELECT seq FROM events WHERE public_id IS NULL ORDER BY seq LIMIT $2) AS first \
     ), done AS ( \
       UPDATE events SET public_id = $1 + todo.n FROM todo WHERE events.seq = todo.seq \
       RETURNING public_id \
     ) SELECT count(*), max(public_id) FROM done";

/// One numbering pass: answers how many it numbered and the head after it.
async fn number(pool: &Pool) -> Result<(i64, Option<u64>), StoreError> {
    let client = super::get(pool).await?;
    let pending = client
        .prepare_cached("SELECT 1 FROM events WHERE public_id IS NULL LIMIT 1")
        .await?;
    if client.query(&pending, &[]).await?.is_empty() {
        return Ok((0, None));
    }
    let head = client
        .prepare_cached("SELECT last_id FROM event_head WHERE id = 1 FOR UPDATE")
        .await?;
    let numbering = client.prepare_cached(NUMBER).await?;
    let set_head = client
        .prepare_cached("UPDATE event_head SET last_id = $1 WHERE id = 1")
        .await?;
    let c: &tokio_postgres::Client = &client;
    let result = async {
        // The head's lock first, in its own statement: the numbering statement after it
        // takes a fresh snapshot, so it sees what a pass that held the lock before
        // numbered, and numbers none of it again.
        let (_, head_row) = tokio::try_join!(c.batch_execute("BEGIN"), c.query_one(&head, &[]))?;
        let last: i64 = head_row.try_get(0)?;
        let row = c.query_one(&numbering, &[&last, &NUMBER_BATCH]).await?;
        let (n, max): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let new_head = max.unwrap_or(last);
        let args: [&(dyn ToSql + Sync); 1] = [&new_head];
        tokio::try_join!(c.execute(&set_head, &args), c.batch_execute("COMMIT"))?;
        Ok::<_, tokio_postgres::Error>((n, new_head))
    }
    .await;
    match result {
        Ok((n, head)) => Ok((n, Some(head.max(0) as u64))),
        Err(e) => {
            // Never hand back a connection with a transaction open.
            drop(deadpool_postgres::Object::take(client));
            Err(e.into())
        }
    }
}

/// Numbers events until aborted: soon after `wake` (this node wrote events), and every
/// `poll` whatever happened.
pub(crate) async fn run(
    pool: Pool,
    wake: Arc<Notify>,
    signals: Arc<crate::Signals>,
    out: Arc<Announcements>,
    poll: Duration,
) {
    loop {
        let _ = tokio::time::timeout(poll, wake.notified()).await;
        loop {
            match number(&pool).await {
                Ok((n, head)) => {
                    if let Some(head) = head.filter(|_| n > 0) {
                        signals.events_committed(head);
                        out.add_events(head);
                    }
                    if n < NUMBER_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "numbering events failed; the next pass retries");
                    break;
                }
            }
        }
    }
}

const COLUMNS: &str = "public_id, type, at, queue, job_id, schedule_id, data";

/// The latest public id (0: none yet).
pub(crate) async fn last_id(inner: &Inner) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("SELECT last_id FROM event_head WHERE id = 1")
        .await?;
    let last: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(last.max(0) as u64)
}

/// A page of numbered events (see [`crate::Store::events`]).
pub(crate) async fn page(inner: &Inner, f: &EventFilter) -> Result<EventPage, StoreError> {
    let client = inner.connection().await?;
    let bounds = client
        .prepare_cached(
            "SELECT (SELECT last_id FROM event_head WHERE id = 1), \
             (SELECT min(public_id) FROM events WHERE public_id IS NOT NULL)",
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

async fn read(
    client: &deadpool_postgres::Object,
    f: &EventFilter,
    w: Window,
) -> Result<Vec<Event>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE public_id > $1 AND public_id <= $2 \
             AND ($3::smallint[] IS NULL OR type = ANY($3)) \
             AND ($4::text IS NULL OR queue = $4) ORDER BY public_id LIMIT $5"
        ))
        .await?;
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let types: Option<Vec<i16>> =
        (!f.types.is_empty()).then(|| f.types.iter().map(|t| i16::from(t.code())).collect());
    let rows = client
        .query(
            &stmt,
            &[
                &clamp(w.after),
                &clamp(w.upto),
                &types,
                &f.queue,
                &i64::from(f.limit),
            ],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(r: &tokio_postgres::Row) -> Result<Event, StoreError> {
    let code: i16 = r.try_get(1)?;
    let kind = u8::try_from(code)
        .ok()
        .and_then(EventType::from_code)
        .ok_or_else(|| StoreError::Damaged(format!("unknown event type code {code}")))?;
    let queue: Option<String> = r.try_get(3)?;
    let job_id: Option<uuid::Uuid> = r.try_get(4)?;
    let data = shown_data(kind, job_id, queue.as_deref(), r.try_get(6)?)
        .map_err(|e| StoreError::Damaged(format!("an event's data: {e}")))?;
    Ok(Event {
        id: r.try_get::<_, i64>(0)?.max(0) as u64,
        kind,
        at: r.try_get(2)?,
        queue,
        job_id,
        schedule_id: r.try_get(5)?,
        data,
    })
}

/// Deletes up to `limit` of the oldest numbered events if older than `before`.
pub(crate) async fn prune(inner: &Inner, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events \
             WHERE public_id IS NOT NULL ORDER BY public_id LIMIT $2) AND at < $1",
        )
        .await?;
    Ok(client.execute(&stmt, &[&before, &i64::from(limit)]).await?)
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
