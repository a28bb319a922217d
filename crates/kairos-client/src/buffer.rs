//! The offline buffer: what a worker could not deliver (job reports, follow-up
//! enqueues), kept in a local SQLite file and sent when the server answers again.
//!
//! A report goes into the buffer when the server cannot be reached (or answers that it
//! is unavailable) and, while it stays away, every later one goes there directly. One
//! replay task per worker sends the buffer oldest first, reconnecting with backoff, and
//! removes what the server answered. Nothing in it is lost when the worker is killed:
//! the next worker opening the same directory sends it.
//!
//! Replaying is safe by the API's contract: a report carries its lease token, and the
//! server takes it while that lease is valid and refuses it (per item, logged and
//! dropped) once the job has gone to someone else; an enqueue carries an
//! `Idempotency-Key`, so a replay answers the first one's job instead of making
//! another (keys are kept 24 h by the server).
//!
//! One file may serve several workers and servers: each entry names the server and
//! worker it belongs to, and a worker replays only its own server's entries.

use crate::{Client, ClientError, RetryPolicy};
use kairos_core::Trace;
use kairos_core::api::{AckItem, AckRequest, EnqueueRequest};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The buffer's file in its directory.
const FILE: &str = "buffer.sqlite";
/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;
/// Entries the buffer holds at most; past it, reports are refused (logged) and their
/// jobs run again after their leases.
pub const MAX_ENTRIES: u64 = 100_000;
/// Bytes of entries the buffer holds at most (bodies as JSON).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Entries one replay round reads.
const REPLAY_BATCH: usize = 100;
/// The replay's reconnect backoff.
const RECONNECT: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    base: Duration::from_millis(200),
    max_delay: Duration::from_secs(10),
};

/// Why the buffer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The file could not be opened, read or written.
    #[error("the worker's buffer at {path}: {source}")]
    Sqlite {
        /// The buffer's file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The directory could not be made.
    #[error("the worker's buffer directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file fails SQLite's check: its entries cannot be trusted.
    #[error(
        "the worker's buffer at {path} is damaged ({problem}); move it aside to start (the reports in it are lost: their jobs run again after their leases)"
    )]
    Damaged {
        /// The buffer's file.
        path: PathBuf,
        /// The first problem found.
        problem: String,
    },
    /// The file was written by a newer Kairos.
    #[error(
        "the worker's buffer at {path} has schema {found}, newer than this worker's {SCHEMA_VERSION}"
    )]
    Newer {
        /// The buffer's file.
        path: PathBuf,
        /// The schema version found.
        found: i64,
    },
    /// The buffer holds [`MAX_ENTRIES`] or [`MAX_BYTES`] already.
    #[error("the worker's buffer is full ({entries} entries, {bytes} bytes)")]
    Full {
        /// Entries held.
        entries: u64,
        /// Bytes held.
        bytes: u64,
    },
}

/// A worker's offline buffer (see the module's documentation). Open one with
/// [`Buffer::open`] and give it to [`crate::worker::Worker::buffer`].
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    entries: AtomicU64,
    bytes: AtomicU64,
    /// Raised by each new entry: the replay looks again.
    added: Notify,
}

