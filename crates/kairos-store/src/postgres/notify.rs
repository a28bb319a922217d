//! Cross-node wake-ups, the sending half (`listen` is the receiving one): what this
//! node's commits announce (jobs made available, an earlier due time, resumed queues) is
//! merged here and sent as one `NOTIFY` by a task of its own, after the commits it
//! describes.
//!
//! Not inside those transactions: PostgreSQL serialises every committing transaction
//! that notified under one database-wide lock, held through its WAL flush, so a `NOTIFY`
//! per commit made the commits of every node queue behind each other (in a W2 run, 559 of
//! 650 samples of busy backends were waiting for that lock at `COMMIT`; p50 27 ms). Sent
//! after, by one task, what piles up while one notification is on its way goes out in
//! the next. A node that dies between a commit and its notification loses a hint only:
//! the other nodes' poll finds the job within a second.

use super::tx::Effects;
use deadpool_postgres::Pool;
use kairos_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use uuid::Uuid;

/// PostgreSQL's limit on a notification payload is 8000 bytes; past this, one `*` line
/// ("wake everything") stands for the rest.
const MAX_PAYLOAD: usize = 7_000;

/// Queues one pending announcement names at most; past it, it says "wake everything"
/// (so what waits for the sender stays small whatever the commits touched).
const MAX_QUEUES: usize = 1_000;

/// What this node's commits announced and no notification has carried yet.
#[derive(Default)]
pub(crate) struct Announcements {
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Announcements {
    /// Adds what a commit announces; the sender sends it soon.
    pub(crate) fn add(&self, e: &Effects) {
        let c = &e.changes;
        if c.available.is_empty() && c.due.is_none() && e.resumed.is_empty() {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(e);
        self.ready.notify_one();
    }

    /// Events up to `head` are numbered: other nodes' event readers look again.
    pub(crate) fn add_events(&self, head: u64) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.events = Some(p.events.map_or(head, |h| h.max(head)));
        drop(p);
        self.ready.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Announcements merged: counts summed, the earliest due time.
#[derive(Default, Debug)]
pub(crate) struct Pending {
    available: BTreeMap<String, u64>,
    resumed: BTreeSet<String>,
    due: Option<Timestamp>,
    /// The event head, numbered up to here.
    events: Option<u64>,
    everything: bool,
}

impl Pending {
    pub(crate) fn add(&mut self, e: &Effects) {
        let c = &e.changes;
        self.due = match (self.due, c.due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.everything {
            return;
        }
        for (queue, n) in &c.available {
            *self.available.entry(queue.clone()).or_default() += n;
        }
        self.resumed.extend(e.resumed.iter().cloned());
        if self.available.len() + self.resumed.len() > MAX_QUEUES {
            self.available.clear();
            self.resumed.clear();
            self.everything = true;
        }
    }

    /// The payload (sent by `node`), or `None` when there is nothing to say.
    ///
    /// Lines: `n <node>` first, then `e <id>` (events numbered up to), `d <µs>` (the
    /// earliest due time), `a <count> <queue>` (jobs available), `r <queue>` (resumed),
    /// or `*` (wake everything).
    pub(crate) fn payload(&self, node: Uuid) -> Option<String> {
        let mut out = format!("n {node}\n");
        if let Some(e) = self.events {
            let _ = writeln!(out, "e {e}");
        }
        if self.available.is_empty() && self.due.is_none() && self.resumed.is_empty() {
            if self.everything {
                out.push_str("*\n");
            }
            return (self.everything || self.events.is_some()).then_some(out);
        }
        if let Some(d) = self.due {
            let _ = writeln!(out, "d {}", d.as_microsecond());
        }
        if self.everything {
            out.push_str("*\n");
            return Some(out);
        }
        let lines = self
            .available
            .iter()
            .map(|(q, n)| format!("a {n} {q}\n"))
            .chain(self.resumed.iter().map(|q| format!("r {q}\n")));
        for line in lines {
            if out.len() + line.len() > MAX_PAYLOAD {
                out.push_str("*\n");
                break;
            }
            out.push_str(&line);
        }
        Some(out)
    }
}

/// Sends what is announced, one notification at a time, until aborted. A notification
/// that fails (the database is away) is dropped: the listeners wake everything when they
/// reconnect, and the poll covers the rest.
pub(crate) async fn run(pool: Pool, channel: String, node: Uuid, out: Arc<Announcements>) {
    loop {
        out.ready.notified().await;
        let Some(text) = out.take().payload(node) else {
            continue;
        };
        if let Err(e) = send(&pool, &channel, &text).await {
            tracing::debug!(error = %e, "a wake-up notification for other nodes was not sent");
        }
    }
}

/// Sends one notification in a transaction of its own, in one round trip. Its commit does
/// not wait for the WAL flush: a notification is delivered at commit either way, and one
/// lost to a crash is a hint lost (the jobs it announced are durable already).
async fn send(pool: &Pool, channel: &str, text: &str) -> Result<(), tokio_postgres::Error> {
    let Ok(client) = pool.get().await else {
        return Ok(()); // no connection: the pool's callers see why
    };
    let stmt = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
    let c: &tokio_postgres::Client = &client;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&channel, &text];
    let sent = tokio::try_join!(
        c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
        c.execute(&stmt, &params),
        c.batch_execute("COMMIT"),
    );
    if sent.is_err() {
        // Whatever failed, the connection must not go back with a transaction open.
        let _ = c.batch_execute("ROLLBACK").await;
    }
    sent.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_merge_counts_and_keep_the_earliest_due_time() {
        let mut p = Pending::default();
        let mut e = Effects::default();
        e.changes.available.insert("mail".into(), 2);
        e.changes.due = Some(Timestamp::from_microsecond(50).unwrap());
        p.add(&e);
        e.changes.due = Some(Timestamp::from_microsecond(40).unwrap());
        e.resumed.push("reports".into());
        p.add(&e);
        let node = Uuid::now_v7();
        assert_eq!(
            p.payload(node).unwrap(),
            format!("n {node}\nd 40\na 4 mail\nr reports\n")
        );
    }

    #[test]
    fn a_payload_past_the_limit_says_wake_everything() {
        let mut p = Pending::default();
        let mut e = Effects::default();
        for i in 0..900 {
            e.changes
                .available
                .insert(format!("queue-{i:04}-{}", "x".repeat(40)), 1);
        }
        p.add(&e);
        let text = p.payload(Uuid::now_v7()).unwrap();
        assert!(text.len() < 8_000);
        assert!(text.ends_with("*\n"));
    }

    #[test]
    fn many_queues_pending_become_wake_everything() {
        let mut p = Pending::default();
        let mut e = Effects::default();
        for i in 0..=MAX_QUEUES {
            e.changes.available.insert(format!("q{i}"), 1);
        }
        p.add(&e);
        let node = Uuid::now_v7();
        assert_eq!(p.payload(node).unwrap(), format!("n {node}\n*\n"));
        p.add(&e);
        assert!(
            p.available.is_empty(),
            "nothing accumulates once it says everything"
        );
    }

    #[test]
    fn nothing_to_announce_sends_nothing() {
        assert!(Pending::default().payload(Uuid::now_v7()).is_none());
    }
}
