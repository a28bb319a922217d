//! Bad input gets a clear problem+json answer and changes nothing.

use crate::support::{TestServer, assert_problem};
use reqwest::Method;
use serde_json::json;

async fn nothing_created(s: &TestServer) {
    assert_eq!(
        s.get("/v1/jobs").await.body["jobs"],
        json!([]),
        "a refused request created nothing"
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_problem(&s.post_raw("/v1/jobs", "{\"kind\": ").await, 400, None);
    assert_problem(&s.post_raw("/v1/jobs", "not json").await, 400, None);
    assert_problem(
        &s.post_raw("/v1/jobs", "{\"kind\":\"a\"} trailing").await,
        400,
        None,
    );
    assert_problem(&s.post_raw("/v1/lease", "").await, 400, None);
    nothing_created(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let cases = [
        (json!({}), "kind"),
        (json!({"kind": null}), "kind"),
        (json!({"kind": 5}), "kind"),
        (json!({"kind": "k", "colour": "red"}), "colour"),
        (json!({"kind": "has space"}), "kind"),
        (json!({"kind": "x".repeat(129)}), "kind"),
        (json!({"kind": "k", "queue": "bad/queue"}), "queue"),
        (json!({"kind": "k", "queue": ""}), "queue"),
        (json!({"kind": "k", "priority": 101}), "priority"),
        (json!({"kind": "k", "priority": -101}), "priority"),
        (json!({"kind": "k", "priority": "high"}), "priority"),
        (
            json!({"kind": "k", "run_at": "2030-01-01T00:00:00Z", "delay": "5s"}),
            "delay",
        ),
        (json!({"kind": "k", "run_at": "tomorrow"}), "run_at"),
        (json!({"kind": "k", "delay": "5 seconds"}), "delay"),
        (json!({"kind": "k", "delay": "3651d"}), "delay"),
        (
            json!({"kind": "k", "delay": "99999999999999999ms"}),
            "delay",
        ),
        (json!({"kind": "k", "timeout": "0s"}), "timeout"),
        (json!({"kind": "k", "timeout": 30}), "timeout"),
        (json!({"kind": "k", "max_attempts": 0}), "max_attempts"),
        (json!({"kind": "k", "max_attempts": -1}), "max_attempts"),
        (
            json!({"kind": "k", "backoff": {"type": "quadratic"}}),
            "backoff.type",
        ),
        (
            json!({"kind": "k", "backoff": {"factor": 0.5}}),
            "backoff.factor",
        ),
        (
            json!({"kind": "k", "backoff": {"colour": 1}}),
            "backoff.colour",
        ),
        (json!({"kind": "k", "unique_key": ""}), "unique_key"),
        (json!({"kind": "k", "tags": ["ok", ""]}), "tags[1]"),
        (json!({"kind": "k", "tags": "one"}), "tags"),
    ];
    for (body, field) in cases {
        let a = s.post("/v1/jobs", body.clone()).await;
        assert_problem(&a, 422, Some(field));
    }
    nothing_created(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_payloads_are_413() {
    let Some(s) = TestServer::start_with(|c| {
        c.max_payload_bytes = 1024;
        c.max_body_bytes = 64 * 1024;
    })
    .await
    else {
        return;
    };
    let big = "x".repeat(2000);
    assert_problem(
        &s.post("/v1/jobs", json!({"kind": "k", "payload": {"blob": big}}))
            .await,
        413,
        Some("payload"),
    );
    let batch = json!({"jobs": [{"kind": "k"}, {"kind": "k", "payload": big}]});
    assert_problem(
        &s.post("/v1/jobs/batch", batch).await,
        413,
        Some("jobs[1].payload"),
    );
    let huge = "y".repeat(100 * 1024);
    assert_problem(
        &s.post("/v1/jobs", json!({"kind": "k", "payload": huge}))
            .await,
        413,
        None,
    );
    nothing_created(&s).await;
    let ok = s
        .post(
            "/v1/jobs",
            json!({"kind": "k", "payload": {"blob": "x".repeat(900)}}),
        )
        .await;
    assert_eq!(ok.status, 201);
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_problem(&s.get("/v2/jobs").await, 404, None);
    assert_problem(
        &s.call(Method::PUT, "/v1/jobs", Some(json!({}))).await,
        405,
        None,
    );
    s.stop().await;
}

#[tokio::test]
async fn undecodable_path_names_are_problems() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_problem(&s.get("/v1/queues/%FF").await, 404, None);
    assert_problem(
        &s.call(
            Method::PATCH,
            "/v1/queues/%FF",
            Some(json!({"paused": true})),
        )
        .await,
        422,
        Some("name"),
    );
    assert_problem(
        &s.post("/v1/queues/%FF%FE/retry-dead", json!({})).await,
        404,
        None,
    );
    assert_eq!(s.get("/v1/queues").await.body, json!({"queues": []}));
    s.stop().await;
}

#[tokio::test]
async fn query_errors_name_the_parameter() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_problem(&s.get("/v1/jobs?limit=1&limit=2").await, 422, Some("limit"));
    assert_problem(&s.get("/v1/jobs?limit=ten").await, 422, Some("limit"));
    assert_problem(&s.get("/v1/jobs?colour=red").await, 422, Some("colour"));
    s.stop().await;
}

#[tokio::test]
async fn integers_are_json_integers() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s
        .enqueue(json!({"kind": "k", "priority": -0.0, "max_attempts": 5.0}))
        .await;
    assert_eq!(
        (job["priority"].as_i64(), job["max_attempts"].as_i64()),
        (Some(0), Some(5))
    );
    let raw = s
        .post_raw("/v1/jobs", r#"{"kind":"k","priority":-0}"#)
        .await;
    assert_eq!(raw.status, 201, "{}", raw.body);
    assert_problem(
        &s.post("/v1/jobs", json!({"kind": "k", "priority": 1.5}))
            .await,
        422,
        Some("priority"),
    );
    s.stop().await;
}

#[tokio::test]
async fn deeply_nested_payloads_are_refused() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    let body = format!(r#"{{"kind":"k","payload":{deep}}}"#);
    assert_problem(&s.post_raw("/v1/jobs", body).await, 422, Some("payload"));
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    let a = s
        .post_raw("/v1/jobs", format!(r#"{{"kind":"k","payload":{ok}}}"#))
        .await;
    assert_eq!(a.status, 201);
    let leased = s.lease("default", 1).await;
    assert_eq!(
        leased.len(),
        1,
        "a worker's JSON parser reads the deepest payload"
    );
    // The request's own structure is bounded by the parser: 400, not a crash.
    let nested_request = format!(r#"{{"kind":"k","backoff":{}}}"#, "[".repeat(100_000));
    assert_problem(&s.post_raw("/v1/jobs", nested_request).await, 400, None);
    s.stop().await;
}
