//! A real server on 127.0.0.1:0 with its own data directory, and a small JSON client.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The store a test target's servers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each target uses one
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite,
    /// A schema of its own on the test PostgreSQL server.
    Postgres,
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), kairos_server::ServeError>>>,
    /// The temp dir or database schema, kept as long as the server.
    _place: Box<dyn std::any::Any + Send>,
    store: Arc<dyn kairos_store::Store>,
    data_dir: Option<std::path::PathBuf>,
}

/// An answer: status, content type and JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl TestServer {
    /// A server on this target's backend; `None` (the test returns, skipped, and says so
    /// on stderr) when that backend's service is not there.
    pub async fn start() -> Option<TestServer> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(
        configure: impl FnOnce(&mut kairos_server::Config),
    ) -> Option<TestServer> {
        Self::start_on(configure, None).await
    }

    /// A server whose store reads `clock`.
    pub async fn start_on_clock(clock: Arc<kairos_core::ManualClock>) -> Option<TestServer> {
        Self::start_on(|_| {}, Some(clock)).await
    }

    async fn start_on(
        configure: impl FnOnce(&mut kairos_server::Config),
        clock: Option<Arc<kairos_core::ManualClock>>,
    ) -> Option<TestServer> {
        match crate::BACKEND {
            Backend::Sqlite => {
                let mut options = kairos_store::sqlite::Options::default();
                if let Some(c) = clock {
                    options.clock = c;
                }
                Some(Self::start_sqlite(configure, options).await)
            }
            Backend::Postgres => {
                use kairos_store::conformance::database::TestDatabase;
                let db = TestDatabase::create().await?;
                let options = kairos_store::postgres::Options {
                    schema: db.schema.clone(),
                    clock: clock.map(|c| c as _),
                    ..Default::default()
                };
                let store = kairos_store::PostgresStore::connect(&db.url, options)
                    .await
                    .unwrap();
                Some(Self::serve(Arc::new(store), configure, Box::new(db), None).await)
            }
        }
    }

    /// A server on the embedded store with its options chosen.
    pub async fn start_sqlite(
        configure: impl FnOnce(&mut kairos_server::Config),
        options: kairos_store::sqlite::Options,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = kairos_store::SqliteStore::open_with(&data, options).unwrap();
        Self::serve(Arc::new(store), configure, Box::new(dir), Some(data)).await
    }

    async fn serve(
        store: Arc<dyn kairos_store::Store>,
        configure: impl FnOnce(&mut kairos_server::Config),
        place: Box<dyn std::any::Any + Send>,
        data_dir: Option<std::path::PathBuf>,
    ) -> TestServer {
        let mut config = kairos_server::Config::default();
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = kairos_server::Server::new(store.clone()).config(config);
        let handle = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
            _place: place,
            store,
            data_dir,
        }
    }

    /// Another server (a second node) on this one's store; drop it to stop it (stopping
    /// would close the shared store).
    #[allow(dead_code)] // not every target's
    pub async fn beside(&self) -> TestServer {
        Self::serve(
            self.store.clone(),
            |_| {},
            Box::new(()),
            self.data_dir.clone(),
        )
        .await
    }

    /// The embedded store's data directory.
    #[allow(dead_code)] // the SQLite target's
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .expect("a server on the embedded store")
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    pub async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let resp = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Self::answer(resp).await
    }

    /// Sends a POST in the background (e.g. a long-polling lease) and answers later.
    pub fn spawn_post(&self, path: &str, body: Value) -> tokio::task::JoinHandle<Answer> {
        let req = self
            .client
            .post(format!("{}{}", self.base, path))
            .json(&body);
        tokio::spawn(async move { Self::answer(req.send().await.unwrap()).await })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// Enqueues `body` and returns the job, asserting 201.
    pub async fn enqueue(&self, body: Value) -> Value {
        let a = self.post("/v1/jobs", body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    /// Leases from `queue` (no wait) and returns the jobs.
    pub async fn lease(&self, queue: &str, max: u32) -> Vec<Value> {
        let a = self
            .post(
                "/v1/lease",
                serde_json::json!({"queues": [queue], "worker": "w1", "max": max}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["jobs"].as_array().unwrap().clone()
    }

    /// Acks one lease and returns the result item.
    pub async fn ack(&self, leased: &Value, item: Value) -> Value {
        let mut item = item;
        item["id"] = leased["id"].clone();
        item["lease_token"] = leased["lease_token"].clone();
        let a = self
            .post(
                "/v1/ack",
                serde_json::json!({"worker": "w1", "results": [item]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["results"][0].clone()
    }

    /// Polls GET /v1/jobs/{id} until `pred` holds, up to 10 s.
    pub async fn wait_for_job(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let job = self.get(&format!("/v1/jobs/{id}")).await.body;
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job never reached the expected state: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Asserts a problem+json answer with `status`, naming `field` when given.
pub fn assert_problem(a: &Answer, status: u16, field: Option<&str>) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    for key in ["type", "title", "status", "detail"] {
        assert!(!a.body[key].is_null(), "problem has {key}: {}", a.body);
    }
    assert_eq!(a.body["status"], status);
    if let Some(f) = field {
        let fields: Vec<&str> = a.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("problem has errors[]: {}", a.body))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&f), "errors name {f}: {}", a.body);
    }
}

/// An answer read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw TCP connection to the server, for what an HTTP client library will not send.
pub async fn connect(s: &TestServer) -> tokio::net::TcpStream {
    let addr = s.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads one answer (head, then `content-length` bytes of JSON body) off `stream`.
/// Bounded by `GUARD` so that a broken server fails the test instead of hanging it.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> RawAnswer {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.expect("answer arrives");
            assert!(
                n > 0,
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).await.expect("body arrives");
            assert!(n > 0, "closed before the whole body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body_bytes = &buf[head_end..head_end + len];
        let body = if body_bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body_bytes).unwrap()
        };
        RawAnswer {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("an answer within the guard")
}

/// How long a raw-socket read may take before the test gives up on the server.
pub const GUARD: Duration = Duration::from_secs(20);

/// Waits for the server to close `stream` (EOF or reset), reading and dropping anything
/// it sends first; bounded by [`GUARD`].
pub async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(GUARD, closed)
        .await
        .expect("the server closes the connection");
}

/// Asserts a raw answer is a problem of `code` with `status`.
pub fn assert_raw_problem(a: &RawAnswer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(
        a.header("content-type"),
        Some("application/problem+json"),
        "{a:?}"
    );
    assert_eq!(
        a.body["type"],
        format!("urn:kairos:problem:{code}"),
        "{a:?}"
    );
    assert_eq!(a.body["status"], status);
}
