//! The `events` table of the SQLite backend: events written at the end of each writer
//! batch (so they are part of its group commit, numbered in the order they happened),
//! pages read by readers, and retention. All event SQL of this backend lives here.

use super::rows;
use crate::StoreError;
use crate::events::{self, Window};
use kairos_core::Timestamp;
use kairos_core::event::{Event, EventFilter, EventPage, EventType, NewEvent, shown_data};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// Writes `events` in order inside the open transaction; answers the last id given.
pub(crate) fn insert(conn: &Connection, events: &[NewEvent]) -> Result<Option<u64>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (type, at, queue, job_id, schedule_id, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in events {
        stmt.execute(params![
            e.kind.code(),
            rows::us(e.at),
            e.queue,
            e.job_id.as_ref().map(|id| id.as_bytes().as_slice()),
            e.schedule_id.as_ref().map(|id| id.as_bytes().as_slice()),
            e.data.get(),
        ])?;
    }
    Ok(Some(conn.last_insert_rowid() as u64))
}

/// The latest id given to an event, pruned ones included (0: none ever).
pub(crate) fn last_id(conn: &Connection) -> Result<u64, StoreError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(id.unwrap_or(0).max(0) as u64)
}

/// A page of events (see [`crate::Store::events`]).
pub(crate) fn page(conn: &Connection, f: &EventFilter) -> Result<EventPage, StoreError> {
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT min(id) FROM events")?
        .query_row([], |r| r.get(0))?;
    let window = events::window(f, oldest.map(|o| o as u64));
    let head = last_id(conn)?;
    let found = read(conn, f, window)?;
    Ok(events::page(f, window, head, found))
}

fn read(conn: &Connection, f: &EventFilter, w: Window) -> Result<Vec<Event>, StoreError> {
    let mut sql = String::from(
        "SELECT id, type, at, queue, job_id, schedule_id, data FROM events \
         WHERE id > ?1 AND id <= ?2",
    );
    let mut args = vec![
        Value::Integer(w.after.min(i64::MAX as u64) as i64),
        Value::Integer(w.upto.min(i64::MAX as u64) as i64),
    ];
    if !f.types.is_empty() {
        let codes: Vec<String> = f.types.iter().map(|t| t.code().to_string()).collect();
        sql.push_str(&format!(" AND type IN ({})", codes.join(", ")));
    }
    if let Some(q) = &f.queue {
        args.push(Value::Text(q.clone()));
        sql.push_str(&format!(" AND queue = ?{}", args.len()));
    }
    args.push(Value::Integer(i64::from(f.limit)));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let code: u8 = r.get(1)?;
    let bad = |col: usize, m: String| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, m.into())
    };
    let uuid = |col: usize| -> rusqlite::Result<Option<Uuid>> {
        r.get::<_, Option<Vec<u8>>>(col)?
            .map(|b| Uuid::from_slice(&b).map_err(|e| bad(col, e.to_string())))
            .transpose()
    };
    let kind = EventType::from_code(code)
        .ok_or_else(|| bad(1, format!("unknown event type code {code}")))?;
    let queue: Option<String> = r.get(3)?;
    let job_id = uuid(4)?;
    let data = shown_data(kind, job_id, queue.as_deref(), r.get(6)?).map_err(|e| bad(6, e))?;
    Ok(Event {
        id: r.get::<_, i64>(0)? as u64,
        kind,
        at: rows::ts(r.get(2)?)?,
        queue,
        job_id,
        schedule_id: uuid(5)?,
        data,
    })
}

/// Deletes up to `limit` of the oldest events if older than `before`.
pub(crate) fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached(
            "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?2) \
             AND at < ?1",
        )?
        .execute(params![rows::us(before), limit])?;
    Ok(n as u64)
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