/// An entry as written: `(worker, what, idempotency_key, body, trace)`.
type Row = (String, &'static str, Option<String>, String, Option<String>);

/// One buffered delivery.
#[derive(Debug)]
enum Entry {
    Ack {
        worker: String,
        item: AckItem,
    },
    Enqueue {
        key: String,
        request: EnqueueRequest,
        trace: Option<Trace>,
    },
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, checking it: a damaged file or one of a
    /// newer schema is refused rather than replayed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Buffer, BufferError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| BufferError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE);
        let sqlite = |source| BufferError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        // Several workers may share the file; a writer waits for another's commit.
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        let problem: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(_, _) => BufferError::Damaged {
                    path: path.clone(),
                    problem: e.to_string(),
                },
                e => sqlite(e),
            })?;
        if problem != "ok" {
            return Err(BufferError::Damaged { path, problem });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // Entries are written only while the server is away: each is worth a sync.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite)?;
        if found > SCHEMA_VERSION {
            return Err(BufferError::Newer { path, found });
        }
        if found < 1 {
            Self::create(&conn).map_err(sqlite)?;
        }
        if found < 2 {
            // Version 2: an enqueue keeps the trace context it was made in.
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 ALTER TABLE entries ADD COLUMN trace TEXT;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )
            .map_err(sqlite)?;
        }
        let (entries, bytes): (i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite)?;
        Ok(Buffer {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                entries: AtomicU64::new(entries as u64),
                bytes: AtomicU64::new(bytes as u64),
                added: Notify::new(),
            }),
        })
    }

    /// Makes the schema (version 1) in a new file.
    fn create(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS entries (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                server TEXT NOT NULL,
                worker TEXT NOT NULL,
                what TEXT NOT NULL CHECK (what IN ('ack', 'enqueue')),
                idempotency_key TEXT,
                body TEXT NOT NULL,
                buffered_at INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS entries_by_server ON entries (server, seq);
            PRAGMA user_version = 1;
            COMMIT;",
        )
    }

    /// Where a worker's buffer lives unless it is told: `$XDG_CACHE_HOME/kairos/worker`,
    /// else `~/.cache/kairos/worker`, else `kairos-worker` in the temporary directory.
    pub fn default_dir() -> PathBuf {
        let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
        if let Some(cache) = from("XDG_CACHE_HOME") {
            PathBuf::from(cache).join("kairos").join("worker")
        } else if let Some(home) = from("HOME") {
            PathBuf::from(home)
                .join(".cache")
                .join("kairos")
                .join("worker")
        } else {
            std::env::temp_dir().join("kairos-worker")
        }
    }

    /// The buffer's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Entries waiting to be sent (for every server).
    pub fn len(&self) -> u64 {
        self.inner.entries.load(Ordering::Acquire)
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps reports of `worker` for `server`.
    pub(crate) async fn push_acks(
        &self,
        server: &str,
        worker: &str,
        items: &[AckItem],
    ) -> Result<(), BufferError> {
        let rows = items
            .iter()
            .map(|item| (worker.to_string(), "ack", None, to_json(item), None))
            .collect();
        self.push(server, rows).await
    }

    /// Keeps an enqueue for `server`, under `key`.
    pub(crate) async fn push_enqueue(
        &self,
        server: &str,
        key: &str,
        request: &EnqueueRequest,
        trace: Option<&Trace>,
    ) -> Result<(), BufferError> {
        let row = (
            String::new(),
            "enqueue",
            Some(key.to_string()),
            to_json(request),
            trace.map(to_json),
        );
        self.push(server, vec![row]).await
    }

    /// Writes rows in one transaction.
    async fn push(&self, server: &str, rows: Vec<Row>) -> Result<(), BufferError> {
        let inner = self.inner.clone();
        let server = server.to_string();
        let added: u64 = rows.iter().map(|r| r.3.len() as u64).sum();
        let (entries, bytes) = (
            inner.entries.load(Ordering::Acquire),
            inner.bytes.load(Ordering::Acquire),
        );
        if entries + rows.len() as u64 > MAX_ENTRIES || bytes + added > MAX_BYTES {
            return Err(BufferError::Full { entries, bytes });
        }
        let n = rows.len() as u64;
        blocking(move || {
            let mut conn = inner.conn.lock().expect("the buffer's lock");
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO entries
                       (server, worker, what, idempotency_key, body, buffered_at, trace)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let now = now_ms();
                for (worker, what, key, body, trace) in &rows {
                    insert.execute(params![server, worker, what, key, body, now, trace])?;
                }
            }
            tx.commit()?;
            inner.entries.fetch_add(n, Ordering::AcqRel);
            inner.bytes.fetch_add(added, Ordering::AcqRel);
            inner.added.notify_one();
            Ok(())
        })
        .await
        .map_err(|source| self.failed(source))
    }

    /// The oldest entries of `server`, at most `n`, with their sequence numbers. An entry
    /// that does not read (written by this code, so damaged) is removed, never sent.
    async fn oldest(&self, server: &str, n: usize) -> Result<Vec<(i64, Entry)>, BufferError> {
        let inner = self.inner.clone();
        let server = server.to_string();
        let (entries, unreadable) = blocking(move || {
            let conn = inner.conn.lock().expect("the buffer's lock");
            let mut select = conn.prepare_cached(
                "SELECT seq, worker, what, idempotency_key, body, trace FROM entries
                 WHERE server = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = select.query_map(params![server, n as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            let (mut entries, mut unreadable) = (Vec::new(), Vec::new());
            for row in rows {
                let (seq, worker, what, key, body, trace) = row?;
                let entry = match (what.as_str(), key) {
                    ("ack", _) => serde_json::from_str(&body)
                        .map(|item| Entry::Ack { worker, item })
                        .map_err(|e| e.to_string()),
                    ("enqueue", Some(key)) => serde_json::from_str(&body)
                        .and_then(|request| {
                            let trace = trace.map(|t| serde_json::from_str(&t)).transpose()?;
                            Ok(Entry::Enqueue {
                                key,
                                request,
                                trace,
                            })
                        })
                        .map_err(|e| e.to_string()),
                    _ => Err(format!("an entry of kind {what:?} without what it needs")),
                };
                match entry {
                    Ok(e) => entries.push((seq, e)),
                    Err(e) => {
                        tracing::error!(seq, error = %e, "a buffered entry does not read; it is dropped");
                        unreadable.push(seq);
                    }
                }
            }
            Ok((entries, unreadable))
        })
        .await
        .map_err(|source| self.failed(source))?;
        if !unreadable.is_empty() {
            self.remove(unreadable).await?;
        }
        Ok(entries)
    }

    fn failed(&self, source: rusqlite::Error) -> BufferError {
        BufferError::Sqlite {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// Removes delivered entries.
    async fn remove(&self, seqs: Vec<i64>) -> Result<(), BufferError> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut conn = inner.conn.lock().expect("the buffer's lock");
            let tx = conn.transaction()?;
            let mut gone = (0u64, 0u64);
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM entries WHERE seq = ?1 RETURNING length(body)")?;
                for seq in &seqs {
                    if let Some(len) = delete
                        .query_row(params![seq], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        gone.0 += 1;
                        gone.1 += len as u64;
                    }
                }
            }
            tx.commit()?;
            let _ = inner
                .entries
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(gone.0))
                });
            let _ = inner
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(gone.1))
                });
            Ok(())
        })
        .await
        .map_err(|source| self.failed(source))
    }
}

