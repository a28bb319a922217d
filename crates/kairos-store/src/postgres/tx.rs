//! One store operation's transaction: a pooled connection, the database clock read at
//! its start, the jobs it changed, and what to announce once it commits.
//!
//! Round trips are what a PostgreSQL queue pays for, so a transaction opens with its
//! first query in the same round trip (`BEGIN`, the clock and the first `SELECT` are
//! pipelined), and closes with every changed job written by one `unnest` statement, the
//! count deltas and `COMMIT`, again in one round trip.

use super::Inner;
use super::events::{BatchRows, INSERT_EVENTS};
use super::rows::{SavedRows, StoredJob};
use crate::StoreError;
use crate::changes::Changes;
use deadpool_postgres::Object;
use kairos_core::event::NewEvent;
use kairos_core::machine::Happened;
use kairos_core::{Job, JobState, Timestamp};
use std::collections::BTreeMap;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Opens a transaction.
pub(crate) const BEGIN: &str = "BEGIN";

/// Opens a transaction whose rows come in index order, never sorted. Leasing takes the
/// first rows of a partial index in its order; planned from statistics that a burst made
/// stale (an empty table that now holds 50,000 available jobs), PostgreSQL may instead
/// read every matching row and sort them all to keep 200: measured at 178 ms per lease
/// against under 1 ms, a quarter of PostgreSQL's time in a W1 run. (Sequential and bitmap
/// scans are off for every session, see `pool`.)
pub(crate) const BEGIN_INDEX_ORDER: &str = "BEGIN; SET LOCAL enable_sort = off";

/// A query's SQL and parameters.
pub(crate) type Query<'a> = (&'a str, &'a [&'a (dyn ToSql + Sync)]);

/// Post-commit consequences: the job changes' counts and wake-ups, resumed queues, and
/// queues this transaction created.
#[derive(Default)]
pub(crate) struct Effects {
    pub changes: Changes,
    pub resumed: Vec<String>,
    pub new_queues: Vec<String>,
    /// The commit wrote events (they wait to be numbered).
    pub wrote_events: bool,
}

/// An open transaction.
pub(crate) struct Tx {
    /// `None` once committed or rolled back.
    client: Option<Object>,
    /// The database's clock at the transaction's start (`kairos_now()`): every time this
    /// transaction writes or compares is judged by it.
    pub now: Timestamp,
    changed: BTreeMap<i64, StoredJob>,
    pub effects: Effects,
}

impl Tx {
    /// Opens a transaction and runs `first` in the same round trip.
    pub(crate) async fn begin(
        inner: &Inner,
        first: Option<Query<'_>>,
    ) -> Result<(Tx, Vec<Row>), StoreError> {
        let queries: Vec<Query<'_>> = first.into_iter().collect();
        let (tx, mut rows) = Tx::open(inner, BEGIN, &queries).await?;
        Ok((tx, rows.pop().unwrap_or_default()))
    }

    /// Opens a transaction (with `begin`: [`BEGIN`] or [`BEGIN_INDEX_ORDER`]) and runs
    /// `queries` in order, all in the same round trip; answers each one's rows.
    pub(crate) async fn open(
        inner: &Inner,
        begin: &'static str,
        queries: &[Query<'_>],
    ) -> Result<(Tx, Vec<Vec<Row>>), StoreError> {
        let client = inner.connection().await?;
        let now_stmt = client.prepare_cached("SELECT kairos_now()").await?;
        let mut stmts = Vec::with_capacity(queries.len());
        for (sql, _) in queries {
            stmts.push(client.prepare_cached(sql).await?);
        }
        // As the text `kairos.clock` takes.
        let pinned = inner.pinned_clock().map(|t| t.to_string());
        let pin = match &pinned {
            Some(_) => Some(
                client
                    .prepare_cached("SELECT set_config('kairos.clock', $1, true)")
                    .await?,
            ),
            None => None,
        };
        let sent = Timestamp::now();
        let opened = {
            let c: &tokio_postgres::Client = &client;
            // The simple protocol: `begin` may be several statements, in one message.
            let begin_f = c.batch_execute(begin);
            let pin_f = async {
                match (&pin, &pinned) {
                    (Some(stmt), Some(at)) => c.execute(stmt, &[at]).await.map(|_| ()),
                    _ => Ok(()),
                }
            };
            let now_f = c.query_one(&now_stmt, &[]);
            // Each query is sent when first polled, in order: one round trip for all.
            let queries_f = futures_util::future::try_join_all(
                stmts
                    .iter()
                    .zip(queries)
                    .map(|(stmt, (_, params))| c.query(stmt, params)),
            );
            tokio::try_join!(begin_f, pin_f, now_f, queries_f)
        };
        let mut tx = Tx {
            client: Some(client),
            now: Timestamp::UNIX_EPOCH,
            changed: BTreeMap::new(),
            effects: Effects::default(),
        };
        let (now_row, rows) = match opened {
            Ok((_, _, now_row, rows)) => (now_row, rows),
            Err(e) => {
                // BEGIN went through: the connection must not go back to the pool with its
                // (failed) transaction open.
                tx.rollback().await;
                return Err(e.into());
            }
        };
        let now: Timestamp = match now_row.try_get(0) {
            Ok(now) => now,
            Err(e) => {
                tx.rollback().await;
                return Err(e.into());
            }
        };
        tx.now = now;
        inner.observe_clock(now, sent);
        Ok((tx, rows))
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("the transaction is open")
    }

    /// Runs a query inside the transaction.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.client();
        let stmt = c.prepare_cached(sql).await?;
        Ok(c.query(&stmt, params).await?)
    }

