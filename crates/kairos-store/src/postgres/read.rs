//! Queries outside a transaction (each statement sees one committed snapshot), and the
//! queue read that a write answers with from inside its own.

use super::Inner;
use super::rows::{self, JOB_COLUMNS};
use super::tx::Tx;
use crate::limits::LimitColumns;
use crate::states::statement;
use crate::{StoreError, visible};
use deadpool_postgres::Object;
use kairos_core::api::{JobFilter, JobPage};
use kairos_core::schedule::Schedule;
use kairos_core::{JobState, Queue, StateCounts, Timestamp};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

statement!(LAST_DEAD = "SELECT max(seq) FROM jobs WHERE queue = $1 AND state = {dead}");

/// Counts and pause flags of every queue (or one), from the folded counts plus the
/// deltas not folded yet: exact, and no row every writer updates.
const QUEUES: &str = "SELECT q.name, q.paused, q.max_depth, q.concurrency, q.rate, \
     c.state, c.n FROM queues q \
     LEFT JOIN (SELECT queue, state, sum(n)::bigint AS n FROM \
       (SELECT queue, state, n FROM queue_counts \
        UNION ALL SELECT queue, state, n FROM queue_count_deltas) AS all_counts \
       GROUP BY queue, state) AS c ON c.queue = q.name \
     WHERE $1::text IS NULL OR q.name = $1 ORDER BY q.name";

/// The database's clock now (the pinned one in tests), read on `client`.
pub(crate) async fn now(inner: &Inner, client: &Object) -> Result<Timestamp, StoreError> {
    if let Some(pinned) = inner.pinned_clock() {
        return Ok(pinned);
    }
    let stmt = client.prepare_cached("SELECT now()").await?;
    let sent = Timestamp::now();
    let now: Timestamp = client.query_one(&stmt, &[]).await?.try_get(0)?;
    inner.observe_clock(now, sent);
    Ok(now)
}

/// Whether the database answers.
pub(crate) async fn ping(inner: &Inner) -> Result<(), StoreError> {
    let client = inner.connection().await?;
    now(inner, &client).await.map(|_| ())
}

/// The earliest due time `sql` finds.
pub(crate) async fn next_due(inner: &Inner, sql: &str) -> Result<Option<Timestamp>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
}

pub(crate) async fn job(inner: &Inner, id: Uuid) -> Result<Option<kairos_core::Job>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .await?;
    // The clock and the row in one round trip.
    let (now, rows) = tokio::try_join!(now(inner, &client), async {
        Ok(client.query(&stmt, &[&id]).await?)
    })?;
    rows.first()
        .map(|r| rows::job_from_row(r).map(|s| visible(s.job, now)))
        .transpose()
}

pub(crate) async fn list(inner: &Inner, f: JobFilter) -> Result<JobPage, StoreError> {
    let client = inner.connection().await?;
    // Read first: the filter on available jobs compares run_at with it.
    let now = now(inner, &client).await?;
    // The filters, as `AND …` clauses over `jobs`, with their arguments.
    type Arg = Box<dyn ToSql + Sync + Send>;
    // Appends `clause` with its `?`s numbered as the argument `v` it adds.
    fn push(sql: &mut String, args: &mut Vec<Arg>, clause: &str, v: Arg) {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    }
    let mut filters = String::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: Arg| push(sql, &mut args, clause, v);
    if let Some(q) = f.queue {
        arg(&mut filters, " AND queue = ?", Box::new(q));
    }
    if let Some(k) = f.kind {
        arg(&mut filters, " AND kind = ?", Box::new(k));
    }
    if let Some(id) = f.schedule_id {
        arg(&mut filters, " AND schedule_id = ?", Box::new(id));
    }
    let waiting = crate::states::set(&JobState::WAITING);
    match f.state {
        // A waiting job whose time has come reads as available.
        Some(JobState::Available) => arg(
            &mut filters,
            &format!(
                " AND (state = {} OR (state IN {waiting} AND run_at <= ?))",
                JobState::Available.code()
            ),
            Box::new(now),
        ),
        Some(s) if s.is_waiting() => {
            filters.push_str(&format!(" AND state = {}", s.code()));
            arg(&mut filters, " AND run_at > ?", Box::new(now));
        }
        Some(s) => filters.push_str(&format!(" AND state = {}", s.code())),
        None => {}
    }
    if let Some(cursor) = f.cursor {
        let seq = crate::listing::cursor_seq(&cursor)?;
        arg(&mut filters, " AND seq < ?", Box::new(seq));
    }
    let filter_args = args.len();
    let window = format!(
        "SELECT seq FROM jobs WHERE true{filters} ORDER BY seq DESC LIMIT {}",
        crate::listing::SEARCH_WINDOW
    );
    let mut sql = match &f.search {
        None => format!("SELECT {JOB_COLUMNS} FROM jobs WHERE true{filters}"),
        // A search looks at the newest `SEARCH_WINDOW` jobs the filters allow, and
        // matches them as `JobSearch::matches` says.
        Some(search) => {
            let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq IN ({window}) AND (");
            let mut arg = |sql: &mut String, clause: &str, v: Arg| push(sql, &mut args, clause, v);
            if let Some(id) = search.id {
                arg(&mut sql, "id = ? OR ", Box::new(id));
            }
            arg(
                &mut sql,
                "strpos(kind, ?) > 0 OR strpos(coalesce(unique_key, ''), ?) > 0 \
                 OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(jobs.tags::jsonb) AS t(tag) \
                 WHERE strpos(t.tag, ?) > 0))",
                Box::new(search.text.clone()),
            );
            sql
        }
    };
    push(
        &mut sql,
        &mut args,
        " ORDER BY seq DESC LIMIT ?",
        Box::new(f.limit as i64 + 1),
    );
    let stmt = client.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
    let rows = client.query(&stmt, &params).await?;
    let rows = rows
        .iter()
        .map(|r| rows::job_from_row(r).map(|s| (s.seq, s.job)));
    let mut page = crate::listing::page(rows, f.limit as usize, now)?;
    if f.search.is_some() && page.next_cursor.is_none() {
        let stmt = client
            .prepare_cached(&format!("SELECT count(*), min(seq) FROM ({window}) AS w"))
            .await?;
        let row = client.query_one(&stmt, &params[..filter_args]).await?;
        crate::listing::continue_search(&mut page, row.try_get(0)?, row.try_get(1)?);
    }
    Ok(page)
}

statement!(
    /// The oldest `run_at` among a queue's available jobs, by `jobs_lease`: a skip-scan
    /// from one priority in use to the next, the first `run_at` of each.
    OLDEST_AVAILABLE = "WITH RECURSIVE p(pr) AS ( \
     SELECT max(priority) FROM jobs WHERE queue = $1 AND state = {available} \
     UNION ALL SELECT (SELECT max(priority) FROM jobs \
       WHERE queue = $1 AND state = {available} AND priority < p.pr) FROM p WHERE p.pr IS NOT NULL) \
     SELECT min((SELECT min(run_at) FROM jobs \
       WHERE queue = $1 AND state = {available} AND priority = p.pr)) FROM p WHERE p.pr IS NOT NULL"
);

pub(crate) async fn oldest_available(
    inner: &Inner,
    queue: &str,
) -> Result<Option<Timestamp>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client.prepare_cached(&OLDEST_AVAILABLE).await?;
    Ok(client.query_one(&stmt, &[&queue]).await?.try_get(0)?)
}

