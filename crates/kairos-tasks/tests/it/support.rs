//! Stores on each backend, and a real server with the feature on 127.0.0.1:0.

use kairos_tasks::store::{PostgresTasks, SqliteTasks, TaskStore};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where a test's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The engine's store and the feature's, on one backend, kept as long as this.
pub struct Place {
    pub engine: Arc<dyn kairos_store::Store>,
    pub tasks: Arc<dyn TaskStore>,
    /// PostgreSQL's URL and schema (another node opens its own stores on them).
    shared: Option<(String, String)>,
    _keep: Box<dyn std::any::Any + Send>,
}

impl Place {
    /// Fresh stores on `backend`; `None` (skipped, said on stderr) without PostgreSQL.
    pub async fn open(backend: Backend) -> Option<Place> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let engine = kairos_store::SqliteStore::open(&dir.path().join("data")).unwrap();
                let tasks = SqliteTasks::open(&dir.path().join("data/tasks.sqlite3")).unwrap();
                Some(Place {
                    engine: Arc::new(engine),
                    tasks: Arc::new(tasks),
                    shared: None,
                    _keep: Box::new(dir),
                })
            }
            Backend::Postgres => {
                use kairos_store::conformance::database::TestDatabase;
                let db = TestDatabase::create().await?;
                let options = kairos_store::postgres::Options {
                    schema: db.schema.clone(),
                    ..Default::default()
                };
                let mut place = Self::connect(&db.url, &db.schema, options).await;
                place._keep = Box::new(db);
                Some(place)
            }
        }
    }

    async fn connect(url: &str, schema: &str, options: kairos_store::postgres::Options) -> Place {
        let task_options = kairos_store::postgres::Options {
            pool_size: 4,
            ..options.clone()
        };
        let tasks = PostgresTasks::connect(url, &task_options).await.unwrap();
        let engine = kairos_store::PostgresStore::connect(url, options)
            .await
            .unwrap();
        Place {
            engine: Arc::new(engine),
            tasks: Arc::new(tasks),
            shared: Some((url.to_string(), schema.to_string())),
            _keep: Box::new(()),
        }
    }

    /// Another node's stores on this place's database (PostgreSQL only).
    pub async fn another_node(&self) -> Place {
        let (url, schema) = self.shared.clone().expect("a PostgreSQL place");
        let options = kairos_store::postgres::Options {
            schema: schema.clone(),
            ..Default::default()
        };
        Self::connect(&url, &schema, options).await
    }
}

/// A server with the tasks feature.
pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), kairos_server::ServeError>>>,
    _place: Place,
}

impl Running {
    pub async fn start(backend: Backend) -> Option<Running> {
        Some(Self::on(Place::open(backend).await?).await)
    }

    /// A second node beside this one, on the same database (PostgreSQL only).
    pub async fn beside(&self) -> Running {
        Self::on(self._place.another_node().await).await
    }

    async fn on(place: Place) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = kairos_server::Server::new(place.engine.clone())
            .feature(kairos_tasks::Tasks::new(place.tasks.clone()));
        let handle = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Running {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
            _place: place,
        }
    }

    /// The feature's store under the server (to make what a request would, out of turn).
    pub fn tasks(&self) -> &Arc<dyn TaskStore> {
        &self._place.tasks
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Opens an SSE stream at `path` (with `Last-Event-ID` when given).
    pub async fn stream(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Sse {
            resp,
            buf: String::new(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// An open Server-Sent Events stream.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next event's id and data (comments skipped), within 15 s.
    pub async fn next(&mut self) -> (u64, Value) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return (id, serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("an event within 15 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
