//! A Rust client of the Kairos v1 HTTP API.
//!
//! One [`Client`] holds one keep-alive connection pool; clone it freely (clones share the
//! pool). Every call returns the server's typed answer, or a [`ClientError`] that carries
//! the server's problem details when the server refused (branch on
//! [`kairos_core::api::Problem::code`], never on the `type` string).
//!
//! Calls are bounded in time (connect 5 s, answer 30 s, a long-poll its `wait` plus 10 s)
//! and tried again when the server cannot be reached or answers 429 or 503, after an
//! exponential backoff with jitter or its `Retry-After` ([`RetryPolicy`]). Enqueues
//! always carry an `Idempotency-Key` (one is made when the caller gives none), so a retry
//! after a lost answer never creates a job twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kairos_client::ClientError> {
//! use kairos_client::Client;
//! use kairos_core::api::EnqueueRequest;
//! let kairos = Client::new("http://127.0.0.1:7676")?;
//! let job = kairos
//!     .enqueue(&EnqueueRequest { kind: "email".into(), ..Default::default() })
//!     .await?;
//! println!("{} is {}", job.id, job.state);
//! # Ok(()) }
//! ```

use kairos_core::Job;
use kairos_core::ProblemCode;
use kairos_core::Queue;
use kairos_core::Trace;
use kairos_core::api::{
    AckRequest, AckResult, EnqueueRequest, EnqueuedJob, HeartbeatRequest, HeartbeatResult,
    JobBatch, JobBatchMinimal, JobPage, LeaseRequest, LeasedJob, ListQuery, Problem, QueueList,
    QueuePatch,
};
use kairos_core::schedule::{Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

mod retry;
pub use retry::{RetryPolicy, retry_after};
#[cfg(feature = "worker")]
pub mod buffer;
#[cfg(feature = "worker")]
pub mod worker;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer may take (a long-poll: its `wait` plus [`LONG_POLL_MARGIN`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What a long-poll's answer may take beyond its `wait`.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);

/// Headers some calls carry.
#[derive(Clone, Copy, Default)]
struct Extra<'a> {
    idempotency_key: Option<&'a str>,
    trace: Option<&'a Trace>,
    /// Sends `Prefer: return=minimal` (a lean answer).
    minimal: bool,
}

/// Whether a call may be sent again when its first try's fate is unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Repeating it is harmless (a read, an ack, an enqueue with its key): any failure
    /// worth retrying is retried.
    Safe,
    /// It might have been applied: retried only when it surely was not (no connection
    /// was made; refused as busy or unavailable before it ran).
    IfNotApplied,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem (4xx/5xx).
    #[error("{}: {} ({})", .0.status, .0.title, .0.detail)]
    Api(Box<Problem>),
    /// The request did not get an answer (connection, timeout).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the API promises.
    #[error("unexpected answer ({status}): {message}")]
    Decode {
        /// HTTP status of the answer.
        status: u16,
        /// What could not be read.
        message: String,
    },
    /// The base URL is not usable.
    #[error("invalid base URL {0:?}")]
    BaseUrl(String),
    /// A worker's offline buffer could not keep what the server could not take.
    #[error("{0}")]
    Buffer(String),
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(p) => Some(p.status),
            ClientError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server could not be reached or said it is unavailable for now
    /// (429, 503, or a proxy's 502/504): worth sending again later.
    pub fn is_unavailable(&self) -> bool {
        worth_retrying(self, Repeat::Safe)
    }
}

/// The answer to a single enqueue: the job, and whether it was created (`false`: an
/// unfinished job with the same unique key was answered instead).
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The job.
    pub job: Job,
    /// 201 (created) rather than 200 (existing).
    pub created: bool,
}

/// A handle on one Kairos server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
    /// Sent as `X-Kairos-Worker-Hostname` / `-Version`, when set.
    identity: Option<std::sync::Arc<(String, String)>>,
    /// Sent as `Authorization: Bearer …`, when set.
    token: Option<Token>,
}

