//! Finished jobs leave after their retention, by themselves.

use crate::support::TestServer;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn completed_jobs_are_deleted_after_their_retention_and_dead_ones_kept() {
    let Some(s) = TestServer::start_with(|c| {
        c.retention = kairos_core::Retention {
            completed: kairos_core::Duration::ZERO,
            dead: kairos_core::Duration::from_secs(3600),
            events: kairos_core::Duration::ZERO,
        }
    })
    .await
    else {
        return;
    };
    let done = s.enqueue(json!({"queue": "r", "kind": "done"})).await;
    let dead = s
        .enqueue(json!({"queue": "r", "kind": "dead", "max_attempts": 1}))
        .await;
    for leased in s.lease("r", 10).await {
        let outcome = if leased["id"] == done["id"] {
            json!({"outcome": "completed"})
        } else {
            json!({"outcome": "failed", "error": "boom"})
        };
        s.ack(&leased, outcome).await;
    }
    // The maintenance pass runs every few seconds: wait for it to take the job.
    let deadline = Instant::now() + Duration::from_secs(20);
    let done_url = format!("/v1/jobs/{}", done["id"].as_str().unwrap());
    while s.get(&done_url).await.status != 404 {
        assert!(
            Instant::now() < deadline,
            "the completed job was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead_now = s
        .get(&format!("/v1/jobs/{}", dead["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        dead_now.status, 200,
        "dead jobs are kept for their own retention"
    );
    assert_eq!(dead_now.body["state"], "dead");
    let q = s.get("/v1/queues/r").await.body;
    assert_eq!(q["counts"]["completed"], 0, "{q}");
    assert_eq!(q["counts"]["dead"], 1, "{q}");
    // Events go after their own retention (zero here), by the same pass.
    while !s.get("/v1/events").await.body["events"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "events were never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
