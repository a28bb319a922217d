//! Cross-node wake-ups, the receiving half: what other nodes' commits made available,
//! moved or resumed reaches this node as a `NOTIFY` on the schema's channel (sent after
//! those commits, see [`super::notify`]), and every node keeps one dedicated connection
//! `LISTEN`ing on it, turning what other nodes did into the same [`Signals`] its own
//! commits raise. A worker long-polling node B is so woken by a job enqueued
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

use crate::Signals;
use kairos_core::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

/// The channel of `schema` (channels are database-wide; schemas share a database).
pub(crate) fn channel(schema: &str) -> String {
    let mut name = format!("kairos_{schema}");
    // Identifiers are at most 63 bytes; cut on a character boundary.
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// Raises what a payload from another node announces (see [`super::notify`]).
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
            Some(("e", id)) => {
                if let Ok(id) = id.parse() {
                    signals.events_committed(id);
                }
            }
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
    use super::super::notify::Pending;
    use super::super::tx::Effects;
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
        let mut pending = Pending::default();
        pending.add(&e);
        let text = pending.payload(a).unwrap();
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
}
