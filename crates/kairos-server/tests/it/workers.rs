//! The worker protocol: lease (with long-poll), ack, heartbeat, lease expiry.

use crate::support::{TestServer, assert_problem};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn lease_then_complete_and_repeat_the_ack() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "k", "payload": {"n": 1}})).await;
    let leased = s.lease("default", 5).await;
    assert_eq!(leased.len(), 1);
    let l = &leased[0];
    assert_eq!(l["id"], job["id"]);
    assert_eq!(l["payload"], json!({"n": 1}));
    assert_eq!(
        (l["state"].as_str(), l["attempt"].as_u64()),
        (Some("running"), Some(1))
    );
    assert!(l["lease_token"].is_string() && l["lease_expires_at"].is_string());
    let item = s
        .ack(l, json!({"outcome": "completed", "result": {"sent": true}}))
        .await;
    assert_eq!(
        item,
        json!({"id": job["id"], "ok": true, "state": "completed"})
    );
    let again = s.ack(l, json!({"outcome": "completed"})).await;
    assert_eq!(again["ok"], true, "a repeated ack answers ok again");
    let other = s.ack(l, json!({"outcome": "failed", "error": "x"})).await;
    assert_eq!(other["ok"], false);
    assert_eq!(other["error"]["status"], 409);
    let got = s
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(got["state"], "completed");
    assert_eq!(got["result"], json!({"sent": true}));
    assert!(got["finished_at"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn stale_and_unknown_items_are_refused_alone() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    s.enqueue(json!({"kind": "a"})).await;
    s.enqueue(json!({"kind": "b"})).await;
    let leased = s.lease("default", 2).await;
    let unknown = uuid::Uuid::now_v7();
    let body = json!({"worker": "w1", "results": [
        {"id": leased[0]["id"], "lease_token": leased[0]["lease_token"], "outcome": "completed"},
        {"id": leased[1]["id"], "lease_token": uuid::Uuid::new_v4(), "outcome": "completed"},
        {"id": unknown, "lease_token": leased[1]["lease_token"], "outcome": "completed"},
    ]});
    let a = s.post("/v1/ack", body).await;
    assert_eq!(a.status, StatusCode::OK);
    let r = a.body["results"].as_array().unwrap();
    assert_eq!(r[0]["ok"], true);
    assert_eq!(
        (r[1]["ok"].as_bool(), r[1]["error"]["status"].as_u64()),
        (Some(false), Some(409))
    );
    assert_eq!(
        (r[2]["ok"].as_bool(), r[2]["error"]["status"].as_u64()),
        (Some(false), Some(404))
    );
    let b = s
        .get(&format!("/v1/jobs/{}", leased[1]["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(b["state"], "running", "a stale token changed nothing");
    s.stop().await;
}

#[tokio::test]
async fn failures_retry_with_backoff_then_die() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "k", "max_attempts": 2})).await;
    let id = job["id"].as_str().unwrap();
    let l = s.lease("default", 1).await.remove(0);
    let item = s
        .ack(&l, json!({"outcome": "failed", "error": "smtp down"}))
        .await;
    assert_eq!(item["state"], "retryable");
    let got = s.get(&format!("/v1/jobs/{id}")).await.body;
    assert_eq!(got["errors"][0]["error"], "smtp down");
    assert_eq!(got["errors"][0]["attempt"], 1);
    let run_at: jiff::Timestamp = got["run_at"].as_str().unwrap().parse().unwrap();
    let failed_at: jiff::Timestamp = got["errors"][0]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        run_at.duration_since(failed_at),
        jiff::SignedDuration::from_secs(2)
    );
    assert!(
        s.lease("default", 1).await.is_empty(),
        "not before its backoff"
    );

    let r = s.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(r.body["state"], "available");
    let l = s.lease("default", 1).await.remove(0);
    assert_eq!(l["attempt"], 2);
    let item = s
        .ack(&l, json!({"outcome": "failed", "error": "again"}))
        .await;
    assert_eq!(item["state"], "dead");

    let j2 = s.enqueue(json!({"kind": "k2"})).await;
    let l = s.lease("default", 1).await.remove(0);
    assert_eq!(l["id"], j2["id"]);
    let item = s
        .ack(
            &l,
            json!({"outcome": "failed", "error": "bad input", "retry": false}),
        )
        .await;
    assert_eq!(item["state"], "dead");

    let j3 = s.enqueue(json!({"kind": "k3"})).await;
    let l = s.lease("default", 1).await.remove(0);
    s.ack(
        &l,
        json!({"outcome": "failed", "error": "busy", "retry_in": "100ms"}),
    )
    .await;
    s.wait_for_job(j3["id"].as_str().unwrap(), |j| j["state"] == "available")
        .await;
    s.stop().await;
}

