//! The event log of the SQLite backend: each writer batch's events written as one
//! [`Batch`] row at its end (so they are part of its group commit, numbered in the
//! order they happened), pages read by readers, and retention. All event SQL of this
//! backend lives here.

use super::rows;
use crate::StoreError;
use crate::events::{self, Batch, Collector, Window};
use kairos_core::Timestamp;
use kairos_core::event::{Event, EventFilter, EventPage, NewEvent};
use rusqlite::{Connection, OptionalExtension, params};

/// Writes `events` in order, as batches, inside the open transaction; answers the last
/// id given.
pub(crate) fn insert(conn: &Connection, events: &[NewEvent]) -> Result<Option<u64>, StoreError> {
    let mut head = None;
    let mut move_head =
        conn.prepare_cached("UPDATE event_head SET last_id = last_id + ?1 RETURNING last_id")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO event_batches (last_id, first_id, at, types, events) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for batch in Batch::all_of(events) {
        let last: i64 = move_head.query_row([batch.count], |r| r.get(0))?;
        insert.execute(params![
            last,
            last - batch.count + 1,
            rows::us(batch.at),
            batch.types,
            batch.events
        ])?;
        head = Some(last.max(0) as u64);
    }
    Ok(head)
}

/// The latest id given to an event, pruned ones included (0: none ever).
pub(crate) fn last_id(conn: &Connection) -> Result<u64, StoreError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT last_id FROM event_head WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(id.unwrap_or(0).max(0) as u64)
}

/// A page of events (see [`crate::Store::events`]).
pub(crate) fn page(conn: &Connection, f: &EventFilter) -> Result<EventPage, StoreError> {
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT first_id FROM event_batches ORDER BY last_id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let window = events::window(f, oldest.map(|o| o.max(0) as u64));
    let head = last_id(conn)?;
    let found = read(conn, f, window)?;
    Ok(events::page(f, window, head, found))
}

/// The events of `w` that pass `f`, oldest first, at most `f.limit`.
fn read(conn: &Connection, f: &EventFilter, w: Window) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_id, last_id, events FROM event_batches \
         WHERE last_id > ?1 AND first_id <= ?2 AND (?3 IS NULL OR types & ?3 <> 0) \
         ORDER BY last_id",
    )?;
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let mut found = Collector::new(f, w);
    let types = found.types();
    // Rows are stepped one at a time: a full page stops reading.
    let mut rows = stmt.query(params![clamp(w.after), clamp(w.upto), types])?;
    while let Some(r) = rows.next()? {
        let text: &str = r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
        if found.add(r.get(0)?, r.get(1)?, text)? {
            break;
        }
    }
    Ok(found.into_events())
}

/// Deletes up to `limit` of the oldest batches whose events are all older than
/// `before`; answers how many events they held.
pub(crate) fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM event_batches WHERE last_id IN \
         (SELECT last_id FROM event_batches ORDER BY last_id LIMIT ?2) AND at < ?1 \
         RETURNING last_id - first_id + 1",
    )?;
    let held = stmt.query_map(params![rows::us(before), limit], |r| r.get::<_, i64>(0))?;
    let n = held.sum::<rusqlite::Result<i64>>()?;
    Ok(n.max(0) as u64)
}

/// Where the durable reader `name` has read up to (see [`crate::Store::cursor`]).
pub(crate) fn cursor(conn: &Connection, name: &str) -> Result<Option<u64>, StoreError> {
    let after: Option<i64> = conn
        .prepare_cached("SELECT after FROM event_cursors WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    Ok(after.map(|a| a.max(0) as u64))
}

/// Moves `name`'s cursor forward to `after` (never back).
pub(crate) fn save_cursor(
    conn: &Connection,
    name: &str,
    after: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO event_cursors (name, after, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET after = max(after, excluded.after), \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        name,
        after.min(i64::MAX as u64) as i64,
        rows::us(now)
    ])?;
    Ok(())
}
