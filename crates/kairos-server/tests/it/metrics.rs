//! `GET /metrics` and request ids: the exposition parses, its numbers move with a
//! scripted run, histograms are whole, and every answer carries its request id.

use crate::support::TestServer;
use serde_json::json;
use std::collections::HashMap;

/// Samples of an exposition by `name{labels}` (labels as written, in order).
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                key.to_string(),
                value.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect()
}

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

/// Checks a histogram `name` with `labels` (`queue="m"`, or empty): cumulative buckets,
/// `+Inf` equal to the count; answers the count.
fn histogram(m: &HashMap<String, f64>, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let inner = k.strip_prefix(&prefix)?.strip_suffix('}')?;
            let (mut le, mut rest) = (None, Vec::new());
            for pair in inner.split(',') {
                match pair.strip_prefix("le=") {
                    Some(b) => le = Some(b.trim_matches('"')),
                    None => rest.push(pair),
                }
            }
            if rest.join(",") != labels {
                return None;
            }
            let bound = match le? {
                "+Inf" => f64::INFINITY,
                b => b.parse().ok()?,
            };
            Some((bound, *v))
        })
        .collect();
    assert!(!buckets.is_empty(), "{name}{{{labels}}} has buckets");
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    let suffix = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let count = sample(m, &format!("{name}_count{suffix}"));
    assert_eq!(
        buckets.last().unwrap(),
        &(f64::INFINITY, count),
        "+Inf is the count"
    );
    count
}