    /// Runs a statement inside the transaction; answers the rows it touched.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let c = self.client();
        let stmt = c.prepare_cached(sql).await?;
        Ok(c.execute(&stmt, params).await?)
    }

    /// The latest version of a job this transaction changed, else `stored` as read.
    pub(crate) fn current(&self, stored: StoredJob) -> StoredJob {
        match self.changed.get(&stored.seq) {
            Some(changed) => changed.clone(),
            None => stored,
        }
    }

    /// A job changed by a transition that made the events `happened`: written back at
    /// commit (once, however many times it changed), its count and wake-ups accounted
    /// then; its events are written at commit, in the order they happened.
    pub(crate) fn save(&mut self, stored: StoredJob, happened: Happened) {
        self.effects
            .changes
            .happened(happened, &stored.job, self.now);
        match self.changed.get_mut(&stored.seq) {
            Some(prev) => prev.job = stored.job,
            None => {
                self.changed.insert(stored.seq, stored);
            }
        }
    }

    /// Writes every changed job now (a later statement of this transaction must see them).
    pub(crate) async fn flush(&mut self) -> Result<(), StoreError> {
        let rows = self.take_changed()?;
        if !rows.is_empty() {
            self.execute(super::rows::SAVE_JOBS, &rows.params()).await?;
        }
        Ok(())
    }

    fn take_changed(&mut self) -> Result<SavedRows, StoreError> {
        let mut rows = SavedRows::default();
        for (seq, stored) in std::mem::take(&mut self.changed) {
            rows.push(seq, &stored.job)?;
            self.account(
                &stored.job.queue.clone(),
                Some(stored.stored_state),
                Some(&stored.job),
            );
        }
        Ok(rows)
    }

    /// Count deltas, wake-ups and due times that follow from a job changing.
    pub(crate) fn account(&mut self, queue: &str, from: Option<JobState>, to: Option<&Job>) {
        self.effects.changes.account(queue, from, to);
    }

    /// Records an event that is no job transition (a queue or schedule change).
    pub(crate) fn event(&mut self, event: NewEvent) {
        self.effects.changes.event(event);
    }

    /// Something is due at `at`: the timer wakes for it after commit.
    pub(crate) fn due_at(&mut self, at: Timestamp) {
        self.effects.changes.due_at(at);
    }

    /// Writes the changed jobs and the count deltas, and commits, in one round trip.
    /// Answers what to announce.
    pub(crate) async fn commit(mut self) -> Result<Effects, StoreError> {
        let started = std::time::Instant::now();
        let rows = self.take_changed()?;
        let (queues, states, deltas) = self.effects.changes.count_columns();
        let events = BatchRows::of(&std::mem::take(&mut self.effects.changes.events));
        let client = self.client.take().expect("the transaction is open");
        let save = client.prepare_cached(super::rows::SAVE_JOBS).await?;
        let insert_events = client.prepare_cached(INSERT_EVENTS).await?;
        let count = client
            .prepare_cached(
                "INSERT INTO queue_count_deltas (queue, state, n) \
                 SELECT * FROM unnest($1::text[], $2::smallint[], $3::bigint[])",
            )
            .await?;
        let commit = client.prepare_cached("COMMIT").await?;
        let result = {
            let c: &tokio_postgres::Client = &client;
            let save_f = async {
                if rows.is_empty() {
                    Ok(0)
                } else {
                    c.execute(&save, &rows.params()).await
                }
            };
            let count_f = async {
                if queues.is_empty() {
                    Ok(0)
                } else {
                    c.execute(&count, &[&queues, &states, &deltas]).await
                }
            };
            let events_f = async {
                match &events {
                    None => Ok(0),
                    Some(batch) => c.execute(&insert_events, &batch.params()).await,
                }
            };
            tokio::try_join!(save_f, count_f, events_f, c.execute(&commit, &[]))
        };
        match result {
            Ok(_) => {
                let mut effects = std::mem::take(&mut self.effects);
                effects.wrote_events = events.is_some();
                effects.changes.commit = Some((started.elapsed().as_secs_f64(), 1));
                Ok(effects)
            }
            Err(e) => {
                // Whether COMMIT was sent, and became a rollback, cannot be told from
                // here for every failure: the connection is closed rather than trusted.
                drop(Object::take(client));
                Err(e.into())
            }
        }
    }

    /// Rolls back (the operation failed).
    pub(crate) async fn rollback(mut self) {
        if let Some(client) = self.client.take() {
            let ok = match client.prepare_cached("ROLLBACK").await {
                Ok(stmt) => client.execute(&stmt, &[]).await.is_ok(),
                Err(_) => false,
            };
            if !ok {
                // Never hand a connection with an open transaction back to the pool.
                drop(Object::take(client));
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Dropped while open (a panic): the connection may hold an open transaction, so
        // it is closed instead of going back to the pool.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}