#[tokio::test]
async fn lease_order_is_priority_then_age() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let low = s
        .enqueue(json!({"queue": "a", "kind": "low", "priority": -5}))
        .await;
    let mid = s.enqueue(json!({"queue": "b", "kind": "mid"})).await;
    let high = s
        .enqueue(json!({"queue": "a", "kind": "high", "priority": 100}))
        .await;
    let mid2 = s.enqueue(json!({"queue": "a", "kind": "mid2"})).await;
    let a = s
        .post(
            "/v1/lease",
            json!({"queues": ["a", "b"], "worker": "w", "max": 10}),
        )
        .await;
    let ids: Vec<_> = a.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            high["id"].clone(),
            mid["id"].clone(),
            mid2["id"].clone(),
            low["id"].clone()
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn waiting_lease_wakes_on_enqueue() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let started = Instant::now();
    let waiter = s.spawn_post(
        "/v1/lease",
        json!({"queues": ["mail"], "worker": "w", "wait": "60s"}),
    );
    // Give the waiter time to be waiting; correctness does not depend on it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    let a = waiter.await.unwrap();
    assert_eq!(a.body["jobs"][0]["id"], job["id"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered long before the 60 s wait ran out (engine.rs shows it is not polling)"
    );
    let empty = s
        .post(
            "/v1/lease",
            json!({"queues": ["mail"], "worker": "w", "wait": "300ms"}),
        )
        .await;
    assert_eq!(empty.body, json!({"jobs": []}));
    s.stop().await;
}

