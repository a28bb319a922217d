//! The event stream across a restart: a client that reconnects with `Last-Event-ID`
//! after the server was killed and started again misses nothing and sees nothing twice.

use crate::support::Kairos;
use kairos_client::Client;
use kairos_core::api::EnqueueRequest;
use serde_json::Value;
use std::time::Duration;

async fn enqueue(base: &str) -> String {
    let req = EnqueueRequest {
        queue: Some("sse".into()),
        kind: "k".into(),
        ..Default::default()
    };
    let job = Client::new(base).unwrap().enqueue(&req).await.unwrap();
    job.id.to_string()
}

/// The first `n` events of a stream opened after `last`.
async fn stream_after(http: &reqwest::Client, base: &str, last: u64, n: usize) -> Vec<Value> {
    let mut resp = http
        .get(format!("{base}/v1/events/stream"))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut buf, mut got) = (String::new(), Vec::new());
    while got.len() < n {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                got.push(serde_json::from_str(data.trim()).unwrap());
            }
            continue;
        }
        // A bound on a broken test, not a synchronisation.
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    got
}

#[tokio::test]
async fn a_stream_resumes_across_a_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let k = Kairos::start(dir.path());
    let first = enqueue(&k.base).await;
    let seen = stream_after(&http, &k.base, 0, 1).await;
    assert_eq!(seen[0]["job_id"], first.as_str());
    let last = seen[0]["id"].as_u64().unwrap();
    let missed = enqueue(&k.base).await;
    k.kill9();
    let k = Kairos::start(dir.path());
    let later = enqueue(&k.base).await;
    let resumed = stream_after(&http, &k.base, last, 2).await;
    let jobs: Vec<&str> = resumed
        .iter()
        .map(|e| e["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, [missed.as_str(), later.as_str()]);
    assert!(resumed.iter().all(|e| e["type"] == "job.enqueued"));
    assert!(resumed[0]["id"].as_u64().unwrap() > last);
}
