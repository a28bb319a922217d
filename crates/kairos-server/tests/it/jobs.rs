//! `/v1/jobs`: enqueue, batch, idempotency, read, list, cancel, retry, delete.

use crate::support::{TestServer, assert_problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const FIELDS: [&str; 20] = [
    "id",
    "queue",
    "kind",
    "payload",
    "priority",
    "state",
    "attempt",
    "max_attempts",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "unique_key",
    "tags",
    "errors",
    "result",
    "timeout",
    "backoff",
    "cancel_requested",
    "id",
];

#[tokio::test]
async fn enqueue_applies_defaults_and_shows_every_field() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"kind": "email"})).await;
    for f in FIELDS {
        assert!(job.get(f).is_some(), "field {f} present: {job}");
    }
    assert_eq!(job["queue"], "default");
    assert_eq!(job["payload"], json!({}));
    assert_eq!(job["priority"], 0);
    assert_eq!(job["state"], "available");
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["timeout"], "30s");
    assert_eq!(job["unique_key"], Value::Null);
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["tags"], json!([]));
    assert_eq!(job["cancel_requested"], false);
    assert_eq!(
        job["backoff"],
        json!({"type": "exponential", "base": "2s", "factor": 2.0, "max": "1h", "jitter": false})
    );
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    let id = job["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let got = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, job);
    s.stop().await;
}