#[tokio::test]
async fn expired_lease_is_retried() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s
        .enqueue(json!({"kind": "k", "backoff": {"type": "fixed", "base": "0s"}}))
        .await;
    let id = job["id"].as_str().unwrap();
    let a = s
        .post(
            "/v1/lease",
            json!({"queues": ["default"], "worker": "dies", "lease": "200ms"}),
        )
        .await;
    let first = a.body["jobs"][0].clone();
    let got = s
        .wait_for_job(id, |j| {
            j["errors"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
    assert_eq!(got["errors"][0]["error"], "lease expired");
    let late = s.ack(&first, json!({"outcome": "completed"})).await;
    assert_eq!(
        (late["ok"].as_bool(), late["error"]["status"].as_u64()),
        (Some(false), Some(409))
    );
    let again = s
        .post(
            "/v1/lease",
            json!({"queues": ["default"], "worker": "w2", "wait": "5s"}),
        )
        .await;
    assert_eq!(again.body["jobs"][0]["id"], job["id"]);
    assert_eq!(again.body["jobs"][0]["attempt"], 2);
    s.stop().await;
}

#[tokio::test]
async fn heartbeat_extends_and_reports_cancel() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "k"})).await;
    let l = s.lease("default", 1).await.remove(0);
    let hb = |token: serde_json::Value| json!({"worker": "w1", "leases": [{"id": job["id"], "lease_token": token, "extend": "2m"}]});
    let a = s.post("/v1/heartbeat", hb(l["lease_token"].clone())).await;
    assert_eq!(a.status, StatusCode::OK);
    let r = &a.body["results"][0];
    assert_eq!(
        (r["ok"].as_bool(), r["cancel_requested"].as_bool()),
        (Some(true), Some(false))
    );
    let until: jiff::Timestamp = r["lease_expires_at"].as_str().unwrap().parse().unwrap();
    assert!(until > jiff::Timestamp::now() + jiff::SignedDuration::from_secs(100));
    s.post(
        &format!("/v1/jobs/{}/cancel", job["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    let a = s.post("/v1/heartbeat", hb(l["lease_token"].clone())).await;
    assert_eq!(a.body["results"][0]["cancel_requested"], true);
    let stale = s
        .post("/v1/heartbeat", hb(json!(uuid::Uuid::new_v4())))
        .await;
    let r = &stale.body["results"][0];
    assert_eq!(
        (r["ok"].as_bool(), r["error"]["status"].as_u64()),
        (Some(false), Some(409))
    );
    s.stop().await;
}

#[tokio::test]
async fn worker_requests_are_validated() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let lease = |body| s.post("/v1/lease", body);
    assert_problem(&lease(json!({"worker": "w"})).await, 422, Some("queues"));
    assert_problem(&lease(json!({"queues": ["q"]})).await, 422, Some("worker"));
    assert_problem(
        &lease(json!({"queues": ["q"], "worker": ""})).await,
        422,
        Some("worker"),
    );
    let host_style = lease(json!({"queues": ["q"], "worker": "worker-7@host pid 12"})).await;
    assert_eq!(
        host_style.status,
        StatusCode::OK,
        "worker names are free-form: {}",
        host_style.body
    );
    assert_problem(
        &lease(json!({"queues": [], "worker": "w"})).await,
        422,
        Some("queues"),
    );
    assert_problem(
        &lease(json!({"queues": ["q"], "worker": "w", "max": 1001})).await,
        422,
        Some("max"),
    );
    assert_problem(
        &lease(json!({"queues": ["q"], "worker": "w", "wait": "61s"})).await,
        422,
        Some("wait"),
    );
    assert_problem(
        &lease(json!({"queues": ["bad name"], "worker": "w"})).await,
        422,
        Some("queues[0]"),
    );
    let id = uuid::Uuid::now_v7();
    let ack = |item| s.post("/v1/ack", json!({"worker": "w", "results": [item]}));
    assert_problem(
        &ack(json!({"id": id, "lease_token": id, "outcome": "failed"})).await,
        422,
        Some("results[0].error"),
    );
    // Found by schemathesis: an empty error says nothing of what went wrong.
    assert_problem(
        &ack(json!({"id": id, "lease_token": id, "outcome": "failed", "error": ""})).await,
        422,
        Some("results[0].error"),
    );
    assert_problem(
        &ack(json!({"id": id, "lease_token": id, "outcome": "maybe"})).await,
        422,
        Some("results[0].outcome"),
    );
    assert_problem(
        &ack(json!({"id": "nope", "lease_token": id, "outcome": "completed"})).await,
        422,
        Some("results[0].id"),
    );
    s.stop().await;
}

#[tokio::test]
async fn a_lease_names_at_most_100_queues() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let queues: Vec<String> = (0..100_000).map(|i| format!("q{i}")).collect();
    let a = s
        .post("/v1/lease", json!({"queues": queues, "worker": "w"}))
        .await;
    assert_problem(&a, 422, Some("queues"));
    assert_eq!(
        a.body["errors"].as_array().unwrap().len(),
        1,
        "one error, not 100,000"
    );
    let mut hundred: Vec<String> = (0..100).map(|i| format!("q{i}")).collect();
    hundred.extend((0..100).map(|i| format!("q{i}")));
    assert_eq!(hundred.len(), 200);
    assert_problem(
        &s.post("/v1/lease", json!({"queues": hundred, "worker": "w"}))
            .await,
        422,
        Some("queues"),
    );
    s.enqueue(json!({"queue": "q99", "kind": "k"})).await;
    let ok: Vec<String> = (0..100).map(|i| format!("q{i}")).collect();
    let a = s
        .post("/v1/lease", json!({"queues": ok, "worker": "w", "max": 10}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["jobs"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_error_list_is_bounded_and_counts_every_failure() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "k", "max_attempts": 1})).await;
    let id = job["id"].as_str().unwrap();
    for i in 0..25 {
        let l = s.lease("default", 1).await.remove(0);
        let r = s
            .ack(
                &l,
                json!({"outcome": "failed", "error": format!("boom {i}")}),
            )
            .await;
        assert_eq!(r["state"], "dead");
        let retried = s.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
        assert_eq!(retried.status, StatusCode::OK);
    }
    let got = s.get(&format!("/v1/jobs/{id}")).await.body;
    let errors = got["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 20);
    assert_eq!(errors[0]["error"], "boom 5");
    assert_eq!(errors[19]["error"], "boom 24");
    assert_eq!(got["failures"], 25);
    s.stop().await;
}

/// The server runs on any store the caller opens, here one on a manual clock: time moves
/// when the test says, so run_at and lease expiry are tested without sleeping.
#[tokio::test]
async fn time_is_the_stores_clock() {
    let clock = std::sync::Arc::new(kairos_core::ManualClock::new(
        "2030-01-01T00:00:00Z".parse().unwrap(),
    ));
    let Some(s) = TestServer::start_on_clock(clock.clone()).await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "k", "delay": "1h"})).await;
    assert_eq!(job["run_at"], "2030-01-01T01:00:00Z");
    assert!(s.lease("default", 1).await.is_empty(), "not due yet");
    clock.advance(Duration::from_secs(3600));
    let l = s
        .post(
            "/v1/lease",
            json!({"queues": ["default"], "worker": "w1", "lease": "30s"}),
        )
        .await
        .body["jobs"][0]
        .clone();
    assert_eq!(l["id"], job["id"], "due once the store's clock says so");
    assert_eq!(l["lease_expires_at"], "2030-01-01T01:00:30Z");
    clock.advance(Duration::from_secs(31));
    let late = s.ack(&l, json!({"outcome": "completed"})).await;
    assert_eq!(late["error"]["type"], "urn:kairos:problem:lease-expired");
    s.stop().await;
}

