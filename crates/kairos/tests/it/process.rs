//! Crash safety and shutdown of the real binary.

use crate::support::Kairos;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Result<(u16, Value)> {
    let resp = client.post(url).json(&body).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

/// Every job answered 2xx before a `kill -9` is there after restart, and a job whose
/// worker died with the server is leased again once its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Kairos::start(dir.path());
    let client = reqwest::Client::new();

    // A worker leases a job for 1 s and then "dies" with the server.
    let (st, job) = post(
        &client,
        format!("{}/v1/jobs", server.base),
        json!({"queue": "crash", "kind": "orphan", "backoff": {"type": "fixed", "base": "0s"}}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let (_, leased) = post(
        &client,
        format!("{}/v1/lease", server.base),
        json!({"queues": ["crash"], "worker": "doomed", "lease": "1s"}),
    )
    .await
    .unwrap();
    assert_eq!(leased["jobs"][0]["id"], job["id"]);

    // Producers enqueue singles and batches as fast as they can while we pull the plug.
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut producers = Vec::new();
    for p in 0..8 {
        let (client, base, acked) = (client.clone(), server.base.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            for i in 0.. {
                let result = if p % 2 == 0 {
                    post(
                        &client,
                        format!("{base}/v1/jobs"),
                        json!({"kind": "k", "payload": {"p": p, "i": i}}),
                    )
                    .await
                } else {
                    let jobs: Vec<Value> = (0..10)
                        .map(|j| json!({"kind": "b", "payload": {"p": p, "i": i, "j": j}}))
                        .collect();
                    post(
                        &client,
                        format!("{base}/v1/jobs/batch"),
                        json!({"jobs": jobs}),
                    )
                    .await
                };
                match result {
                    Ok((status, body)) if (200..300).contains(&status) => {
                        let mut set = acked.lock().unwrap();
                        match body["jobs"].as_array() {
                            Some(jobs) => set
                                .extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string())),
                            None => {
                                set.insert(body["id"].as_str().unwrap().to_string());
                            }
                        }
                    }
                    Ok((status, body)) => panic!("unexpected answer {status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2_000 {
        assert!(Instant::now() < deadline, "producers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = Kairos::start(dir.path());
    // Every acknowledged job is there (checked through the listing, 500 at a time).
    let mut found = HashSet::new();
    let mut url = format!("{}/v1/jobs?queue=default&limit=500", server.base);
    loop {
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        found.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{}/v1/jobs?queue=default&limit=500&cursor={c}", server.base),
            None => break,
        }
    }
    let missing: Vec<_> = acked.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged jobs lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let counts: Value = client
        .get(format!("{}/v1/queues/default", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts["counts"]["available"].as_u64().unwrap() as usize,
        found.len(),
        "kept counts match the rows"
    );

    // The orphaned job comes back once its lease (judged by the server's clock) expires.
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let (_, got) = post(
            &client,
            format!("{}/v1/lease", server.base),
            json!({"queues": ["crash"], "worker": "survivor", "wait": "5s"}),
        )
        .await
        .unwrap();
        if let Some(j) = got["jobs"].as_array().and_then(|a| a.first()) {
            break j.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned job was never leased again"
        );
    };
    assert_eq!(again["id"], job["id"]);
    assert_eq!(again["attempt"], 2);
    assert_eq!(again["errors"][0]["error"], "lease expired");
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "graceful exit: {status:?}");
}

/// SIGTERM and SIGINT stop the server cleanly, and its data opens again.
#[tokio::test]
async fn sigterm_and_sigint_shut_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = Kairos::start(dir.path());
    let (st, job) = post(
        &client,
        format!("{}/v1/jobs", server.base),
        json!({"kind": "k"}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    assert!(server.signal_and_wait("TERM").success());
    let server = Kairos::start(dir.path());
    let got: Value = client
        .get(format!(
            "{}/v1/jobs/{}",
            server.base,
            job["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], job["id"]);
    assert!(server.signal_and_wait("INT").success());
}

/// A per-second schedule with `misfire: run_all` keeps every slot across a `kill -9`:
/// after the restart, its runs cover every second from the first to the last, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_slots_survive_kill_9_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = Kairos::start(dir.path());
    let (st, sched) = post(
        &client,
        format!("{}/v1/schedules", server.base),
        json!({"name": "every-second", "cron": "* * * * * *", "misfire": "run_all",
               "job": {"queue": "ticks", "kind": "tick"}}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201, "{sched}");
    let id = sched["id"].as_str().unwrap().to_string();
    let runs = |base: String| {
        let (client, id) = (client.clone(), id.clone());
        async move {
            let page: Value = client
                .get(format!("{base}/v1/jobs?schedule_id={id}&limit=500"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut slots: Vec<i64> = page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| {
                    let t: jiff::Timestamp = j["scheduled_for"].as_str().unwrap().parse().unwrap();
                    t.as_second()
                })
                .collect();
            slots.sort();
            slots
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs(server.base.clone()).await.len() < 2 {
        assert!(Instant::now() < deadline, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    // Stay down across a few slots (polling the clock, not a fixed sleep).
    let down_until = jiff::Timestamp::now().as_second() + 3;
    while jiff::Timestamp::now().as_second() < down_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = Kairos::start(dir.path());
    let restarted = jiff::Timestamp::now().as_second();
    let deadline = Instant::now() + Duration::from_secs(20);
    let slots = loop {
        let slots = runs(server.base.clone()).await;
        if slots.last().is_some_and(|last| *last > restarted) {
            break slots;
        }
        assert!(
            Instant::now() < deadline,
            "no runs after the restart: {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = slots[0];
    let expected: Vec<i64> = (first..=*slots.last().unwrap()).collect();
    assert_eq!(slots, expected, "every second once, across the crash");
    assert!(server.signal_and_wait("TERM").success());
}

/// SIGTERM ends a waiting long-poll at once with an empty answer, and a request wedged on
/// a client that never finishes its body does not hold the process past
/// `--shutdown-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_has_a_deadline() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Kairos::try_start(
        dir.path(),
        &[
            "--shutdown-timeout",
            "500ms",
            "--body-timeout",
            "1h",
            "--request-timeout",
            "1h",
        ],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let waiting = tokio::spawn({
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            post(
                &client,
                format!("{base}/v1/lease"),
                json!({"queues": ["q"], "worker": "w", "wait": "60s"}),
            )
            .await
        }
    });
    let mut wedged = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    wedged
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nhost: k\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    // Both requests are in flight once the server answers a third one.
    let (st, _) = post(
        &client,
        format!("{}/v1/jobs", server.base),
        json!({"kind": "k"}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let status = tokio::task::spawn_blocking(move || server.signal_and_wait("TERM"))
        .await
        .unwrap();
    assert!(
        status.success(),
        "exits cleanly at its deadline: {status:?}"
    );
    let (st, body) = waiting.await.unwrap().unwrap();
    assert_eq!((st, body), (200, json!({"jobs": []})));
}

/// The connection flags reach the server: a slow head is cut off after
/// `--header-read-timeout`, and past `--max-connections` a client is refused at once with
/// a 503 problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flags_bound_slow_and_greedy_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Kairos::try_start(
        dir.path(),
        &["--max-connections", "1", "--header-read-timeout", "2s"],
    )
    .unwrap();
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nhost: k\r\n")
        .await
        .unwrap();
    // While the slow client holds the only place, a second is refused at once.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: k\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), second.read_to_end(&mut answer))
        .await
        .expect("refused at once, not left waiting");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("urn:kairos:problem:overloaded"), "{answer}");
    // The slow head is closed by the header timeout, and its place is free again.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut rest))
        .await
        .expect("the slow head is cut off");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = client
            .get(format!("{}/health/live", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.signal_and_wait("TERM").success());
}
