//! One HTTP/1.1 connection, driven by hyper, with the timeouts hyper does not keep itself:
//!
//! - **header read**: a request head must arrive whole within `header_read_timeout` of its
//!   first byte (slowloris);
//! - **idle**: a keep-alive connection with no request for `idle_timeout` is closed;
//! - **stalled write**: a client that accepts no answer bytes for `write_timeout` is cut off.
//!
//! (hyper's own `header_read_timeout` also starts while a keep-alive connection waits for
//! its next request, so it cannot tell an idle client from a slow one.) While a request is
//! being handled these timers stand still: the request's own deadlines (body and request
//! timeouts, `layers::deadline`) bound it.
//!
//! hyper answers a malformed or oversized request head itself, with an empty body; those
//! answers are rewritten here into `application/problem+json`, so that every refusal is a
//! problem body.

use super::problem::problem_response_bytes;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use kairos_core::ProblemCode;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

/// The per-connection limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A request head must arrive within this of its first byte.
    pub header_read_timeout: Duration,
    /// A keep-alive connection without a request for this long is closed.
    pub idle_timeout: Duration,
    /// A client that reads none of an answer for this long is cut off.
    pub write_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
}

/// What the connection is doing, in milliseconds since it was accepted (0: not set). Kept
/// by the IO wrapper and the service, read by the connection's deadline.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    in_flight: AtomicBool,
    /// First byte of the next request head, read while no request was in flight.
    head_started: AtomicU64,
    /// When the last answer ended (or the connection was accepted).
    idle_since: AtomicU64,
    /// When a write started to wait for the client to read.
    write_blocked: AtomicU64,
}

/// Why a connection was closed by its deadline.
#[derive(Debug, Clone, Copy)]
enum Expired {
    HeaderRead,
    Idle,
    Write,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicBool::new(false),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(1),
            write_blocked: AtomicU64::new(0),
        }
    }

    /// Now, as stored: milliseconds since accept, plus one so that 0 means "not set".
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_millis(stamp - 1)
    }

    fn bytes_read(&self) {
        if !self.in_flight.load(Ordering::Relaxed) && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.now(), Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.store(true, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.in_flight.store(false, Ordering::Relaxed);
    }

    fn write_blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(self.now(), Ordering::Relaxed);
        }
    }

    fn write_progressed(&self) {
        self.write_blocked.store(0, Ordering::Relaxed);
    }

    /// The earliest deadline that applies now, and what it is for.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expired)> {
        let mut best: Option<(Instant, Expired)> = None;
        let mut consider = |at: Instant, why: Expired| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, why));
            }
        };
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if blocked != 0 {
            consider(self.at(blocked) + limits.write_timeout, Expired::Write);
        }
        if !self.in_flight.load(Ordering::Relaxed) {
            let head = self.head_started.load(Ordering::Relaxed);
            if head != 0 {
                consider(
                    self.at(head) + limits.header_read_timeout,
                    Expired::HeaderRead,
                );
            } else {
                let idle = self.idle_since.load(Ordering::Relaxed);
                consider(self.at(idle) + limits.idle_timeout, Expired::Idle);
            }
        }
        best
    }
}

/// Serves one accepted connection until the client leaves, a deadline passes, or the
/// server stops (`stop` turns true: the request in flight finishes, then it closes).
pub(super) async fn serve(
    stream: TcpStream,
    app: Router,
    limits: Arc<ConnLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(Peer);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        rewrite: None,
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // No timer, so hyper keeps none of its own timeouts: this module keeps them.
    http.header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    let conn = http.serve_connection(
        io,
        Dispatch {
            app,
            activity: activity.clone(),
            peer,
        },
    );
    let mut conn = pin!(conn);
    let mut stopped = pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    let mut stopping = false;
    let mut armed: Option<Instant> = None;
    let mut sleep = pin!(tokio::time::sleep(limits.idle_timeout));
    let outcome = std::future::poll_fn(|cx| {
        if !stopping && stopped.as_mut().poll(cx).is_ready() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(|e| e.to_string()));
        }
        // Polling the connection is what changes its activity: re-arm after every poll.
        if let Some((at, why)) = activity.deadline(&limits) {
            if at <= Instant::now() {
                return Poll::Ready(Err(format!("{why:?} timeout")));
            }
            if armed != Some(at) {
                armed = Some(at);
                sleep.as_mut().reset(at);
            }
            // A wake-up here leads to the check above on the next poll.
            let _ = sleep.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection closed");
    }
}

