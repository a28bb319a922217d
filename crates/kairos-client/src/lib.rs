//! A Rust client of the Kairos v1 HTTP API.
//!
//! One [`Client`] holds one keep-alive connection pool; clone it freely (clones share the
//! pool). Every call returns the server's typed answer, or a [`ClientError`] that carries
//! the server's problem details when the server refused.
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
use kairos_core::Queue;
use kairos_core::api::{
    AckRequest, AckResult, EnqueueRequest, HeartbeatRequest, HeartbeatResult, JobBatch, JobPage,
    LeaseRequest, LeasedJob, ListQuery, Problem, QueueList, QueuePatch,
};
use kairos_core::schedule::{Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem (4xx/5xx).
    #[error("{}: {} ({})", .0.status, .0.title, .0.detail)]
    Api(Problem),
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
            .build()?;
        Self::with_http(base, http)
    }

    /// A client using an existing `reqwest` client (its pool, timeouts, proxies).
    pub fn with_http(base: &str, http: reqwest::Client) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BaseUrl(base));
        }
        Ok(Client { http, base })
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
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok((status, bytes_body::Body(bytes.to_vec())));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(ClientError::Api(p)),
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
        let (status, body) = self
            .call(Method::POST, "/v1/jobs", Some(req), idempotency_key)
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
            .post_batch::<JobBatch>(jobs, idempotency_key)
            .await?
            .jobs)
    }

    /// `POST /v1/jobs/batch`, reading only the ids of the answer: for producers that
    /// don't need the jobs echoed back (decoding 1,000 full jobs costs the client about
    /// as much as the server's whole insert).
    pub async fn enqueue_batch_ids(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Uuid>, ClientError> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: Uuid,
        }
        #[derive(serde::Deserialize)]
        struct Ids {
            jobs: Vec<IdOnly>,
        }
        let ids = self.post_batch::<Ids>(jobs, idempotency_key).await?;
        Ok(ids.jobs.into_iter().map(|j| j.id).collect())
    }

    async fn post_batch<T: DeserializeOwned>(
        &self,
        jobs: &[EnqueueRequest],
        idempotency_key: Option<&str>,
    ) -> Result<T, ClientError> {
        #[derive(Serialize)]
        struct Batch<'a> {
            jobs: &'a [EnqueueRequest],
        }
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/jobs/batch",
                Some(&Batch { jobs }),
                idempotency_key,
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

    /// `POST /v1/lease`.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<Vec<LeasedJob>, ClientError> {
        Ok(self
            .json::<Leased, _>(Method::POST, "/v1/lease", Some(req))
            .await?
            .jobs)
    }

    /// `POST /v1/ack`: one result per item, in order.
    pub async fn ack(&self, req: &AckRequest) -> Result<Vec<AckResult>, ClientError> {
        Ok(self
            .json::<AckAnswer, _>(Method::POST, "/v1/ack", Some(req))
            .await?
            .results)
    }

    /// `POST /v1/heartbeat`: one result per item, in order.
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<Vec<HeartbeatResult>, ClientError> {
        Ok(self
            .json::<HeartbeatAnswer, _>(Method::POST, "/v1/heartbeat", Some(req))
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
        self.json(
            Method::PATCH,
            &format!("/v1/queues/{}", encode(name)),
            Some(&QueuePatch { paused }),
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

    /// `GET /health/ready`: Ok when the server and its store answer.
    pub async fn ready(&self) -> Result<(), ClientError> {
        self.call(Method::GET, "/health/ready", None::<&()>, None)
            .await
            .map(|_| ())
    }
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
