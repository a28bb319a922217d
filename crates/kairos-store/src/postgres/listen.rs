//! Cross-node wake-ups: every commit that made jobs available, moved a due time or
//! resumed a queue also sends a `NOTIFY` on the schema's channel (delivered by PostgreSQL
//! only if and when the transaction commits), and every node keeps one dedicated
//! connection `LISTEN`ing on it, turning what other nodes did into the same [`Signals`]
//! its own commits raise. A worker long-polling node B is so woken by a job enqueued
//! through node A within milliseconds.
//!
//! Notifications are hints, like every signal: one lost (the listening connection was
//! down) only delays a job until the engine's poll, never strands it, and on every
//! (re)connect the listener wakes everything once so waiters look again.
//!
//! The same connection watches the database: it probes it every second, and while it
//! cannot reach it the store refuses every operation at once (503) instead of letting
//! each wait on a dead connection.
//!
//! `LISTEN` needs a session of its own: behind a transaction-mode pooler it must point at
//! PostgreSQL directly.

use super::tx::Effects;
use crate::Signals;
use kairos_core::Timestamp;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

/// PostgreSQL's limit on a notification payload is 8000 bytes; past this, one `*` line
/// ("wake everything") stands for the rest.
const MAX_PAYLOAD: usize = 7_000;

/// The channel of `schema` (channels are database-wide; schemas share a database).
pub(crate) fn channel(schema: &str) -> String {
    let mut name = format!("kairos_{schema}");
    // Identifiers are at most 63 bytes; cut on a character boundary.
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// The payload announcing `e` (made by `node`), or `None` when it announces nothing.
///
/// Lines: `n <node>` first, then `a <count> <queue>` (jobs available), `r <queue>`
/// (resumed), `d <µs>` (the earliest due time), or `*` (wake everything).
pub(crate) fn payload(node: Uuid, e: &Effects) -> Option<String> {
    let c = &e.changes;
    if c.available.is_empty() && c.due.is_none() && e.resumed.is_empty() {
        return None;
    }
    let mut out = format!("n {node}\n");
    if let Some(d) = c.due {
        let _ = writeln!(out, "d {}", d.as_microsecond());
    }
    let lines = c
        .available
        .iter()
        .map(|(q, n)| format!("a {n} {q}\n"))
        .chain(e.resumed.iter().map(|q| format!("r {q}\n")));
    for line in lines {
        if out.len() + line.len() > MAX_PAYLOAD {
            out.push_str("*\n");
            break;
        }
        out.push_str(&line);
    }
    Some(out)
}

/// Raises what a payload from another node announces.
fn apply(own: Uuid, payload: &str, signals: &Signals) {
    let mut lines = payload.lines();
    if lines.next().and_then(|l| l.strip_prefix("n ")) == Some(own.to_string().as_str()) {
        return; // this node's own commit, announced already
    }
    for line in lines {
        match line.split_once(' ') {
            Some(("a", rest)) => {
                if let Some((n, queue)) = rest.split_once(' ') {
                    signals.jobs_available(queue, n.parse().unwrap_or(1));
                }
            }
            Some(("r", queue)) => signals.queue_changed(queue),
            Some(("d", us)) => {
                if let Some(at) = us
                    .parse()
                    .ok()
                    .and_then(|us| Timestamp::from_microsecond(us).ok())
                {
                    signals.due_at(at);
                }
            }
            _ if line == "*" => signals.wake_all(),
            _ => {}
        }
    }
}

/// How often the listening connection asks the database whether it answers.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe may take before the database counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between attempts to reach the database again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Listens on `channel` until aborted, reconnecting with backoff. While its connection
/// is up and its probes are answered, `reachable` is true; the moment either fails it is
/// false (every operation is then refused at once, and waiting leases end), until a new
/// connection listens again.
pub(crate) async fn run(
    config: tokio_postgres::Config,
    channel: String,
    own: Uuid,
    signals: Arc<Signals>,
    reachable: Arc<watch::Sender<bool>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let why = match listen_once(&config, &channel, own, &signals, &reachable).await {
            Ok(()) => "the connection closed".to_string(),
            Err(e) => e,
        };
        if reachable.send_replace(false) {
            tracing::error!(error = %why, "the database is unreachable: operations answer 503 and readiness fails until it is back");
            backoff = Duration::from_millis(100);
        }
        // Waiting leases look again, and end: the store refuses them now.
        signals.wake_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening session: answers (why) when its connection ends or stops answering.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    own: Uuid,
    signals: &Signals,
    reachable: &watch::Sender<bool>,
) -> Result<(), String> {
    let (client, mut conn) =
        tokio::time::timeout(PROBE_TIMEOUT, config.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let listen = format!("LISTEN {}", super::schema::ident(channel));
    tokio::time::timeout(PROBE_TIMEOUT, client.batch_execute(&listen))
        .await
        .map_err(|_| "LISTEN timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tracing::debug!(channel, "listening for other nodes' commits");
    if !reachable.send_replace(true) {
        tracing::info!("the database answers again: operations and readiness resume");
    }
    // What happened while nobody listened is unknown: everyone looks again.
    signals.wake_all();
    signals.due_at(Timestamp::now());
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let result = loop {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(p) => apply(own, &p, signals),
                None => break Err("the listening connection closed".to_string()),
            },
            _ = probe.tick() => {
                match tokio::time::timeout(PROBE_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(e.to_string()),
                    Err(_) => break Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                }
            }
        }
    };
    pump.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::JobState;

    #[tokio::test]
    async fn payloads_carry_available_resumed_and_due_and_skip_their_own_node() {
        let mut e = Effects::default();
        e.changes.available.insert("mail".into(), 3);
        e.changes.due = Some(Timestamp::from_microsecond(42).unwrap());
        e.changes
            .counts
            .insert(("mail".into(), JobState::Available), 3);
        e.resumed.push("reports".into());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let text = payload(a, &e).unwrap();
        let signals = Arc::new(Signals::default());
        let watch = signals.watch("mail");
        let woken = watch.notify().notified();
        apply(a, &text, &signals);
        assert_eq!(signals.next_due(), None, "a node ignores its own commits");
        apply(b, &text, &signals);
        assert_eq!(signals.next_due(), Timestamp::from_microsecond(42).ok());
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("another node's jobs wake this node's waiters");
    }

    #[test]
    fn a_payload_past_the_limit_says_wake_everything() {
        let mut e = Effects::default();
        for i in 0..1_000 {
            e.changes
                .available
                .insert(format!("queue-{i:04}-{}", "x".repeat(40)), 1);
        }
        let text = payload(Uuid::now_v7(), &e).unwrap();
        assert!(text.len() < 8_000);
        assert!(text.ends_with("*\n"));
    }

    #[test]
    fn nothing_to_announce_sends_nothing() {
        assert!(payload(Uuid::now_v7(), &Effects::default()).is_none());
    }
}