/// A bearer token, never printed.
#[derive(Clone)]
struct Token(std::sync::Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

#[derive(serde::Deserialize)]
struct Leased {
    jobs: Vec<LeasedJob>,
}

#[derive(serde::Deserialize)]
struct AckAnswer {
    results: Vec<AckResult>,
}

#[derive(serde::Deserialize)]
struct HeartbeatAnswer {
    results: Vec<HeartbeatResult>,
}

#[derive(serde::Deserialize)]
struct Retried {
    retried: u64,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:7676`).
    pub fn new(base: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Self::with_http(base, http)
    }

    /// A client using an existing `reqwest` client (its pool, proxies, connect timeout).
    pub fn with_http(base: &str, http: reqwest::Client) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BaseUrl(base));
        }
        Ok(Client {
            http,
            base,
            retry: RetryPolicy::default(),
            identity: None,
            token: None,
        })
    }

    /// This client, telling the server on every call which host and software version it
    /// runs on (`GET /v1/workers` lists them).
    pub fn identify(mut self, hostname: impl Into<String>, version: impl Into<String>) -> Client {
        self.identity = Some(std::sync::Arc::new((hostname.into(), version.into())));
        self
    }

    /// This client, authenticating every call with a bearer token (`kairos token
    /// create` mints them).
    pub fn with_token(mut self, token: impl AsRef<str>) -> Client {
        self.token = Some(Token(std::sync::Arc::from(token.as_ref())));
        self
    }

    /// Whether [`Client::identify`] was called.
    pub fn identified(&self) -> bool {
        self.identity.is_some()
    }

    /// This client, retrying by `policy` ([`RetryPolicy::NEVER`]: not at all).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Client {
        self.retry = policy;
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, bytes_body::Body), ClientError> {
        self.call_traced(method, path, body, idempotency_key, None)
            .await
    }

    /// [`Client::call`], sending a W3C trace context with the request.
    async fn call_traced<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        trace: Option<&Trace>,
    ) -> Result<(StatusCode, bytes_body::Body), ClientError> {
        let repeat =
            if idempotency_key.is_some() || method == Method::GET || method == Method::DELETE {
                Repeat::Safe
            } else {
                Repeat::IfNotApplied
            };
        let headers = Extra {
            idempotency_key,
            trace,
            minimal: false,
        };
        self.send(method, path, body, headers, repeat, REQUEST_TIMEOUT)
            .await
    }

    /// Sends one call, trying again by the client's [`RetryPolicy`] as far as `repeat`
    /// allows; each try may take `timeout`.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        extra: Extra<'_>,
        repeat: Repeat,
        timeout: Duration,
    ) -> Result<(StatusCode, bytes_body::Body), ClientError> {
        let url = format!("{}{}", self.base, path);
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Decode {
                status: 0,
                message: format!("the request does not serialise: {e}"),
            })?),
            None => None,
        };
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(method.clone(), &url).timeout(timeout);
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            if let Some(k) = extra.idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            if extra.minimal {
                req = req.header("Prefer", "return=minimal");
            }
            if let Some(t) = extra.trace {
                req = req.header("traceparent", &t.traceparent);
                if let Some(state) = &t.tracestate {
                    req = req.header("tracestate", state);
                }
            }
            if let Some(t) = &self.token {
                req = req.bearer_auth(&t.0);
            }
            if let Some(id) = &self.identity {
                req = req
                    .header("X-Kairos-Worker-Hostname", &id.0)
                    .header("X-Kairos-Worker-Version", &id.1);
            }
            let (result, retry_after) = match req.send().await {
                Ok(resp) => {
                    let after = retry::retry_after(resp.headers());
                    (Self::answer(resp).await, after)
                }
                Err(e) => (Err(ClientError::Transport(e)), None),
            };
            let again = match &result {
                Ok(_) => false,
                Err(e) => attempt < self.retry.attempts && worth_retrying(e, repeat),
            };
            if !again {
                return result;
            }
            let wait = self.retry.delay(attempt, retry_after, fastrand::f64());
            if let Err(e) = &result {
                // One line per backoff step: a worker whose server is away says so.
                tracing::warn!(%method, path, attempt, wait_ms = wait.as_millis() as u64, error = %e, "trying again");
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Reads an answer: the body of a success, else the problem.
    async fn answer(
        resp: reqwest::Response,
    ) -> Result<(StatusCode, bytes_body::Body), ClientError> {
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok((status, bytes_body::Body(bytes.to_vec())));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(ClientError::Api(Box::new(p))),
            Err(_) => Err(ClientError::Decode {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
        }
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (status, body) = self.call(method, path, body, None).await?;
        body.decode(status)
    }

    /// `POST /v1/jobs`.
    pub async fn enqueue(&self, req: &EnqueueRequest) -> Result<Job, ClientError> {
        Ok(self.enqueue_with_key(req, None).await?.job)
    }

    /// `POST /v1/jobs` with an optional `Idempotency-Key`, telling created from existing.
    pub async fn enqueue_with_key(
        &self,
        req: &EnqueueRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Enqueued, ClientError> {
        self.enqueue_traced(req, idempotency_key, None).await
    }

    /// `POST /v1/jobs` carrying a W3C trace context (`traceparent`, `tracestate`): the
    /// job keeps it and hands it to the worker that runs it.
    pub async fn enqueue_traced(
        &self,
        req: &EnqueueRequest,
        idempotency_key: Option<&str>,
        trace: Option<&Trace>,
    ) -> Result<Enqueued, ClientError> {
        let made = self.key_for_retries(idempotency_key);
        let key = idempotency_key.or(made.as_deref());
        let (status, body) = self
            .call_traced(Method::POST, "/v1/jobs", Some(req), key, trace)
            .await?;
        Ok(Enqueued {
            job: body.decode(status)?,
            created: status == StatusCode::CREATED,
        })
    }

    /// `POST /v1/jobs/batch`: all or nothing, answered in order.
    pub async fn enqueue_batch(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Job>, ClientError> {
        Ok(self
            .post_batch::<JobBatch>(jobs, idempotency_key, false)
            .await?
            .jobs)
    }

    /// `POST /v1/jobs/batch` asking for the lean answer (`Prefer: return=minimal`): each
    /// job's id, state and whether this request created it, in request order. For
    /// producers that don't need the jobs echoed back: rendering and decoding 1,000
    /// whole jobs costs about as much as the server's whole insert.
    pub async fn enqueue_batch_minimal(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<EnqueuedJob>, ClientError> {
        Ok(self
            .post_batch::<JobBatchMinimal>(jobs, idempotency_key, true)
            .await?
            .jobs)
    }

    /// The ids of [`Client::enqueue_batch_minimal`].
    pub async fn enqueue_batch_ids(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Uuid>, ClientError> {
        let jobs = self.enqueue_batch_minimal(jobs, idempotency_key).await?;
        Ok(jobs.into_iter().map(|j| j.id).collect())
    }

    async fn post_batch<T: DeserializeOwned>(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
        minimal: bool,
    ) -> Result<T, ClientError> {
        #[derive(Serialize)]
        struct Batch<'a> {
            jobs: &'a [EnqueueRequest],
        }
        let made = self.key_for_retries(idempotency_key);
        let key = idempotency_key.or(made.as_deref());
        let extra = Extra {
            idempotency_key: key,
            trace: None,
            minimal,
        };
        // With a key, a repeat is answered from the first try.
        let repeat = if key.is_some() {
            Repeat::Safe
        } else {
            Repeat::IfNotApplied
        };
        let (status, body) = self
            .send(
                Method::POST,
                "/v1/jobs/batch",
                Some(&Batch { jobs }),
                extra,
                repeat,
                REQUEST_TIMEOUT,
            )
            .await?;
        body.decode(status)
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: Uuid) -> Result<Job, ClientError> {
        self.json(Method::GET, &format!("/v1/jobs/{id}"), None::<&()>)
            .await
    }

    /// `GET /v1/jobs?…`: one page, newest first.
    pub async fn list(&self, query: &ListQuery) -> Result<JobPage, ClientError> {
        let mut params = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                params.push(format!("{k}={}", encode(&v)));
            }
        };
        add("queue", query.queue.clone());
        add("state", query.state.clone());
        add("kind", query.kind.clone());
        add("schedule_id", query.schedule_id.clone());
        add("limit", query.limit.map(|l| l.to_string()));
        add("cursor", query.cursor.clone());
        let path = if params.is_empty() {
            "/v1/jobs".to_string()
        } else {
            format!("/v1/jobs?{}", params.join("&"))
        };
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/events?…`: one page of the event log, oldest first; the next page is
    /// `after = next_after`.
    pub async fn events(
        &self,
        query: &kairos_core::event::EventQuery,
    ) -> Result<kairos_core::event::EventPage, ClientError> {
        let mut params = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                params.push(format!("{k}={}", encode(&v)));
            }
        };
        add("after", query.after.map(|a| a.to_string()));
        add("types", query.types.clone());
        add("queue", query.queue.clone());
        add("limit", query.limit.map(|l| l.to_string()));
        let path = format!("/v1/events?{}", params.join("&"));
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: Uuid) -> Result<Job, ClientError> {
        self.json(Method::POST, &format!("/v1/jobs/{id}/cancel"), None::<&()>)
            .await
    }

    /// `POST /v1/jobs/{id}/retry`.
    pub async fn retry(&self, id: Uuid) -> Result<Job, ClientError> {
        self.json(Method::POST, &format!("/v1/jobs/{id}/retry"), None::<&()>)
            .await
    }

    /// `DELETE /v1/jobs/{id}`.
    pub async fn delete(&self, id: Uuid) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/v1/jobs/{id}"), None::<&()>, None)
            .await
            .map(|_| ())
    }

    /// `POST path` with `body`, a call that is harmless to repeat (retried on any failure
    /// worth retrying), each try bounded by `timeout`.
    async fn post_repeatable<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let (status, answer) = self
            .send(
                Method::POST,
                path,
                Some(body),
                Extra::default(),
                Repeat::Safe,
                timeout,
            )
            .await?;
        answer.decode(status)
    }

    /// A key for an enqueue whose caller gave none, when it may be retried.
    fn key_for_retries(&self, given: Option<&str>) -> Option<String> {
        (given.is_none() && self.retry.attempts > 1).then(fresh_key)
    }

    /// `POST /v1/lease`: waits up to the request's `wait` for jobs (the answer may take
    /// that long plus a margin before it counts as lost).
    pub async fn lease(&self, req: &LeaseRequest) -> Result<Vec<LeasedJob>, ClientError> {
        let wait = req.wait.map_or(Duration::ZERO, |w| w.as_std());
        let timeout = REQUEST_TIMEOUT.max(wait + LONG_POLL_MARGIN);
        // A repeat after a lost answer leaves that answer's jobs leased to nobody until
        // their lease runs out: delayed, never lost.
        Ok(self
            .post_repeatable::<Leased, _>("/v1/lease", req, timeout)
            .await?
            .jobs)
    }

    /// `POST /v1/ack`: one result per item, in order.
    pub async fn ack(&self, req: &AckRequest) -> Result<Vec<AckResult>, ClientError> {
        // Repeating an ack is harmless (the API's contract), so any failure is retried.
        Ok(self
            .post_repeatable::<AckAnswer, _>("/v1/ack", req, REQUEST_TIMEOUT)
            .await?
            .results)
    }

    /// `POST /v1/heartbeat`: one result per item, in order.
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<Vec<HeartbeatResult>, ClientError> {
        // A heartbeat only extends a lease: repeating one is harmless.
        Ok(self
            .post_repeatable::<HeartbeatAnswer, _>("/v1/heartbeat", req, REQUEST_TIMEOUT)
            .await?
            .results)
    }

    /// `GET /v1/queues`.
    pub async fn queues(&self) -> Result<Vec<Queue>, ClientError> {
        Ok(self
            .json::<QueueList, _>(Method::GET, "/v1/queues", None::<&()>)
            .await?
            .queues)
    }

    /// `GET /v1/queues/{name}`.
    pub async fn queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.json(
            Method::GET,
            &format!("/v1/queues/{}", encode(name)),
            None::<&()>,
        )
        .await
    }

    /// `PATCH /v1/queues/{name}`: pause or resume leasing.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<Queue, ClientError> {
        let patch = QueuePatch {
            paused: Some(paused),
            ..QueuePatch::default()
        };
        self.change_queue(name, &patch).await
    }

    /// `PATCH /v1/queues/{name}`: pause or resume, set limits (`Some(Some(..))`) or remove
    /// them (`Some(None)`).
    pub async fn change_queue(&self, name: &str, patch: &QueuePatch) -> Result<Queue, ClientError> {
        self.json(
            Method::PATCH,
            &format!("/v1/queues/{}", encode(name)),
            Some(patch),
        )
        .await
    }

    /// `POST /v1/queues/{name}/retry-dead`: how many dead jobs went back to available.
    pub async fn retry_dead(&self, name: &str) -> Result<u64, ClientError> {
        Ok(self
            .json::<Retried, _>(
                Method::POST,
                &format!("/v1/queues/{}/retry-dead", encode(name)),
                None::<&()>,
            )
            .await?
            .retried)
    }

    /// `POST /v1/schedules`.
    pub async fn create_schedule(&self, req: &ScheduleRequest) -> Result<Schedule, ClientError> {
        self.json(Method::POST, "/v1/schedules", Some(req)).await
    }

    /// `GET /v1/schedules`.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, ClientError> {
        #[derive(serde::Deserialize)]
        struct List {
            schedules: Vec<Schedule>,
        }
        Ok(self
            .json::<List, _>(Method::GET, "/v1/schedules", None::<&()>)
            .await?
            .schedules)
    }

    /// `GET /v1/schedules/{id}`.
    pub async fn schedule(&self, id: Uuid) -> Result<Schedule, ClientError> {
        self.json(Method::GET, &format!("/v1/schedules/{id}"), None::<&()>)
            .await
    }

    /// `PATCH /v1/schedules/{id}`.
    pub async fn update_schedule(
        &self,
        id: Uuid,
        patch: &SchedulePatch,
    ) -> Result<Schedule, ClientError> {
        self.json(Method::PATCH, &format!("/v1/schedules/{id}"), Some(patch))
            .await
    }

    /// `DELETE /v1/schedules/{id}`.
    pub async fn delete_schedule(&self, id: Uuid) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/schedules/{id}"),
            None::<&()>,
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/schedules/{id}/trigger`: the job of a run made now.
    pub async fn trigger_schedule(&self, id: Uuid) -> Result<Job, ClientError> {
        self.json(
            Method::POST,
            &format!("/v1/schedules/{id}/trigger"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/schedules/preview`.
    pub async fn preview(&self, req: &PreviewRequest) -> Result<Preview, ClientError> {
        self.json(Method::POST, "/v1/schedules/preview", Some(req))
            .await
    }

    /// `GET /v1/workers`: the workers the server heard from in the last day.
    pub async fn workers(&self) -> Result<Vec<kairos_core::api::WorkerInfo>, ClientError> {
        Ok(self
            .json::<kairos_core::api::WorkerList, ()>(Method::GET, "/v1/workers", None)
            .await?
            .workers)
    }

    /// `GET /health/ready`: Ok when the server and its store answer.
    pub async fn ready(&self) -> Result<(), ClientError> {
        self.call(Method::GET, "/health/ready", None::<&()>, None)
            .await
            .map(|_| ())
    }
}

/// Whether a failed try is worth another, for a call that may be repeated as `repeat` says.
fn worth_retrying(e: &ClientError, repeat: Repeat) -> bool {
    match e {
        // Nothing reached the server.
        ClientError::Transport(t) if t.is_connect() => true,
        // A timeout or a connection cut mid-call: it may have been applied.
        ClientError::Transport(_) => repeat == Repeat::Safe,
        ClientError::Api(p) => {
            retry::retryable_status(p.status)
                // A request timeout may have been applied after all; every other 429/503
                // was refused before it ran.
                && (repeat == Repeat::Safe || p.code() != Some(ProblemCode::Timeout))
        }
        // Busy or away, said by something in between (a proxy) without a problem body.
        ClientError::Decode { status, .. } => {
            repeat == Repeat::Safe && retry::retryable_status(*status)
        }
        ClientError::BaseUrl(_) | ClientError::Buffer(_) => false,
    }
}

/// The key an enqueue carries when its caller gave none, so that a retry is answered
/// with the first try's jobs.
pub(crate) fn fresh_key() -> String {
    format!("kairos-client-{}", Uuid::now_v7())
}

/// Percent-encodes a query or path value (names and cursors are plain ASCII, but be safe).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

mod bytes_body {
    use super::ClientError;
    use reqwest::StatusCode;
    use serde::de::DeserializeOwned;

    /// A successful answer's body, decoded on demand.
    pub struct Body(pub Vec<u8>);

    impl Body {
        pub fn decode<T: DeserializeOwned>(self, status: StatusCode) -> Result<T, ClientError> {
            serde_json::from_slice(&self.0).map_err(|e| ClientError::Decode {
                status: status.as_u16(),
                message: e.to_string(),
            })
        }
    }
}