/// Runs one SQLite call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("API types serialise")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a worker's deliveries share: the client that sends them, the buffer that keeps
/// what it cannot, and whether the server is known to be away.
#[derive(Clone)]
pub(crate) struct Delivery {
    client: Client,
    buffer: Option<Buffer>,
    /// Set when a delivery found the server away; cleared when the replay reaches it.
    away: Arc<AtomicBool>,
}

/// What happened to a batch of reports.
pub(crate) enum Sent {
    /// The server answered (each result says taken or refused).
    Answered(Vec<kairos_core::api::AckResult>),
    /// The server is away: they are in the buffer.
    Kept,
    /// Neither: they are lost to this worker (their jobs run again after their leases).
    Lost(String),
}

impl Delivery {
    /// Deliveries through `client`; with a buffer, a call gives up quickly (after two
    /// tries) and keeps what it could not send.
    pub(crate) fn new(client: Client, buffer: Option<Buffer>) -> Delivery {
        let client = if buffer.is_some() {
            client.with_retry(RetryPolicy {
                attempts: 2,
                base: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
            })
        } else {
            client
        };
        Delivery {
            client,
            buffer,
            away: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends reports, or keeps them while the server is away.
    pub(crate) async fn ack(&self, request: &AckRequest) -> Sent {
        if self.buffer.is_some() && self.away.load(Ordering::Acquire) {
            return self.keep(request).await;
        }
        match self.client.ack(request).await {
            Ok(results) => Sent::Answered(results),
            Err(e) => match &self.buffer {
                Some(_) if e.is_unavailable() => {
                    self.away.store(true, Ordering::Release);
                    tracing::warn!(error = %e, "the server is away: reports go to the buffer until it is back");
                    self.keep(request).await
                }
                _ => Sent::Lost(e.to_string()),
            },
        }
    }

    /// Keeps reports in the buffer (with none, they are lost to this worker).
    pub(crate) async fn keep(&self, request: &AckRequest) -> Sent {
        let Some(buffer) = &self.buffer else {
            return Sent::Lost("the worker has no buffer".into());
        };
        match buffer
            .push_acks(self.client.base(), &request.worker, &request.results)
            .await
        {
            Ok(()) => Sent::Kept,
            Err(e) => Sent::Lost(e.to_string()),
        }
    }

    /// Enqueues `request` under a fresh `Idempotency-Key`, or keeps it while the server is
    /// away.
    pub(crate) async fn enqueue(
        &self,
        request: &EnqueueRequest,
        trace: Option<&Trace>,
    ) -> Result<Submitted, ClientError> {
        let key = crate::fresh_key();
        let Some(buffer) = &self.buffer else {
            return self
                .client
                .enqueue_traced(request, Some(&key), trace)
                .await
                .map(|sent| Submitted::Sent(Box::new(sent)));
        };
        if !self.away.load(Ordering::Acquire) {
            match self.client.enqueue_traced(request, Some(&key), trace).await {
                Ok(sent) => return Ok(Submitted::Sent(Box::new(sent))),
                Err(e) if e.is_unavailable() => {
                    self.away.store(true, Ordering::Release);
                }
                Err(e) => return Err(e),
            }
        }
        match buffer
            .push_enqueue(self.client.base(), &key, request, trace)
            .await
        {
            Ok(()) => Ok(Submitted::Buffered {
                idempotency_key: key,
            }),
            Err(e) => Err(ClientError::Buffer(e.to_string())),
        }
    }

    /// Sends this server's buffered entries, oldest first, for as long as it runs: waits
    /// for entries, and for the server with a reconnect backoff (one warning per step).
    /// `refused` counts reports the server refused.
    pub(crate) async fn replay(self, refused: Arc<AtomicU64>) {
        let Some(buffer) = self.buffer.clone() else {
            return;
        };
        let server = self.client.base().to_string();
        let mut failures = 0u32;
        loop {
            let added = buffer.inner.added.notified();
            let entries = match buffer.oldest(&server, REPLAY_BATCH).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "the worker's buffer cannot be read");
                    Vec::new()
                }
            };
            if entries.is_empty() {
                self.away.store(false, Ordering::Release);
                added.await;
                continue;
            }
            match self.send_oldest(&buffer, entries, &refused).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("the server is back: buffered reports are being sent");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    let wait = RECONNECT.delay(failures, None, fastrand::f64());
                    tracing::warn!(
                        pending = buffer.len(),
                        attempt = failures,
                        wait_ms = wait.as_millis() as u64,
                        error = %e,
                        "buffered reports wait for the server"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Sends `entries` in order (consecutive reports of one worker in one request) and
    /// removes what the server answered; stops at the first call that finds it away.
    async fn send_oldest(
        &self,
        buffer: &Buffer,
        entries: Vec<(i64, Entry)>,
        refused: &AtomicU64,
    ) -> Result<(), ClientError> {
        let mut entries = entries.into_iter().peekable();
        while let Some((seq, entry)) = entries.next() {
            let mut done = vec![seq];
            let outcome = match entry {
                Entry::Ack { worker, item } => {
                    let mut results = vec![item];
                    while let Some((_, Entry::Ack { worker: next, .. })) = entries.peek()
                        && *next == worker
                    {
                        let Some((seq, Entry::Ack { item, .. })) = entries.next() else {
                            unreachable!("peeked")
                        };
                        done.push(seq);
                        results.push(item);
                    }
                    let answer = self.client.ack(&AckRequest { worker, results }).await;
                    answer.map(|results| {
                        for r in results.iter().filter(|r| !r.ok) {
                            refused.fetch_add(1, Ordering::AcqRel);
                            // The lease ran out meanwhile: the job is someone else's.
                            tracing::warn!(
                                job = %r.id,
                                reason = r.error.as_ref().map_or("", |p| p.detail.as_str()),
                                "the server refused a buffered report"
                            );
                        }
                    })
                }
                Entry::Enqueue {
                    key,
                    request,
                    trace,
                } => self
                    .client
                    .enqueue_traced(&request, Some(&key), trace.as_ref())
                    .await
                    .map(|_| ()),
            };
            match outcome {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => return Err(e),
                // Refused as a whole: sending it again would be refused again.
                Err(e) => {
                    tracing::error!(entries = done.len(), error = %e, "the server refused buffered entries; they are dropped");
                }
            }
            if let Err(e) = buffer.remove(done).await {
                tracing::error!(error = %e, "delivered entries could not be removed from the buffer; they will be sent again (harmlessly)");
            }
        }
        Ok(())
    }
}

/// What [`crate::worker::JobContext::enqueue`] did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// The server took it.
    Sent(Box<crate::Enqueued>),
    /// The server is away: it waits in the buffer under this key and is sent when the
    /// server is back (a replay never makes it twice).
    Buffered {
        /// Its `Idempotency-Key`.
        idempotency_key: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn report() -> AckItem {
        AckItem::completed(Uuid::now_v7(), Uuid::now_v7())
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_and_come_back_oldest_first_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(dir.path()).unwrap();
        let (a, b) = (report(), report());
        buffer
            .push_acks("http://one", "w1", std::slice::from_ref(&a))
            .await
            .unwrap();
        let request = EnqueueRequest {
            kind: "follow-up".into(),
            ..Default::default()
        };
        let trace = Trace::from_headers(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None,
        );
        buffer
            .push_enqueue("http://one", "k-1", &request, trace.as_ref())
            .await
            .unwrap();
        buffer.push_acks("http://two", "w2", &[b]).await.unwrap();
        drop(buffer);

        let buffer = Buffer::open(dir.path()).unwrap();
        assert_eq!(buffer.len(), 3);
        let one = buffer.oldest("http://one", 10).await.unwrap();
        assert_eq!(one.len(), 2);
        assert!(
            matches!(&one[0].1, Entry::Ack { worker, item } if worker == "w1" && item.id == a.id)
        );
        assert!(
            matches!(&one[1].1, Entry::Enqueue { key, request, trace: t }
                if key == "k-1" && request.kind == "follow-up" && *t == trace)
        );
        buffer
            .remove(one.iter().map(|e| e.0).collect())
            .await
            .unwrap();
        assert_eq!(buffer.len(), 1);
        assert!(buffer.oldest("http://one", 10).await.unwrap().is_empty());
        assert_eq!(buffer.oldest("http://two", 10).await.unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_buffer_is_refused_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), vec![0x5au8; 8192]).unwrap();
        match Buffer::open(dir.path()) {
            Err(BufferError::Damaged { path, .. }) => assert_eq!(path, dir.path().join(FILE)),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_buffer_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Buffer::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Buffer::open(dir.path()),
            Err(BufferError::Newer { found, .. }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_more_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(dir.path()).unwrap();
        let most: Vec<AckItem> = (0..MAX_ENTRIES).map(|_| report()).collect();
        buffer.push_acks("http://one", "w", &most).await.unwrap();
        assert!(matches!(
            buffer.push_acks("http://one", "w", &[report()]).await,
            Err(BufferError::Full { entries, .. }) if entries == MAX_ENTRIES
        ));
        drop(buffer);
        assert_eq!(Buffer::open(dir.path()).unwrap().len(), MAX_ENTRIES);
    }

    #[tokio::test]
    async fn an_unreadable_entry_is_dropped_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = Buffer::open(dir.path()).unwrap();
        buffer
            .push_acks("http://one", "w", &[report()])
            .await
            .unwrap();
        {
            let conn = buffer.inner.conn.lock().unwrap();
            conn.execute("UPDATE entries SET body = '{not json'", [])
                .unwrap();
        }
        assert!(buffer.oldest("http://one", 10).await.unwrap().is_empty());
        assert!(buffer.is_empty());
    }
}