fn queues_from(rows: &[tokio_postgres::Row]) -> Result<Vec<Queue>, StoreError> {
    let mut out: Vec<Queue> = Vec::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        if out.last().is_none_or(|q| q.name != name) {
            let limits = LimitColumns {
                max_depth: r.try_get(2)?,
                concurrency: r.try_get(3)?,
                rate: r.try_get(4)?,
            };
            out.push(Queue {
                name: name.clone(),
                paused: r.try_get(1)?,
                limits: limits.limits()?,
                counts: StateCounts::default(),
            });
        }
        let queue = out.last_mut().expect("pushed above");
        let state: Option<i16> = r.try_get(5)?;
        let n: Option<i64> = r.try_get(6)?;
        if let (Some(state), Some(n)) = (state, n)
            && let Some(s) = u8::try_from(state).ok().and_then(JobState::from_code)
        {
            *queue.counts.get_mut(s) = n.max(0) as u64;
        }
    }
    Ok(out)
}

/// Every queue (or the one named).
pub(crate) async fn queues(inner: &Inner, name: Option<&str>) -> Result<Vec<Queue>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client.prepare_cached(QUEUES).await?;
    queues_from(&client.query(&stmt, &[&name]).await?)
}

/// The same, inside a write's transaction (it sees the write's own changes).
pub(crate) async fn queues_in(tx: &Tx, name: Option<&str>) -> Result<Vec<Queue>, StoreError> {
    queues_from(&tx.query(QUEUES, &[&name]).await?)
}

statement!(
    RUNNING_BY_WORKER = "SELECT lease_worker, count(*) FROM jobs WHERE state = {running} \
     AND lease_worker IS NOT NULL GROUP BY lease_worker"
);

/// Jobs leased now, per worker (read through the running jobs' partial index).
pub(crate) async fn running_by_worker(
    inner: &Inner,
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client.prepare_cached(&RUNNING_BY_WORKER).await?;
    let mut out = std::collections::HashMap::new();
    for row in client.query(&stmt, &[]).await? {
        let n: i64 = row.try_get(1)?;
        out.insert(row.try_get(0)?, n.max(0) as u64);
    }
    Ok(out)
}

/// The newest dead job of `queue`, by internal key.
pub(crate) async fn last_dead_seq(inner: &Inner, queue: String) -> Result<Option<i64>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client.prepare_cached(&LAST_DEAD).await?;
    Ok(client.query_one(&stmt, &[&queue]).await?.try_get(0)?)
}

pub(crate) async fn schedule(inner: &Inner, id: Uuid) -> Result<Option<Schedule>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("SELECT body FROM schedules WHERE id = $1")
        .await?;
    let rows = client.query(&stmt, &[&id]).await?;
    rows.first()
        .map(|r| Ok(serde_json::from_str(r.try_get(0)?)?))
        .transpose()
}

pub(crate) async fn schedules(inner: &Inner) -> Result<Vec<Schedule>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("SELECT body FROM schedules ORDER BY name")
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| Ok(serde_json::from_str(r.try_get(0)?)?))
        .collect()
}

/// The saved workers, most recently seen first.
pub(crate) async fn workers(
    inner: &Inner,
    limit: usize,
) -> Result<Vec<kairos_core::worker::Sighting>, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "SELECT name, queues, hostname, version, started_at, last_seen_at FROM workers
             ORDER BY last_seen_at DESC, name LIMIT $1",
        )
        .await?;
    let mut out = Vec::new();
    for row in client.query(&stmt, &[&(limit as i64)]).await? {
        out.push(kairos_core::worker::Sighting {
            name: row.try_get(0)?,
            queues: row.try_get(1)?,
            hostname: row.try_get(2)?,
            version: row.try_get(3)?,
            started_at: row.try_get(4)?,
            last_seen_at: row.try_get(5)?,
        });
    }
    Ok(out)
}