/// `GET /metrics` (with `token`, for a server with auth on): the exposition's text.
pub async fn exposition(s: &TestServer, token: Option<&str>) -> String {
    let mut req = s.client.get(format!("{}/metrics", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    resp.text().await.unwrap()
}

async fn metrics(s: &TestServer) -> HashMap<String, f64> {
    parse(&exposition(s, None).await)
}

#[tokio::test]
async fn metrics_move_with_the_work_and_histograms_are_whole() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let retry_now = json!({"type": "fixed", "base": "0s"});
    for kind in ["done", "again", "fatal", "lost"] {
        s.enqueue(json!({"queue": "m", "kind": kind, "max_attempts": 2, "backoff": retry_now}))
            .await;
    }
    let leased = s
        .post(
            "/v1/lease",
            json!({"queues": ["m"], "worker": "w1", "max": 4, "lease": "200ms"}),
        )
        .await
        .body["jobs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(leased.len(), 4);
    let by_kind = |k: &str| leased.iter().find(|j| j["kind"] == k).unwrap().clone();
    s.ack(&by_kind("done"), json!({"outcome": "completed"}))
        .await;
    s.ack(
        &by_kind("again"),
        json!({"outcome": "failed", "error": "x"}),
    )
    .await;
    s.ack(
        &by_kind("fatal"),
        json!({"outcome": "failed", "error": "x", "retry": false}),
    )
    .await;
    // "lost" is never reported: its lease runs out.
    let lost = by_kind("lost");
    s.wait_for_job(lost["id"].as_str().unwrap(), |j| {
        j["errors"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    s.get("/v1/jobs/00000000-0000-0000-0000-000000000000").await;

    let m = metrics(&s).await;
    let q = |name: &str| sample(&m, &format!("{name}{{queue=\"m\"}}"));
    assert_eq!(q("kairos_jobs_enqueued_total"), 4.0);
    assert_eq!(q("kairos_jobs_completed_total"), 1.0);
    assert_eq!(
        q("kairos_jobs_failed_total"),
        3.0,
        "again, fatal and the expiry"
    );
    assert_eq!(q("kairos_jobs_dead_total"), 1.0);
    assert_eq!(q("kairos_leases_expired_total"), 1.0);
    assert_eq!(histogram(&m, "kairos_job_wait_seconds", "queue=\"m\""), 4.0);
    assert_eq!(histogram(&m, "kairos_job_run_seconds", "queue=\"m\""), 4.0);
    // The kept counts: done completed, fatal dead, again and lost waiting to retry.
    assert_eq!(
        sample(&m, "kairos_jobs{queue=\"m\",state=\"completed\"}"),
        1.0
    );
    assert_eq!(sample(&m, "kairos_jobs{queue=\"m\",state=\"dead\"}"), 1.0);
    assert_eq!(
        sample(&m, "kairos_jobs{queue=\"m\",state=\"running\"}"),
        0.0
    );
    assert_eq!(sample(&m, "kairos_workers{state=\"online\"}"), 1.0);
    assert!(histogram(&m, "kairos_store_commit_seconds", "") >= 5.0);
    assert!(histogram(&m, "kairos_store_commit_batch_size", "") >= 5.0);
    assert!(m.contains_key("kairos_store_queue_depth"));
    // Routes are templates, never raw ids.
    assert_eq!(
        sample(
            &m,
            "kairos_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "kairos_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"201\"}"
        ),
        4.0
    );
    assert!(
        histogram(
            &m,
            "kairos_http_request_duration_seconds",
            "method=\"POST\",route=\"/v1/ack\""
        ) == 3.0
    );
    assert!(m.keys().all(|k| !k.contains("00000000-0000")), "no raw ids");
    s.stop().await;
}

#[tokio::test]
async fn every_answer_carries_its_request_id() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let mine = s
        .client
        .get(format!("{}/v1/jobs/not-a-uuid", s.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-request-id"], "trace-me-42");
    let body: serde_json::Value = mine.json().await.unwrap();
    assert_eq!(body["request_id"], "trace-me-42", "{body}");
    // An id that is not sane is replaced, not echoed.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "has space"] {
        let resp = s
            .client
            .get(format!("{}/health/live", s.base))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap();
        assert!(id != bad && id.len() == 32, "{id}");
    }
    let made = s
        .client
        .get(format!("{}/v1/queues", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(made.headers()["x-request-id"].len(), 32);
    s.stop().await;
}

#[tokio::test]
async fn schedule_runs_show_their_lag() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let made = s
        .post(
            "/v1/schedules",
            json!({"name": "lag", "cron": "* * * * * *", "job": {"queue": "cron", "kind": "k"}}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = metrics(&s).await;
        if m.get("kairos_schedule_lag_seconds_count")
            .is_some_and(|n| *n >= 1.0)
        {
            histogram(&m, "kairos_schedule_lag_seconds", "");
            assert!(sample(&m, "kairos_schedule_lag_seconds_sum") < 5.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no run was made");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.stop().await;
}

/// The metric names in `text`: runs of `[a-z0-9_:]` starting with `kairos_` or `kairos:`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("kairos") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        let word = &text[start..end];
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary && (word.starts_with("kairos_") || word.starts_with("kairos:")) {
            names.insert(word.to_string());
        }
        i = end.max(start + 1);
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_rules_query_only_what_the_server_exports() {
    use kairos_server::http::layers::auth::{AuthConfig, TokenKey};
    let secret = b"a-test-secret-of-at-least-32-bytes!!".to_vec();
    let Some(s) = TestServer::start_with(|c| {
        c.auth = Some(AuthConfig {
            key: TokenKey::Secret(secret),
            issuer: None,
            audience: None,
            metrics_public: true,
        })
    })
    .await
    else {
        return;
    };
    // A denied request for the denial counter; `scripted_run` touches every other family
    // (an empty family is not exported at all).
    let denied = s
        .client
        .get(format!("{}/v1/queues", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let admin = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &kairos_server::http::layers::auth::Claims {
            sub: "t".into(),
            role: "admin".into(),
            queues: None,
            exp: 4_102_444_800,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
        },
        &jsonwebtoken::EncodingKey::from_secret(b"a-test-secret-of-at-least-32-bytes!!"),
    )
    .unwrap();
    scripted_run(&s, &admin).await;
    let text = exposition(&s, None).await;
    // Every family the server exports, with the sample names its type gives it.
    let mut exported = std::collections::BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        match kind {
            "counter" => exported.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => exported.insert(name.to_string()),
        };
    }
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let rules = std::fs::read_to_string(deploy.join("prometheus/rules.yml")).unwrap();
    let recorded: std::collections::BTreeSet<String> = rules
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- record: ")
                .or(l.trim().strip_prefix("record: "))
        })
        .map(|n| n.trim().to_string())
        .collect();
    assert!(recorded.len() >= 5, "{recorded:?}");
    let alerts = rules
        .lines()
        .filter(|l| l.trim().starts_with("- alert: "))
        .count();
    assert!(alerts >= 11, "at least 11 alerts, found {alerts}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/kairos.json")).unwrap())
            .unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    for (what, text) in [
        ("rules.yml", rules.clone()),
        ("kairos.json", queries.join("\n")),
    ] {
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{what} names metrics");
        for name in names {
            if name.starts_with("kairos:") {
                assert!(
                    recorded.contains(&name),
                    "{what}: {name} is no recording rule"
                );
            } else {
                assert!(
                    exported.contains(&name),
                    "{what}: {name} is not exported: {exported:?}"
                );
            }
        }
    }
    s.stop().await;
}

/// Touches every metric family: jobs enqueued, leased, completed, failed, dead and
/// expired, a schedule's run, workers, commits and HTTP answers.
async fn scripted_run(s: &TestServer, token: &str) {
    let post = |path: &str, body: serde_json::Value| {
        s.client
            .post(format!("{}{}", s.base, path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    for kind in ["done", "fatal", "lost"] {
        let r = post("/v1/jobs", json!({"queue": "m", "kind": kind}))
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let leased: serde_json::Value = post(
        "/v1/lease",
        json!({"queues": ["m"], "worker": "w", "max": 3, "lease": "200ms"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let jobs = leased["jobs"].as_array().unwrap();
    let item = |k: &str, outcome: serde_json::Value| {
        let j = jobs.iter().find(|j| j["kind"] == k).unwrap();
        let mut o = outcome;
        o["id"] = j["id"].clone();
        o["lease_token"] = j["lease_token"].clone();
        o
    };
    let ack = json!({"worker": "w", "results": [
        item("done", json!({"outcome": "completed"})),
        item("fatal", json!({"outcome": "failed", "error": "x", "retry": false})),
    ]});
    assert_eq!(post("/v1/ack", ack).await.unwrap().status(), 200);
    let cron =
        json!({"name": "every", "cron": "* * * * * *", "job": {"queue": "cron", "kind": "k"}});
    assert_eq!(post("/v1/schedules", cron).await.unwrap().status(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = metrics(s).await;
        let expired = m
            .get("kairos_leases_expired_total{queue=\"m\"}")
            .copied()
            .unwrap_or(0.0);
        let lag = m
            .get("kairos_schedule_lag_seconds_count")
            .copied()
            .unwrap_or(0.0);
        if expired >= 1.0 && lag >= 1.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scripted run did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
