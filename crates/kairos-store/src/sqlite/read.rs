//! Read-only queries, run on reader connections (or inside a write batch where a write
//! needs to answer with current data). Readers see only committed data.

use super::rows::{self, JOB_COLUMNS};
use crate::limits::LimitColumns;
use crate::states::statement;
use crate::{StoreError, visible};
use kairos_core::api::{JobFilter, JobPage};
use kairos_core::schedule::Schedule;
use kairos_core::{Job, JobState, Queue, QueueLimits, StateCounts, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

statement!(
    /// Jobs that read as available: available, or waiting with their time come.
    AVAILABLE_NOW = " AND (state = {available} OR (state IN {waiting} AND run_at <= ?))"
);
statement!(
    RUNNING_BY_WORKER = "SELECT lease_worker, count(*) FROM jobs WHERE state = {running} \
     AND lease_worker IS NOT NULL GROUP BY lease_worker"
);
statement!(LAST_DEAD = "SELECT max(seq) FROM jobs WHERE queue = ?1 AND state = {dead}");
statement!(
    /// The oldest `run_at` among a queue's available jobs, by `jobs_lease`: a skip-scan
    /// from one priority in use to the next, the first `run_at` of each.
    OLDEST_AVAILABLE = "WITH RECURSIVE p(pr) AS ( \
     SELECT max(priority) FROM jobs WHERE queue = ?1 AND state = {available} \
     UNION ALL SELECT (SELECT max(priority) FROM jobs \
       WHERE queue = ?1 AND state = {available} AND priority < p.pr) FROM p WHERE p.pr IS NOT NULL) \
     SELECT min((SELECT min(run_at) FROM jobs \
       WHERE queue = ?1 AND state = {available} AND priority = p.pr)) FROM p WHERE p.pr IS NOT NULL"
);

pub(crate) fn oldest_available(
    conn: &Connection,
    queue: &str,
) -> Result<Option<Timestamp>, StoreError> {
    let us: Option<i64> = conn
        .prepare_cached(&OLDEST_AVAILABLE)?
        .query_row([queue], |r| r.get(0))?;
    Ok(us.map(rows::ts).transpose()?)
}

pub(crate) fn job(conn: &Connection, id: Uuid, now: Timestamp) -> Result<Option<Job>, StoreError> {
    let found = rows::job_by_id(conn, id, rows::Read::Full)?;
    Ok(found.map(|s| visible(s.job, now)))
}

pub(crate) fn list(conn: &Connection, f: JobFilter, now: Timestamp) -> Result<JobPage, StoreError> {
    // The filters, as `AND …` clauses over `jobs`, with their arguments.
    let mut filters = String::new();
    let mut args: Vec<Value> = Vec::new();
    // Appends `clause` with its `?`s numbered as the argument `v` it adds.
    fn push(sql: &mut String, args: &mut Vec<Value>, clause: &str, v: Value) {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    }
    let mut arg = |sql: &mut String, clause: &str, v: Value| push(sql, &mut args, clause, v);
    if let Some(q) = f.queue {
        arg(&mut filters, " AND queue = ?", Value::Text(q));
    }
    if let Some(k) = f.kind {
        arg(&mut filters, " AND kind = ?", Value::Text(k));
    }
    if let Some(id) = f.schedule_id {
        arg(
            &mut filters,
            " AND schedule_id = ?",
            Value::Blob(id.as_bytes().to_vec()),
        );
    }
    let now_us = Value::Integer(rows::us(now));
    match f.state {
        // A waiting job whose time has come reads as available.
        Some(JobState::Available) => arg(&mut filters, &AVAILABLE_NOW, now_us),
        Some(s) if s.is_waiting() => {
            filters.push_str(&format!(" AND state = {}", s.code()));
            arg(&mut filters, " AND run_at > ?", now_us);
        }
        Some(s) => filters.push_str(&format!(" AND state = {}", s.code())),
        None => {}
    }
    if let Some(cursor) = f.cursor {
        let seq = crate::listing::cursor_seq(&cursor)?;
        arg(&mut filters, " AND seq < ?", Value::Integer(seq));
    }
    let filter_args = args.len();
    let window = format!(
        "SELECT seq FROM jobs WHERE 1 = 1{filters} ORDER BY seq DESC LIMIT {}",
        crate::listing::SEARCH_WINDOW
    );
    let mut arg = |sql: &mut String, clause: &str, v: Value| push(sql, &mut args, clause, v);
    let mut sql = match &f.search {
        None => format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1{filters}"),
        // A search looks at the newest `SEARCH_WINDOW` jobs the filters allow, and
        // matches them as `JobSearch::matches` says.
        Some(search) => {
            let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq IN ({window}) AND (");
            if let Some(id) = search.id {
                arg(&mut sql, "id = ? OR ", Value::Blob(id.as_bytes().to_vec()));
            }
            arg(
                &mut sql,
                "instr(kind, ?) > 0 OR instr(coalesce(unique_key, ''), ?) > 0 \
                 OR EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE instr(value, ?) > 0))",
                Value::Text(search.text.clone()),
            );
            sql
        }
    };
    arg(
        &mut sql,
        " ORDER BY seq DESC LIMIT ?",
        Value::Integer(f.limit as i64 + 1),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), rows::job_from_row)?
        .map(|r| r.map(|s| (s.seq, s.job)).map_err(StoreError::from));
    let mut page = crate::listing::page(rows, f.limit as usize, now)?;
    if f.search.is_some() && page.next_cursor.is_none() {
        let (looked, lowest): (i64, Option<i64>) = conn
            .prepare_cached(&format!("SELECT count(*), min(seq) FROM ({window})"))?
            .query_row(
                rusqlite::params_from_iter(args[..filter_args].iter()),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        crate::listing::continue_search(&mut page, looked, lowest);
    }
    Ok(page)
}

fn counts(conn: &Connection, name: &str) -> Result<StateCounts, StoreError> {
    let mut c = StateCounts::default();
    let mut stmt = conn.prepare_cached("SELECT state, n FROM queue_counts WHERE queue = ?1")?;
    let mut rows = stmt.query([name])?;
    while let Some(r) = rows.next()? {
        if let Some(s) = JobState::from_code(r.get(0)?) {
            *c.get_mut(s) = r.get::<_, i64>(1)?.max(0) as u64;
        }
    }
    Ok(c)
}

/// The stored settings of every queue (or the one named): name, paused, limits.
pub(crate) fn settings(
    conn: &Connection,
    name: Option<&str>,
) -> Result<Vec<(String, bool, QueueLimits)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, paused, max_depth, concurrency, rate FROM queues \
         WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            LimitColumns {
                max_depth: r.get(2)?,
                concurrency: r.get(3)?,
                rate: r.get(4)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, paused, columns) = row?;
        out.push((name, paused, columns.limits()?));
    }
    Ok(out)
}

