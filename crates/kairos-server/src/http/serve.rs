//! The accept loop: a bounded number of connections, each served by [`super::conn`], and
//! a graceful shutdown with a deadline.
//!
//! Past `max_connections`, a new connection is answered at once with a 503 `overloaded`
//! problem and closed, rather than left waiting in the kernel's backlog; a warning says so
//! (at most every ten seconds). When the shutdown future resolves, the listener closes,
//! every connection finishes the request it is serving (idle ones close at once), and
//! connections still busy at the deadline are dropped.

use super::conn::{self, ConnLimits};
use super::problem::problem_response_bytes;
use axum::Router;
use kairos_core::ProblemCode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Logs something at most once per period, counting what it left out.
#[derive(Debug)]
pub(crate) struct Every {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Every {
    /// At most once per `period`.
    pub(crate) fn new(period: Duration) -> Every {
        Every {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(times left out since the last one)` when it is time to log again.
    pub(crate) fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|l| now < l + self.period) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What the accept loop needs to know.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Per-connection timeouts and sizes.
    pub conn: ConnLimits,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// How a serve ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// When the shutdown began.
    pub stopping_since: Instant,
    /// Connections dropped at the shutdown deadline with requests still in flight.
    pub dropped: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the deadline.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let conn_limits = Arc::new(limits.conn.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut refusals = Every::new(Duration::from_secs(10));
    let mut accept_errors = Every::new(Duration::from_secs(10));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (app, limits, stop) = (app.clone(), conn_limits.clone(), stop_rx.clone());
                        conns.spawn(async move {
                            conn::serve(stream, app, limits, stop).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        refuse(stream);
                        if let Some(more) = refusals.tick() {
                            tracing::warn!(
                                %peer,
                                max_connections = limits.max_connections,
                                refused_since_last_warning = more,
                                "connection limit reached: refusing new connections"
                            );
                        }
                    }
                },
                Err(e) => {
                    // Out of descriptors or memory: keep serving the open connections and
                    // try again shortly instead of spinning.
                    if let Some(more) = accept_errors.tick() {
                        tracing::warn!(error = %e, failed_since_last_warning = more, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    let stopping_since = Instant::now();
    let deadline = stopping_since + limits.shutdown_timeout;
    while !conns.is_empty() {
        match tokio::time::timeout_at(deadline, conns.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                let dropped = conns.len();
                tracing::warn!(
                    connections = dropped,
                    "shutdown deadline passed: closing connections still in flight"
                );
                conns.shutdown().await;
                return Drained {
                    stopping_since,
                    dropped,
                };
            }
        }
    }
    Drained {
        stopping_since,
        dropped: 0,
    }
}

/// Answers a connection over the limit with a 503 problem and closes it, without waiting
/// for anything (the answer is small enough for an empty socket buffer).
fn refuse(stream: TcpStream) {
    let answer = problem_response_bytes(
        ProblemCode::Overloaded,
        "too many connections are open; try again shortly",
    );
    let _ = stream.try_write(&answer);
    // Read what already arrived, so that closing sends FIN rather than RST and the client
    // gets to read the answer.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
