//! A real server on 127.0.0.1:0 with its own data directory, and a small JSON client.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), kairos_server::ServeError>>>,
    _dir: tempfile::TempDir,
}

/// An answer: status, content type and JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut kairos_server::Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = kairos_server::Config::new(dir.path().join("data"));
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(kairos_server::run(listener, config, async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
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
