//! The database cut off from a running server, then back: readiness and writes answer
//! 503 while it is gone, waiting leases end early, and the server recovers by itself
//! with nothing acknowledged lost. The cut is a TCP proxy between the server and the
//! real PostgreSQL (stopping the shared server would break the tests running beside).

use crate::support::Kairos;
use kairos_store::conformance::database::TestDatabase;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy to `upstream` whose link can be cut: while cut, nothing passes in either
/// direction and new connections get no answer (a network partition, not a refusal);
/// on restore, connections held through the cut are closed.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(link(client, upstream.clone(), cut_rx.clone()));
            }
        });
        Proxy { port, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// One connection through the proxy.
async fn link(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>) {
    // Arrived during a cut: silence until the cut ends, then closed.
    let cut_now = *cut.borrow();
    if cut_now {
        until(&mut cut, false).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut a, mut b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let partitioned = loop {
        tokio::select! {
            n = client.read(&mut a) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
            },
            n = server.read(&mut b) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
            },
            _ = until(&mut cut, true) => break true,
        }
    };
    if partitioned {
        // Hold both ends silent, then drop them when it heals.
        until(&mut cut, false).await;
    }
}

/// Resolves once the cut is `want` (or the proxy is gone).
async fn until(cut: &mut watch::Receiver<bool>, want: bool) {
    loop {
        if *cut.borrow_and_update() == want {
            return;
        }
        if cut.changed().await.is_err() {
            return;
        }
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL, and the URL with `replacement`
/// in its place; `None` for a URL this test cannot proxy (a socket path, several hosts).
fn split_url(url: &str, replacement: &str) -> Option<(String, String)> {
    let after_at = url.find('@')? + 1;
    let end = url[after_at..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_at + i);
    let hostport = &url[after_at..end];
    if hostport.is_empty() || hostport.contains(',') {
        return None;
    }
    let upstream = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    Some((
        upstream,
        format!("{}{replacement}{}", &url[..after_at], &url[end..]),
    ))
}

async fn call(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
) -> (u16, Option<String>, Value) {
    let _ = client;
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, resp.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("the server itself must keep answering: {e}"),
    }
}

async fn wait_for_status(client: &reqwest::Client, url: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (got, _, body) = call(client, client.get(url)).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {status} within {within:?} (last {got}: {body})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_503_and_recovered_from() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some((upstream, _)) = split_url(&db.url, "") else {
        eprintln!("SKIPPED: cannot proxy the test database URL {}", db.url);
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream).await);
    let (_, proxied) = split_url(&db.url, &format!("127.0.0.1:{}", proxy.port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Kairos::try_start(
        dir.path(),
        &["--database-url", &proxied, "--database-schema", &db.schema],
    )
    .unwrap_or_else(|r| panic!("{r:?}"));
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let jobs: Vec<Value> = (0..20)
        .map(|i| json!({"queue": "o", "kind": format!("k{i}")}))
        .collect();
    let (status, _, made) = call(
        &client,
        client
            .post(format!("{base}/v1/jobs/batch"))
            .json(&json!({"jobs": jobs})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    // A lease waiting on an empty queue when the database goes.
    let waiting = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let req = client
                .post(format!("{base}/v1/lease"))
                .json(&json!({"queues": ["idle"], "worker": "w", "wait": "30s"}));
            let started = Instant::now();
            let answer = call(&client, req).await;
            (answer, started.elapsed())
        })
    };
    // Jobs flow all along: every one answered 201 must be there afterwards.
    let (stop, stopped) = watch::channel(false);
    let flow = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            while !*stopped.borrow() {
                let req = client
                    .post(format!("{base}/v1/jobs"))
                    .json(&json!({"queue": "flow", "kind": "k"}));
                match call(&client, req).await {
                    (201, _, job) => acknowledged.push(job["id"].as_str().unwrap().to_string()),
                    (503, _, _) => refused += 1,
                    (status, _, body) => panic!("a write answered {status}: {body}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.cut();
    wait_for_status(
        &client,
        &format!("{base}/health/ready"),
        503,
        Duration::from_secs(5),
    )
    .await;
    let ((status, _, body), took) = waiting.await.unwrap();
    assert_eq!((status, &body["jobs"]), (200, &json!([])), "{body}");
    assert!(
        took < Duration::from_secs(20),
        "the waiting lease ended early ({took:?})"
    );
    let (status, retry, body) = call(
        &client,
        client
            .post(format!("{base}/v1/jobs"))
            .json(&json!({"kind": "k"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:kairos:problem:unavailable");
    assert!(retry.is_some(), "503 carries Retry-After");
    assert_eq!(
        call(&client, client.get(format!("{base}/health/live")))
            .await
            .0,
        200
    );

    proxy.restore();
    wait_for_status(
        &client,
        &format!("{base}/health/ready"),
        200,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send_replace(true);
    let (acknowledged, refused) = flow.await.unwrap();
    assert!(refused > 0, "writes were refused during the outage");
    for id in &acknowledged {
        let (status, _, _) = call(&client, client.get(format!("{base}/v1/jobs/{id}"))).await;
        assert_eq!(
            status, 200,
            "acknowledged job {id} is there after the outage"
        );
    }
    for j in made["jobs"].as_array().unwrap() {
        let (status, _, _) = call(
            &client,
            client.get(format!("{base}/v1/jobs/{}", j["id"].as_str().unwrap())),
        )
        .await;
        assert_eq!(status, 200, "an acknowledged job is there after the outage");
    }
    let (status, _, leased) = call(
        &client,
        client
            .post(format!("{base}/v1/lease"))
            .json(&json!({"queues": ["o"], "worker": "w", "max": 100})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(leased["jobs"].as_array().unwrap().len(), 20);
    server.kill9();
}

#[test]
fn urls_are_split_for_the_proxy() {
    assert_eq!(
        split_url("postgres://postgres@127.0.0.1:5432/postgres", "H:1"),
        Some((
            "127.0.0.1:5432".into(),
            "postgres://postgres@H:1/postgres".into()
        ))
    );
    assert_eq!(
        split_url("postgres://u:p@db/x?sslmode=disable", "H:1"),
        Some((
            "db:5432".into(),
            "postgres://u:p@H:1/x?sslmode=disable".into()
        ))
    );
    assert_eq!(
        split_url("postgres:///db?host=/run/postgresql", "H:1"),
        None
    );
}