pub(crate) fn queue(conn: &Connection, name: &str) -> Result<Option<Queue>, StoreError> {
    Ok(queues_named(conn, Some(name))?.pop())
}

pub(crate) fn queues(conn: &Connection) -> Result<Vec<Queue>, StoreError> {
    queues_named(conn, None)
}

fn queues_named(conn: &Connection, name: Option<&str>) -> Result<Vec<Queue>, StoreError> {
    settings(conn, name)?
        .into_iter()
        .map(|(name, paused, limits)| {
            let counts = counts(conn, &name)?;
            Ok(Queue {
                name,
                paused,
                limits,
                counts,
            })
        })
        .collect()
}

/// The newest dead job of `queue`, by internal key.
pub(crate) fn last_dead_seq(conn: &Connection, queue: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(&LAST_DEAD)?
        .query_row([queue], |r| r.get(0))?)
}

/// Jobs leased now, per worker (the running set is small: it is bounded by the
/// workers' concurrency, and read through its partial index).
pub(crate) fn running_by_worker(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    let mut stmt = conn.prepare_cached(&RUNNING_BY_WORKER)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (worker, n) = row?;
        out.insert(worker, n.max(0) as u64);
    }
    Ok(out)
}

/// A schedule row as stored: its body, and the timing a fire writes beside it.
pub(crate) struct ScheduleRow {
    pub body: String,
    /// `next_due`: the schedule's `next_run_at` (the body's is as of its last save).
    pub next_due: Option<i64>,
    /// `last_run`: its `last_run_at` when a fire moved it past the body's.
    pub last_run: Option<i64>,
}

/// The columns of a [`ScheduleRow`], in its order.
pub(crate) const SCHEDULE_COLUMNS: &str = "body, next_due, last_run";

impl ScheduleRow {
    pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Self::from_row_at(r, 0)
    }

    /// The row whose columns start at column `first` of `r`.
    pub fn from_row_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(ScheduleRow {
            body: r.get(first)?,
            next_due: r.get(first + 1)?,
            last_run: r.get(first + 2)?,
        })
    }

    /// Sets `s` (parsed from this row's body) to the row's timing.
    pub fn time(&self, s: &mut Schedule) -> Result<(), StoreError> {
        s.next_run_at = self.next_due.map(rows::ts).transpose()?;
        if let Some(last) = self.last_run.map(rows::ts).transpose()? {
            s.record_run(last);
        }
        Ok(())
    }

    /// The schedule this row holds.
    pub fn schedule(&self) -> Result<Schedule, StoreError> {
        let mut s = serde_json::from_str(&self.body)?;
        self.time(&mut s)?;
        Ok(s)
    }
}

/// One schedule by id.
pub(crate) fn schedule(conn: &Connection, id: Uuid) -> Result<Option<Schedule>, StoreError> {
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1")
    });
    let row = conn
        .prepare_cached(&ONE)?
        .query_row([id.as_bytes()], ScheduleRow::from_row)
        .optional()?;
    row.map(|r| r.schedule()).transpose()
}

/// Every schedule, by name.
pub(crate) fn schedules(conn: &Connection) -> Result<Vec<Schedule>, StoreError> {
    static ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
    });
    let rows: Vec<ScheduleRow> = conn
        .prepare_cached(&ALL)?
        .query_map([], ScheduleRow::from_row)?
        .collect::<Result<_, _>>()?;
    rows.iter().map(ScheduleRow::schedule).collect()
}

/// The saved workers, most recently seen first.
pub(crate) fn workers(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<kairos_core::worker::Sighting>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, queues, hostname, version, started_at, last_seen_at FROM workers
         ORDER BY last_seen_at DESC, name LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            rows::ts(r.get(4)?)?,
            rows::ts(r.get(5)?)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, queues, hostname, version, started_at, last_seen_at) = row?;
        out.push(kairos_core::worker::Sighting {
            name,
            queues: serde_json::from_str(&queues)?,
            hostname,
            version,
            started_at,
            last_seen_at,
        });
    }
    Ok(out)
}
