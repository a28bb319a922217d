//! `/v1/queues`: counts, pause and resume, redrive of dead jobs; and health probes.

use crate::support::{TestServer, assert_problem};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn queues_show_counts_per_state() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_eq!(s.get("/v1/queues").await.body, json!({"queues": []}));
    assert_problem(&s.get("/v1/queues/mail").await, 404, None);
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    s.enqueue(json!({"queue": "mail", "kind": "k", "delay": "1h"}))
        .await;
    s.enqueue(json!({"queue": "sms", "kind": "k"})).await;
    let l = s.lease("mail", 1).await.remove(0);
    s.ack(
        &l,
        json!({"outcome": "failed", "error": "x", "retry": false}),
    )
    .await;
    let q = s.get("/v1/queues/mail").await;
    assert_eq!(q.status, StatusCode::OK);
    assert_eq!(
        q.body,
        json!({"name": "mail", "paused": false, "counts": {
            "scheduled": 1, "available": 1, "running": 0, "retryable": 0,
            "completed": 0, "dead": 1, "cancelled": 0}})
    );
    let all = s.get("/v1/queues").await.body;
    let names: Vec<&str> = all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["mail", "sms"]);
    s.stop().await;
}

#[tokio::test]
async fn paused_queue_takes_jobs_but_leases_none() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let p = s
        .call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body["paused"], true);
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    assert!(s.lease("mail", 1).await.is_empty());
    assert_eq!(s.get("/v1/queues/mail").await.body["paused"], true);
    let waiter = s.spawn_post(
        "/v1/lease",
        json!({"queues": ["mail"], "worker": "w", "wait": "20s"}),
    );
    let p = s
        .call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"paused": false})),
        )
        .await;
    assert_eq!(p.body["paused"], false);
    let got = waiter.await.unwrap();
    assert_eq!(
        got.body["jobs"].as_array().unwrap().len(),
        1,
        "resuming serves waiting workers"
    );
    assert_problem(
        &s.call(Method::PATCH, "/v1/queues/mail", Some(json!({})))
            .await,
        422,
        Some("paused"),
    );
    assert_problem(
        &s.call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"paused": "yes"})),
        )
        .await,
        422,
        Some("paused"),
    );
    assert_problem(
        &s.call(
            Method::PATCH,
            "/v1/queues/bad%20name",
            Some(json!({"paused": true})),
        )
        .await,
        422,
        Some("name"),
    );
    s.stop().await;
}

#[tokio::test]
async fn retry_dead_redrives_the_dead_letter_queue() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    for _ in 0..3 {
        s.enqueue(json!({"queue": "pay", "kind": "k", "max_attempts": 1}))
            .await;
    }
    for l in s.lease("pay", 3).await {
        s.ack(&l, json!({"outcome": "failed", "error": "declined"}))
            .await;
    }
    let dead = s.get("/v1/jobs?queue=pay&state=dead").await.body;
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 3);
    let r = s.post("/v1/queues/pay/retry-dead", json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({"retried": 3}))
    );
    let again = s.lease("pay", 3).await;
    assert_eq!(again.len(), 3);
    assert!(
        again
            .iter()
            .all(|j| j["attempt"] == 1 && j["errors"].as_array().unwrap().len() == 1)
    );
    assert_problem(
        &s.post("/v1/queues/nothing/retry-dead", json!({})).await,
        404,
        None,
    );
    s.stop().await;
}

#[tokio::test]
async fn health_probes() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    for path in ["/health/live", "/health/ready"] {
        let a = s.get(path).await;
        assert_eq!(
            (a.status, a.body.clone()),
            (StatusCode::OK, json!({"status": "ok"}))
        );
    }
    s.stop().await;
}