#[tokio::test]
async fn run_at_and_delay_schedule_jobs() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let later = s.enqueue(json!({"kind": "k", "delay": "1h"})).await;
    assert_eq!(later["state"], "scheduled");
    let at = s
        .enqueue(json!({"kind": "k", "run_at": "2099-01-01T10:00:00+02:00"}))
        .await;
    assert_eq!(at["run_at"], "2099-01-01T08:00:00Z", "answered in UTC");
    let precise = s
        .enqueue(json!({"kind": "k", "run_at": "2099-01-01T10:00:00.123456789+02:00"}))
        .await;
    assert_eq!(
        precise["run_at"], "2099-01-01T08:00:00.123456Z",
        "stored (and answered) to the microsecond"
    );
    let got = s
        .get(&format!("/v1/jobs/{}", precise["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(got["run_at"], precise["run_at"]);
    assert_eq!(at["state"], "scheduled");
    let past = s
        .enqueue(json!({"kind": "k", "run_at": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!(past["state"], "available");
    let soon = s.enqueue(json!({"kind": "k", "delay": "300ms"})).await;
    assert_eq!(soon["state"], "scheduled");
    let id = soon["id"].as_str().unwrap();
    s.wait_for_job(id, |j| j["state"] == "available").await;
    let leased = s.lease("default", 10).await;
    let ids: Vec<&Value> = leased.iter().map(|j| &j["id"]).collect();
    assert!(ids.contains(&&past["id"]) && ids.contains(&&soon["id"]));
    assert!(!ids.contains(&&later["id"]));
    s.stop().await;
}

#[tokio::test]
async fn unique_key_answers_the_unfinished_job() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let first = s
        .enqueue(json!({"kind": "k", "unique_key": "order-7"}))
        .await;
    let again = s
        .post("/v1/jobs", json!({"kind": "k", "unique_key": "order-7"}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first["id"]);
    let listed = s.get("/v1/jobs").await.body;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    s.stop().await;
}

/// `Prefer: return=minimal` (RFC 7240, among other preferences, any case) answers each
/// job's id, state and `created` only, and says so in `Preference-Applied`; any other
/// preference, or none, answers the whole jobs.
#[tokio::test]
async fn batch_answers_lean_when_asked_for_minimal() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let held = s.enqueue(json!({"kind": "k", "unique_key": "u1"})).await;
    let post = |prefer: Option<&'static str>, n: u32| {
        let mut req = s.client.post(format!("{}/v1/jobs/batch", s.base)).json(&json!({
            "jobs": [{"kind": "k", "unique_key": "u1"}, {"kind": "k", "delay": "1h", "payload": {"n": n}}]
        }));
        if let Some(p) = prefer {
            req = req.header("prefer", p);
        }
        async move { req.send().await.unwrap() }
    };
    for prefer in ["return=minimal", "respond-async, RETURN=\"minimal\"; x=1"] {
        let resp = post(Some(prefer), 1).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{prefer}");
        assert_eq!(resp.headers()["preference-applied"], "return=minimal");
        let body: Value = resp.json().await.unwrap();
        let jobs = body["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0],
            json!({"id": held["id"], "state": "available", "created": false}),
            "{prefer}"
        );
        let mut keys: Vec<&str> = jobs[1]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["created", "id", "state"]);
        assert_eq!(
            (&jobs[1]["state"], &jobs[1]["created"]),
            (&json!("scheduled"), &json!(true))
        );
        let made = s
            .get(&format!("/v1/jobs/{}", jobs[1]["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            made.body["payload"]["n"], 1,
            "the lean answer names the job it made"
        );
    }
    for prefer in [None, Some("return=representation"), Some("minimal")] {
        let resp = post(prefer, 2).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert!(resp.headers().get("preference-applied").is_none());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["jobs"][1]["payload"]["n"], 2,
            "{prefer:?}: the whole jobs"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn batch_is_ordered_and_all_or_nothing() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let jobs: Vec<Value> = (0..5)
        .map(|i| json!({"kind": format!("k{i}"), "payload": {"n": i}}))
        .collect();
    let a = s.post("/v1/jobs/batch", json!({"jobs": jobs})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let out = a.body["jobs"].as_array().unwrap();
    assert_eq!(out.len(), 5);
    for (i, j) in out.iter().enumerate() {
        assert_eq!(j["payload"]["n"], i);
    }
    let bad = s
        .post(
            "/v1/jobs/batch",
            json!({"jobs": [{"kind": "a"}, {"kind": "b"}, {"kind": "c"}, {"kind": "not valid"}]}),
        )
        .await;
    assert_problem(&bad, 422, Some("jobs[3].kind"));
    let listed = s.get("/v1/jobs?limit=500").await.body;
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        5,
        "the refused batch created nothing"
    );
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"kind": "k"})).collect();
    assert_problem(
        &s.post("/v1/jobs/batch", json!({"jobs": too_many})).await,
        422,
        Some("jobs"),
    );
    assert_problem(
        &s.post("/v1/jobs/batch", json!({"jobs": []})).await,
        422,
        Some("jobs"),
    );
    s.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let send = |body: Value, key: &str| {
        s.client
            .post(format!("{}/v1/jobs", s.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = TestServer::answer(send(json!({"kind": "pay"}), "k-1").await.unwrap()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = TestServer::answer(send(json!({"kind": "pay"}), "k-1").await.unwrap()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    let other = TestServer::answer(send(json!({"kind": "other"}), "k-1").await.unwrap()).await;
    assert_problem(&other, 422, Some("Idempotency-Key"));
    let listed = s.get("/v1/jobs").await.body;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
    let batch = |key: &str| {
        s.client
            .post(format!("{}/v1/jobs/batch", s.base))
            .header("Idempotency-Key", key)
            .json(&json!({"jobs": [{"kind": "a"}, {"kind": "b"}]}))
            .send()
    };
    let b1 = TestServer::answer(batch("b-1").await.unwrap()).await;
    let b2 = TestServer::answer(batch("b-1").await.unwrap()).await;
    assert_eq!((b1.status, &b1.body), (StatusCode::CREATED, &b2.body));
    let listed = s.get("/v1/jobs").await.body;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 3);
    s.stop().await;
}

#[tokio::test]
async fn unknown_jobs_are_404() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let id = uuid::Uuid::now_v7();
    assert_problem(&s.get(&format!("/v1/jobs/{id}")).await, 404, None);
    assert_problem(&s.get("/v1/jobs/not-a-uuid").await, 404, None);
    assert_problem(
        &s.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await,
        404,
        None,
    );
    assert_problem(
        &s.post(&format!("/v1/jobs/{id}/retry"), json!({})).await,
        404,
        None,
    );
    assert_problem(
        &s.call(Method::DELETE, &format!("/v1/jobs/{id}"), None)
            .await,
        404,
        None,
    );
    s.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first_with_filters() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..7 {
        let q = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            s.enqueue(json!({"queue": q, "kind": format!("k{}", i % 2)}))
                .await["id"]
                .clone(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut url = "/v1/jobs?limit=3".to_string();
    loop {
        let page = s.get(&url).await.body;
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/jobs?limit=3&cursor={c}"),
            None => {
                assert!(
                    page.get("next_cursor").is_some(),
                    "next_cursor present as null"
                );
                break;
            }
        }
    }
    assert_eq!(seen, ids);
    let even = s
        .get("/v1/jobs?queue=even&state=available&kind=k0")
        .await
        .body;
    assert_eq!(even["jobs"].as_array().unwrap().len(), 4);
    assert_eq!(
        s.get("/v1/jobs?state=running").await.body["jobs"],
        json!([])
    );
    let template = s.get("/v1/jobs?queue=&state=&kind=&limit=&cursor=").await;
    assert_eq!(
        template.body["jobs"].as_array().unwrap().len(),
        7,
        "empty parameters are absent"
    );
    assert_problem(&s.get("/v1/jobs?limit=501").await, 422, Some("limit"));
    assert_problem(&s.get("/v1/jobs?limit=abc").await, 422, Some("limit"));
    assert_problem(&s.get("/v1/jobs?state=sleeping").await, 422, Some("state"));
    assert_problem(&s.get("/v1/jobs?cursor=zzz").await, 422, Some("cursor"));
    assert_problem(&s.get("/v1/jobs?colour=red").await, 422, Some("colour"));
    s.stop().await;
}

#[tokio::test]
async fn cancel_retry_and_delete_follow_the_state_rules() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s.enqueue(json!({"kind": "a"})).await;
    let a_id = a["id"].as_str().unwrap();
    let c = s.post(&format!("/v1/jobs/{a_id}/cancel"), json!({})).await;
    assert_eq!(
        (c.status, c.body["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    assert_problem(
        &s.post(&format!("/v1/jobs/{a_id}/cancel"), json!({})).await,
        409,
        None,
    );
    let r = s.post(&format!("/v1/jobs/{a_id}/retry"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.body["state"].as_str(), r.body["attempt"].as_u64()),
        (Some("available"), Some(0))
    );

    let leased = s.lease("default", 1).await.remove(0);
    let c = s.post(&format!("/v1/jobs/{a_id}/cancel"), json!({})).await;
    assert_eq!(c.body["state"], "running");
    assert_eq!(c.body["cancel_requested"], true);
    assert_problem(
        &s.post(&format!("/v1/jobs/{a_id}/retry"), json!({})).await,
        409,
        None,
    );
    assert_problem(
        &s.call(Method::DELETE, &format!("/v1/jobs/{a_id}"), None)
            .await,
        409,
        None,
    );
    let item = s.ack(&leased, json!({"outcome": "completed"})).await;
    assert_eq!(item["state"], "cancelled");

    let del = s
        .call(Method::DELETE, &format!("/v1/jobs/{a_id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_problem(&s.get(&format!("/v1/jobs/{a_id}")).await, 404, None);

    let later = s.enqueue(json!({"kind": "later", "delay": "1h"})).await;
    let r = s
        .post(
            &format!("/v1/jobs/{}/retry", later["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(r.body["state"], "available", "a scheduled job runs now");
    s.stop().await;
}

#[tokio::test]
async fn a_producers_trace_context_goes_with_its_jobs_to_the_worker() {
    let Some(s) = crate::support::TestServer::start().await else {
        return;
    };
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let post = |body: serde_json::Value, path: &str, traceparent: Option<&str>| {
        let mut req = s.client.post(format!("{}{}", s.base, path)).json(&body);
        if let Some(t) = traceparent {
            req = req
                .header("traceparent", t)
                .header("tracestate", "vendor=x1");
        }
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let traced: serde_json::Value = post(
        serde_json::json!({"queue": "t", "kind": "k"}),
        "/v1/jobs",
        Some(parent),
    )
    .await;
    let want = serde_json::json!({"traceparent": parent, "tracestate": "vendor=x1"});
    assert_eq!(traced["trace"], want);
    let batch: serde_json::Value = post(
        serde_json::json!({"jobs": [{"queue": "b", "kind": "k"}, {"queue": "b", "kind": "k"}]}),
        "/v1/jobs/batch",
        Some(parent),
    )
    .await;
    assert!(
        batch["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["trace"] == want)
    );
    let malformed: serde_json::Value = post(
        serde_json::json!({"queue": "t", "kind": "k"}),
        "/v1/jobs",
        Some("00-nope-01"),
    )
    .await;
    assert_eq!(
        malformed["trace"],
        serde_json::Value::Null,
        "a malformed traceparent is ignored"
    );
    let plain = s
        .enqueue(serde_json::json!({"queue": "t", "kind": "k"}))
        .await;
    assert_eq!(plain["trace"], serde_json::Value::Null);
    let leased = s.lease("t", 3).await;
    let traced_lease = leased.iter().find(|j| j["id"] == traced["id"]).unwrap();
    assert_eq!(
        traced_lease["trace"], want,
        "the worker gets it with the lease"
    );
    let got = s
        .get(&format!("/v1/jobs/{}", traced["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.body["trace"], want, "and it is kept");
    s.stop().await;
}