#[tokio::test]
async fn the_server_lists_the_workers_it_heard_from() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"queue": "reg", "kind": "k"})).await;
    let before = s.get("/v1/workers").await;
    assert_eq!(before.status, 200);
    assert_eq!(before.body, json!({"workers": []}));
    let leased = TestServer::answer(
        s.client
            .post(format!("{}/v1/lease", s.base))
            .header("x-kairos-worker-hostname", "box-7")
            .header("x-kairos-worker-version", "kairos-client 0.1.0")
            .json(&json!({"queues": ["reg", "other"], "worker": "mailer-1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(leased.body["jobs"][0]["id"], job["id"]);
    let list = s.get("/v1/workers").await.body;
    let w = &list["workers"][0];
    assert_eq!(w["name"], "mailer-1");
    assert_eq!(w["queues"], json!(["reg", "other"]));
    assert_eq!(w["hostname"], "box-7");
    assert_eq!(w["version"], "kairos-client 0.1.0");
    assert_eq!(w["running"], 1);
    assert_eq!(w["state"], "online");
    assert!(w["started_at"].is_string() && w["last_seen_at"].is_string());
    // An ack from the same worker: still known (its headers kept), nothing running.
    let acked = s
        .post(
            "/v1/ack",
            json!({"worker": "mailer-1", "results": [{
                "id": job["id"], "lease_token": leased.body["jobs"][0]["lease_token"],
                "outcome": "completed"}]}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let list = s.get("/v1/workers").await.body;
    assert_eq!(list["workers"].as_array().unwrap().len(), 1);
    assert_eq!(list["workers"][0]["running"], 0);
    assert_eq!(list["workers"][0]["hostname"], "box-7");
    s.stop().await;
}

#[tokio::test]
async fn every_node_on_a_store_lists_the_workers_any_of_them_heard() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let other = s.beside().await;
    s.enqueue(json!({"queue": "roam", "kind": "k"})).await;
    let leased = TestServer::answer(
        s.client
            .post(format!("{}/v1/lease", s.base))
            .header("x-kairos-worker-hostname", "box-9")
            .json(&json!({"queues": ["roam"], "worker": "roamer"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(leased.body["jobs"].as_array().unwrap().len(), 1);
    // Saved within a second or so of being first heard; the other node reads it then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let list = other.get("/v1/workers").await.body;
        if let Some(w) = list["workers"].as_array().unwrap().first() {
            break w.clone();
        }
        assert!(Instant::now() < deadline, "the other node never listed it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(w["name"], "roamer");
    assert_eq!(w["queues"], json!(["roam"]));
    assert_eq!(w["hostname"], "box-9");
    assert_eq!(w["running"], 1, "its lease, read from the store");
    assert_eq!(w["state"], "online");
    drop(other);
    s.stop().await;
}
