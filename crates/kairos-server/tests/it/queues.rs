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
        json!({"name": "mail", "paused": false,
            "max_depth": null, "concurrency": null, "rate": null, "counts": {
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
    let unchanged = s
        .call(Method::PATCH, "/v1/queues/mail", Some(json!({})))
        .await;
    assert_eq!(
        unchanged.status,
        StatusCode::OK,
        "an empty patch changes nothing"
    );
    assert_eq!(unchanged.body["paused"], false);
    for array in [json!([true]), json!([null, null])] {
        // serde would fill the struct by position: a body is an object or refused.
        let a = s.call(Method::PATCH, "/v1/queues/mail", Some(array)).await;
        assert_problem(&a, 422, Some("body"));
    }
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

#[tokio::test]
async fn queue_limits_are_set_shown_and_removed() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let set = s
        .call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"max_depth": 1000, "concurrency": 8, "rate": "100/s"})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        (
            &set.body["max_depth"],
            &set.body["concurrency"],
            &set.body["rate"]
        ),
        (&json!(1000), &json!(8), &json!("100/s"))
    );
    assert_eq!(
        set.body["paused"], false,
        "a patch of limits leaves paused alone"
    );
    let read = s.get("/v1/queues/mail").await.body;
    assert_eq!(
        (&read["concurrency"], &read["rate"]),
        (&json!(8), &json!("100/s"))
    );
    let removed = s
        .call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"rate": null, "paused": true})),
        )
        .await
        .body;
    assert_eq!(
        (
            &removed["rate"],
            &removed["concurrency"],
            &removed["paused"]
        ),
        (&json!(null), &json!(8), &json!(true))
    );
    for (body, field) in [
        (json!({"max_depth": 0}), "max_depth"),
        (json!({"max_depth": -1}), "max_depth"),
        (json!({"concurrency": 0}), "concurrency"),
        (json!({"concurrency": "many"}), "concurrency"),
        (json!({"rate": "fast"}), "rate"),
        (json!({"rate": "0/s"}), "rate"),
        (json!({"rate": "5000000/s"}), "rate"),
    ] {
        let a = s
            .call(Method::PATCH, "/v1/queues/mail", Some(body.clone()))
            .await;
        assert_problem(&a, 422, Some(field));
    }
    assert_eq!(
        s.get("/v1/queues/mail").await.body["concurrency"],
        8,
        "refused changes change nothing"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_queue_full_with_retry_after() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let p = s
        .call(
            Method::PATCH,
            "/v1/queues/mail",
            Some(json!({"max_depth": 2})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    let full = s
        .post("/v1/jobs", json!({"queue": "mail", "kind": "k"}))
        .await;
    assert_problem(&full, 503, Some("queue"));
    assert_eq!(full.body["type"], "urn:kairos:problem:queue-full");
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    let batch = s
        .post(
            "/v1/jobs/batch",
            json!({"jobs": [{"queue": "sms", "kind": "k"}, {"queue": "mail", "kind": "k"}]}),
        )
        .await;
    assert_problem(&batch, 503, Some("queue"));
    assert_problem(&s.get("/v1/queues/sms").await, 404, None); // none of the batch stored

    let l = s.lease("mail", 1).await.remove(0);
    s.ack(&l, json!({"outcome": "completed"})).await;
    s.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    s.stop().await;
}

/// Fills `queue` with `n` jobs, then sets its limits to `limits`.
async fn limited_queue(s: &TestServer, queue: &str, n: usize, limits: serde_json::Value) {
    let jobs: Vec<_> = (0..n)
        .map(|_| json!({"queue": queue, "kind": "k"}))
        .collect();
    let a = s.post("/v1/jobs/batch", json!({"jobs": jobs})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = s
        .call(Method::PATCH, &format!("/v1/queues/{queue}"), Some(limits))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// POSTs `body` to `base` + `path` (for tasks that outlive a borrow of the server).
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> crate::support::Answer {
    let resp = client.post(format!("{base}{path}")).json(body).send().await;
    TestServer::answer(resp.unwrap()).await
}

/// What 32 workers saw: when each lease answered, and the most jobs held at once.
struct Run {
    leased_at: Vec<std::time::Instant>,
    most_at_once: usize,
}

/// 32 workers long-poll `queue` one job at a time, hold each job for `hold`, and ack it,
/// until `n` jobs are done.
async fn run_32_workers(s: &TestServer, queue: &str, n: usize, hold: std::time::Duration) -> Run {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let leased_at = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..32 {
        let (client, base, queue) = (s.client.clone(), s.base.clone(), queue.to_string());
        let (holding, most, done, leased_at) = (
            holding.clone(),
            most.clone(),
            done.clone(),
            leased_at.clone(),
        );
        workers.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            while done.load(Ordering::SeqCst) < n {
                let body = json!({"queues": [queue], "worker": worker, "max": 1, "wait": "1s"});
                let a = post(&client, &base, "/v1/lease", &body).await;
                assert_eq!(a.status, StatusCode::OK, "{}", a.body);
                let Some(job) = a.body["jobs"].as_array().unwrap().first().cloned() else {
                    continue;
                };
                leased_at.lock().unwrap().push(std::time::Instant::now());
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(hold).await; // the job's work
                holding.fetch_sub(1, Ordering::SeqCst);
                let ack = json!({"worker": worker, "results": [{"id": job["id"],
                    "lease_token": job["lease_token"], "outcome": "completed"}]});
                let a = post(&client, &base, "/v1/ack", &ack).await;
                assert_eq!(a.status, StatusCode::OK, "{}", a.body);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let mut leased_at = std::mem::take(&mut *leased_at.lock().unwrap());
    leased_at.sort();
    Run {
        leased_at,
        most_at_once: most.load(Ordering::SeqCst),
    }
}

#[tokio::test]
async fn concurrency_is_never_exceeded_by_32_workers() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let n = 120;
    limited_queue(&s, "io", n, json!({"concurrency": 4})).await;
    let run = run_32_workers(&s, "io", n, std::time::Duration::from_millis(5)).await;
    assert_eq!(run.leased_at.len(), n, "every job ran once");
    assert!(
        run.most_at_once <= 4,
        "{} jobs ran at once",
        run.most_at_once
    );
    assert!(run.most_at_once >= 1);
    let q = s.get("/v1/queues/io").await.body;
    assert_eq!(
        (&q["counts"]["completed"], &q["counts"]["running"]),
        (&json!(n), &json!(0))
    );
    s.stop().await;
}

#[tokio::test]
async fn rate_is_held_with_32_workers() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let n = 90;
    limited_queue(&s, "api", n, json!({"rate": "30/s"})).await;
    // The bucket starts (full: a burst of 30) at the first lease, after this.
    let start = std::time::Instant::now();
    let run = run_32_workers(&s, "api", n, std::time::Duration::ZERO).await;
    assert_eq!(run.leased_at.len(), n);
    // By any time t into the run, at most the burst plus 30 a second were leased (a few
    // ms of slack for the store's clock against this one).
    for (i, at) in run.leased_at.iter().enumerate() {
        let elapsed = at.duration_since(start).as_secs_f64() + 0.05;
        let allowed = 30.0 + 30.0 * elapsed;
        assert!(
            (i + 1) as f64 <= allowed,
            "{} jobs leased {elapsed:.3} s in: over 30/s with a burst of 30",
            i + 1
        );
    }
    s.stop().await;
}
