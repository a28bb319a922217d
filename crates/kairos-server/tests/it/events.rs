//! The event log over HTTP: pages, filters, the live stream and its resumption.

use crate::support::{TestServer, assert_problem};
use serde_json::{Value, json};
use std::time::Duration;

/// Every event from the start, once `n` are readable.
async fn events(s: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let mut stream = Stream::open(s, "/v1/events/stream?after=0", None).await;
    for _ in 0..n {
        stream
            .next()
            .await
            .expect("the stream ends only at shutdown");
    }
    let page = s.get(&format!("/v1/events?{query}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["events"].as_array().unwrap().clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// A Server-Sent Events reader.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(s: &TestServer, path: &str, last_event_id: Option<u64>) -> Stream {
        let mut req = s.client.get(format!("{}{path}", s.base));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's id and JSON; `None` once the server ended the stream.
    async fn next(&mut self) -> Option<(u64, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                match (id, data) {
                    (Some(id), Some(data)) => return Some((id, data)),
                    _ => continue, // a keep-alive comment
                }
            }
            // A bound on a broken test, not a synchronisation.
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk())
                .await
                .expect("an event (or the stream's end) within 20 s")
                .ok()?;
            self.buf.push_str(std::str::from_utf8(&chunk?).unwrap());
        }
    }
}

#[tokio::test]
async fn a_jobs_life_reads_as_events_filtered_by_type_and_queue() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"queue": "ev-a", "kind": "k"})).await;
    s.enqueue(json!({"queue": "ev-b", "kind": "k"})).await;
    let leased = s.lease("ev-a", 1).await;
    s.ack(&leased[0], json!({"outcome": "completed"})).await;
    let all = events(&s, "", 4).await;
    assert_eq!(
        types(&all),
        [
            "job.enqueued",
            "job.enqueued",
            "job.started",
            "job.completed"
        ]
    );
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let done = &all[3];
    assert_eq!(done["job_id"], job["id"]);
    assert_eq!(done["queue"], "ev-a");
    assert_eq!(done["schedule_id"], Value::Null);
    assert_eq!(done["data"]["state"], "completed");
    assert!(done["at"].is_string());
    let page = s
        .get("/v1/events?types=job.completed,job.started")
        .await
        .body;
    assert_eq!(
        types(page["events"].as_array().unwrap()),
        ["job.started", "job.completed"]
    );
    let page = s.get("/v1/events?queue=ev-b").await.body;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let page = s.get("/v1/events?limit=2").await.body;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], ids[1]);
    let rest = s.get(&format!("/v1/events?after={}", ids[1])).await.body;
    assert_eq!(rest["events"][0]["id"], ids[2]);
    s.stop().await;
}

#[tokio::test]
async fn bad_event_queries_name_the_field() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_problem(
        &s.get("/v1/events?types=job.exploded").await,
        422,
        Some("types"),
    );
    assert_problem(&s.get("/v1/events?limit=0").await, 422, Some("limit"));
    assert_problem(
        &s.get("/v1/events?after=9223372036854775808").await,
        422,
        Some("after"),
    );
    assert_problem(&s.get("/v1/events?limit=1001").await, 422, Some("limit"));
    assert_problem(
        &s.get("/v1/events?queue=bad%20name").await,
        422,
        Some("queue"),
    );
    let unknown = s.get("/v1/events?colour=red").await;
    assert!(unknown.status.is_client_error(), "{}", unknown.body);
    let resp = s
        .client
        .get(format!("{}/v1/events/stream", s.base))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    let answer = TestServer::answer(resp).await;
    assert_problem(&answer, 422, Some("Last-Event-ID"));
    s.stop().await;
}

#[tokio::test]
async fn the_stream_sends_new_events_and_resumes_after_the_last_one_seen() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    s.enqueue(json!({"queue": "st", "kind": "before"})).await;
    // Readable before the stream opens (PostgreSQL numbers committed events a moment
    // after their commit; "new events only" means after the numbered head).
    events(&s, "", 1).await;
    // Without a starting point, the stream begins with events after it was opened.
    let mut live = Stream::open(&s, "/v1/events/stream?queue=st", None).await;
    let first = s.enqueue(json!({"queue": "st", "kind": "first"})).await;
    s.enqueue(json!({"queue": "other", "kind": "filtered-out"}))
        .await;
    let (id, e) = live.next().await.unwrap();
    assert_eq!(e["type"], "job.enqueued");
    assert_eq!(e["job_id"], first["id"]);
    assert_eq!(e["id"], id);
    drop(live);
    // Missed while disconnected, delivered on resumption, in order, nothing twice.
    let second = s.enqueue(json!({"queue": "st", "kind": "second"})).await;
    let leased = s.lease("st", 1).await;
    let mut resumed = Stream::open(&s, "/v1/events/stream?queue=st", Some(id)).await;
    let (id2, e2) = resumed.next().await.unwrap();
    assert!(id2 > id);
    assert_eq!(e2["job_id"], second["id"]);
    let (_, e3) = resumed.next().await.unwrap();
    assert_eq!(e3["type"], "job.started");
    assert_eq!(e3["job_id"], leased[0]["id"]);
    // `?after=` starts there too.
    let mut from = Stream::open(&s, &format!("/v1/events/stream?after={id}&queue=st"), None).await;
    assert_eq!(from.next().await.unwrap().0, id2);
    s.stop().await;
}

#[tokio::test]
async fn streams_end_at_once_when_the_server_shuts_down() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let mut idle = Stream::open(&s, "/v1/events/stream", None).await;
    s.stop().await;
    assert!(idle.next().await.is_none(), "the stream ended");
}