/// Hands each request to the router, marking the connection busy until its answer has
/// been written (or dropped).
#[derive(Clone)]
struct Dispatch {
    app: Router,
    activity: Arc<Activity>,
    peer: Option<Peer>,
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

impl hyper::service::Service<hyper::Request<Incoming>> for Dispatch {
    type Response = hyper::Response<Tracked>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        if let Some(p) = self.peer {
            req.extensions_mut().insert(p);
        }
        let busy = Busy(self.activity.clone());
        let answer = self.app.clone().oneshot(req.map(Body::new));
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

/// Marks the connection idle again when dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// An answer's body that keeps its connection marked busy until hyper is done with it.
pub(super) struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, watched: reads and writes update [`Activity`], and hyper's own bodiless
/// error answers are replaced by problem bodies.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A replacement answer being written, and how much of it is out.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl Watched {
    /// Writes out the replacement answer, if any. Ready once it is all written.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.rewrite.as_mut() {
            if *done == bytes.len() {
                self.rewrite = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *done += n;
                    self.activity.write_progressed();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.activity.write_blocked();
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn track(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &r {
            Poll::Ready(Ok(_)) => self.activity.write_progressed(),
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

/// When `buf` is an answer hyper made up itself for a request head it could not parse
/// (a bodiless 400, 414 or 431; every answer of ours has a body), the problem code for it.
fn hyper_refusal(buf: &[u8]) -> Option<ProblemCode> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let code = match rest.get(..4)? {
        b"400 " => ProblemCode::BadRequest,
        b"414 " => ProblemCode::UriTooLong,
        b"431 " => ProblemCode::HeadersTooLarge,
        _ => return None,
    };
    // The whole write is the head: no body follows.
    buf.ends_with(b"\r\n\r\n").then_some(code)
}

fn refusal_detail(code: ProblemCode) -> &'static str {
    match code {
        ProblemCode::UriTooLong => "the request's path and query are too long",
        ProblemCode::HeadersTooLarge => "the request's headers are too large or too many",
        _ => "the request could not be parsed as HTTP/1.1",
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_rewrite(cx))?;
        if !self.activity.in_flight.load(Ordering::Relaxed)
            && let Some(code) = hyper_refusal(buf)
        {
            self.rewrite = Some((problem_response_bytes(code, refusal_detail(code)), 0));
            // hyper's bytes count as written; the replacement goes out in their place.
            let _ = self.poll_rewrite(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_rewrite(cx))?;
        if !self.activity.in_flight.load(Ordering::Relaxed) {
            // hyper's refusal is one buffer; looked for without allocating.
            let mut filled = bufs.iter().filter(|b| !b.is_empty());
            if let (Some(only), None) = (filled.next(), filled.next())
                && hyper_refusal(only).is_some()
            {
                let only: &[u8] = only;
                return self.poll_write(cx, only);
            }
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_rewrite(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_rewrite(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_parse_refusals_are_rewritten() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_refusal(head), Some(ProblemCode::HeadersTooLarge));
        assert_eq!(
            hyper_refusal(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n"),
            Some(ProblemCode::UriTooLong)
        );
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(hyper_refusal(with_body), None);
        assert_eq!(
            hyper_refusal(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(hyper_refusal(b"{\"jobs\":[]}"), None);
    }

    #[test]
    fn deadlines_follow_activity() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 65536,
        };
        let a = Activity::new();
        assert!(matches!(a.deadline(&limits), Some((_, Expired::Idle))));
        a.bytes_read();
        assert!(matches!(
            a.deadline(&limits),
            Some((_, Expired::HeaderRead))
        ));
        a.request_started();
        assert!(
            a.deadline(&limits).is_none(),
            "a request in flight has its own deadlines"
        );
        a.bytes_read();
        assert!(a.deadline(&limits).is_none(), "body bytes start no head");
        a.write_blocked();
        assert!(matches!(a.deadline(&limits), Some((_, Expired::Write))));
        a.write_progressed();
        a.request_ended();
        assert!(matches!(a.deadline(&limits), Some((_, Expired::Idle))));
    }
}
