//! Auth: every role against every route, queue-limited tokens (including reading other
//! queues' jobs by id), and the tokens that must be refused.
//! The RSA key pair in `fixtures/` exists only for these tests.

use crate::support::TestServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kairos_server::http::access::{Allowed, RULES, Role};
use kairos_server::http::layers::auth::{AuthConfig, Claims, TokenKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const PRIVATE_PEM: &str = include_str!("fixtures/rsa-test-private.pem");
const PUBLIC_PEM: &str = include_str!("fixtures/rsa-test-public.pem");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(role: &str, queues: Option<&[&str]>) -> Claims {
    Claims {
        sub: format!("{role}-subject"),
        role: role.into(),
        queues: queues.map(|q| q.iter().map(|s| s.to_string()).collect()),
        exp: now() + 600,
        nbf: None,
        iat: None,
        iss: None,
        aud: None,
    }
}

fn hs256(c: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn secured(configure: impl FnOnce(&mut AuthConfig)) -> Option<TestServer> {
    let mut auth = AuthConfig {
        key: TokenKey::Secret(SECRET.as_bytes().to_vec()),
        issuer: None,
        audience: None,
        metrics_public: false,
    };
    configure(&mut auth);
    TestServer::start_with(move |c| c.auth = Some(auth)).await
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = s.client.request(method, format!("{}{}", s.base, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    // An event stream never ends by itself: its body is not read.
    let streams = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if streams {
        Value::Null
    } else {
        resp.json().await.unwrap_or(Value::Null)
    };
    (status, headers, body)
}

#[tokio::test]
async fn every_role_against_every_route() {
    let Some(s) = secured(|_| {}).await else {
        return;
    };
    let id = uuid::Uuid::now_v7().to_string();
    for (method, template, allowed) in RULES {
        let path = template
            .replace("{id}", &id)
            .replace("{name}", "q")
            .replace("{*rest}", "index.css");
        let method: Method = method.parse().unwrap();
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let (status, headers, _) = call(&s, method.clone(), &path, None, body.clone()).await;
        if *allowed == Allowed::Open {
            assert!(status.is_success(), "{method} {path} is open: {status}");
        } else {
            assert_eq!(status, 401, "{method} {path} without a token");
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer "), "{challenge}");
        }
        for role in Role::ALL {
            let token = hs256(&claims(role.as_str(), None));
            let (status, _, answer) =
                call(&s, method.clone(), &path, Some(&token), body.clone()).await;
            let may = match allowed {
                Allowed::Open | Allowed::Metrics => true,
                Allowed::Roles(roles) => roles.contains(&role),
            };
            if may {
                assert!(
                    status != 401 && status != 403,
                    "{} may {method} {path}: {status} {answer}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    403,
                    "{} may not {method} {path}: {answer}",
                    role.as_str()
                );
                assert_eq!(answer["type"], "urn:kairos:problem:forbidden");
            }
        }
    }
    // A method without a rule is 405 with the methods that have one.
    let admin = hs256(&claims("admin", None));
    let (status, headers, _) = call(&s, Method::PUT, "/v1/jobs", Some(&admin), None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST, GET");
    s.stop().await;
}

#[tokio::test]
async fn a_token_limited_to_queues_sees_and_touches_only_those() {
    let Some(s) = secured(|_| {}).await else {
        return;
    };
    let admin = hs256(&claims("admin", None));
    let enqueue = |queue: &str| json!({"queue": queue, "kind": "k"});
    let (_, _, hr_job) = call(
        &s,
        Method::POST,
        "/v1/jobs",
        Some(&admin),
        Some(enqueue("hr")),
    )
    .await;
    let (_, _, billing_job) = call(
        &s,
        Method::POST,
        "/v1/jobs",
        Some(&admin),
        Some(enqueue("billing")),
    )
    .await;
    let hr_path = format!("/v1/jobs/{}", hr_job["id"].as_str().unwrap());
    let billing_path = format!("/v1/jobs/{}", billing_job["id"].as_str().unwrap());

    // A reader of billing: the hr job does not exist for it (never its payload).
    let reader = hs256(&claims("reader", Some(&["billing"])));
    let (status, _, body) = call(&s, Method::GET, &hr_path, Some(&reader), None).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("urn:kairos:problem:not-found"))
    );
    assert!(body.get("payload").is_none());
    let (status, _, _) = call(&s, Method::GET, &billing_path, Some(&reader), None).await;
    assert_eq!(status, 200);
    let (status, _, body) = call(&s, Method::GET, "/v1/jobs", Some(&reader), None).await;
    assert_eq!(status, 403, "a limited token names its queue: {body}");
    let (status, _, _) = call(&s, Method::GET, "/v1/jobs?queue=hr", Some(&reader), None).await;
    assert_eq!(status, 403);
    let (status, _, page) = call(
        &s,
        Method::GET,
        "/v1/jobs?queue=billing",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(
        (status, page["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (_, _, queues) = call(&s, Method::GET, "/v1/queues", Some(&reader), None).await;
    let names: Vec<&str> = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing"]);

    // A producer of email.*: its queues only, named in the answer.
    let producer = hs256(&claims("producer", Some(&["email.*"])));
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/v1/jobs",
        Some(&producer),
        Some(enqueue("email.eu")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, body) = call(
        &s,
        Method::POST,
        "/v1/jobs",
        Some(&producer),
        Some(enqueue("hr")),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["detail"].as_str().unwrap().starts_with("queue:"),
        "{body}"
    );
    let batch = json!({"jobs": [enqueue("email.us"), enqueue("hr")]});
    let (status, _, body) = call(
        &s,
        Method::POST,
        "/v1/jobs/batch",
        Some(&producer),
        Some(batch),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("jobs[1].queue"),
        "{body}"
    );
    let (status, _, _) = call(&s, Method::DELETE, &hr_path, Some(&producer), None).await;
    assert_eq!(status, 404, "another queue's job is absent, not deletable");
    let (status, _, _) = call(
        &s,
        Method::POST,
        &format!("{hr_path}/cancel"),
        Some(&producer),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Schedules belong to their runs' queue.
    let schedule = |name: &str, queue: &str| json!({"name": name, "cron": "0 0 * * *", "job": {"queue": queue, "kind": "k"}});
    let (status, _, hr_schedule) = call(
        &s,
        Method::POST,
        "/v1/schedules",
        Some(&admin),
        Some(schedule("hr-nightly", "hr")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/v1/schedules",
        Some(&producer),
        Some(schedule("x", "hr")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/v1/schedules",
        Some(&producer),
        Some(schedule("eu-nightly", "email.eu")),
    )
    .await;
    assert_eq!(status, 201);
    let hr_schedule_path = format!("/v1/schedules/{}", hr_schedule["id"].as_str().unwrap());
    for (method, path) in [
        (Method::GET, hr_schedule_path.clone()),
        (Method::DELETE, hr_schedule_path.clone()),
        (Method::POST, format!("{hr_schedule_path}/trigger")),
    ] {
        let (status, _, _) = call(&s, method.clone(), &path, Some(&producer), None).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, _, list) = call(&s, Method::GET, "/v1/schedules", Some(&producer), None).await;
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu-nightly"]);

    // A worker of billing may not lease hr.
    let worker = hs256(&claims("worker", Some(&["billing"])));
    let lease = json!({"queues": ["billing", "hr"], "worker": "w"});
    let (status, _, body) = call(&s, Method::POST, "/v1/lease", Some(&worker), Some(lease)).await;
    assert_eq!(status, 403);
    assert!(
        body["detail"].as_str().unwrap().starts_with("queues[1]"),
        "{body}"
    );
    let lease = json!({"queues": ["billing"], "worker": "w"});
    let (status, _, body) = call(&s, Method::POST, "/v1/lease", Some(&worker), Some(lease)).await;
    assert_eq!(
        (status, body["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (status, _, _) = call(&s, Method::GET, &hr_path, Some(&worker), None).await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_subject() {
    let Some(s) = secured(|_| {}).await else {
        return;
    };
    let mut ids = Vec::new();
    for subject in ["alice", "bob"] {
        let token = hs256(&Claims {
            sub: subject.into(),
            ..claims("producer", None)
        });
        let resp = s
            .client
            .post(format!("{}/v1/jobs", s.base))
            .bearer_auth(token)
            .header("idempotency-key", "same-key")
            .json(&json!({"kind": "k"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        ids.push(resp.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_ne!(ids[0], ids[1], "bob never gets alice's answer");
    s.stop().await;
}

async fn refused(s: &TestServer, token: &str, reason: &str) {
    let (status, headers, body) = call(s, Method::GET, "/v1/queues", Some(token), None).await;
    assert_eq!(status, 401, "{reason}: {body}");
    assert_eq!(body["type"], "urn:kairos:problem:unauthorized");
    assert!(
        body["detail"].as_str().unwrap().contains(reason),
        "{reason}: {body}"
    );
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"kairos\", error=\"invalid_token\""
    );
}

fn unsigned(header: Value, claims: &Claims) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(serde_json::to_string(claims).unwrap().as_bytes())
    )
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let Some(s) = secured(|a| a.audience = Some("kairos-api".into())).await else {
        return;
    };
    let good = Claims {
        aud: Some("kairos-api".into()),
        ..claims("admin", None)
    };
    let (status, _, _) = call(&s, Method::GET, "/v1/queues", Some(&hs256(&good)), None).await;
    assert_eq!(status, 200, "the good token works");

    let expired = Claims {
        exp: now() - 120,
        ..good.clone()
    };
    refused(&s, &hs256(&expired), "expired").await;
    let early = Claims {
        nbf: Some(now() + 600),
        ..good.clone()
    };
    refused(&s, &hs256(&early), "not_yet_valid").await;
    let wrong_aud = Claims {
        aud: Some("elsewhere".into()),
        ..good.clone()
    };
    refused(&s, &hs256(&wrong_aud), "audience").await;
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!"),
    )
    .unwrap();
    refused(&s, &other_key, "signature").await;
    refused(
        &s,
        &unsigned(json!({"alg": "none", "typ": "JWT"}), &good),
        "malformed",
    )
    .await;
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &good,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused(&s, &hs384, "algorithm").await;
    let mut jku = Header::new(Algorithm::HS256);
    jku.jku = Some("https://attacker.example/keys.json".into());
    let jku =
        jsonwebtoken::encode(&jku, &good, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    refused(&s, &jku, "key_reference").await;
    // `kid` is never used to find a key: a token signed with an empty key stays bad.
    let mut kid = Header::new(Algorithm::HS256);
    kid.kid = Some("../../../../dev/null".into());
    let kid = jsonwebtoken::encode(&kid, &good, &EncodingKey::from_secret(b"")).unwrap();
    refused(&s, &kid, "signature").await;
    refused(&s, "not.a.token", "malformed").await;
    refused(&s, &"x".repeat(9_000), "over").await;

    // Not in the URL, not without the Bearer scheme.
    let resp = s
        .client
        .get(format!(
            "{}/v1/queues?access_token={}",
            s.base,
            hs256(&good)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = s
        .client
        .get(format!("{}/v1/queues", s.base))
        .header("authorization", format!("Basic {}", hs256(&good)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Every denial is counted by reason.
    let admin = hs256(&good);
    let text = crate::metrics::exposition(&s, Some(&admin)).await;
    for reason in [
        "expired",
        "signature",
        "algorithm",
        "key_reference",
        "token_in_query",
    ] {
        assert!(
            text.contains(&format!("kairos_auth_denied_total{{reason=\"{reason}\"}}")),
            "{reason}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn rs256_servers_refuse_hs256_tokens_signed_with_their_public_key() {
    let Some(s) = secured(|a| a.key = TokenKey::PublicKeyPem(PUBLIC_PEM.as_bytes().to_vec())).await
    else {
        return;
    };
    let c = claims("admin", None);
    let rs = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &c,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, _, _) = call(&s, Method::GET, "/v1/queues", Some(&rs), None).await;
    assert_eq!(status, 200, "RS256 signed with the private key works");
    // The classic confusion: HS256 with the public key as the shared secret.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(PUBLIC_PEM.as_bytes()),
    )
    .unwrap();
    refused(&s, &confused, "algorithm").await;
    s.stop().await;
}

#[tokio::test]
async fn metrics_may_be_public() {
    let Some(s) = secured(|a| a.metrics_public = true).await else {
        return;
    };
    let (status, _, _) = call(&s, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&s, Method::GET, "/v1/queues", None, None).await;
    assert_eq!(status, 401);
    s.stop().await;
}

#[test]
fn short_secrets_are_refused() {
    let config = AuthConfig {
        key: TokenKey::Secret(b"too-short".to_vec()),
        issuer: None,
        audience: None,
        metrics_public: false,
    };
    let e = kairos_server::http::layers::auth::Verifier::new(&config).unwrap_err();
    assert!(e.to_string().contains("at least 32"), "{e}");
}

/// Sends `n` requests as fast as it can; answers the statuses, the `Retry-After`s of the
/// 429s, and how long it took.
async fn burst(
    s: &TestServer,
    token: Option<&str>,
    path: &str,
    n: usize,
) -> (Vec<u16>, Vec<u64>, f64) {
    let start = std::time::Instant::now();
    let (mut statuses, mut waits) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut req = s.client.get(format!("{}{}", s.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        if resp.status() == 429 {
            waits.push(
                resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["type"], "urn:kairos:problem:rate-limited");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    (statuses, waits, start.elapsed().as_secs_f64())
}

#[tokio::test]
async fn each_client_is_held_to_its_rate() {
    use kairos_server::http::layers::limit::RateLimitConfig;
    let auth = AuthConfig {
        key: TokenKey::Secret(SECRET.as_bytes().to_vec()),
        issuer: None,
        audience: None,
        metrics_public: false,
    };
    let Some(s) = TestServer::start_with(move |c| {
        c.auth = Some(auth);
        c.rate_limit = Some(RateLimitConfig {
            rate: "5/s".parse().unwrap(),
            burst: None,
            trusted_proxies: Vec::new(),
        });
    })
    .await
    else {
        return;
    };
    let alice = hs256(&Claims {
        sub: "alice".into(),
        ..claims("reader", None)
    });
    let (statuses, waits, took) = burst(&s, Some(&alice), "/v1/queues", 30).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // A burst of one second's worth (5), then 5 a second for as long as the test ran.
    let most = 5 + (took * 5.0).ceil() as usize + 1;
    assert!(
        ok >= 5 && ok <= most,
        "{ok} allowed in {took:.3} s (at most {most}): {statuses:?}"
    );
    assert_eq!(ok + waits.len(), 30, "everything else is 429: {statuses:?}");
    assert!(waits.iter().all(|w| *w >= 1), "{waits:?}");
    // Another subject has a budget of its own; probes are never limited.
    let bob = hs256(&Claims {
        sub: "bob".into(),
        ..claims("reader", None)
    });
    let (statuses, _, _) = burst(&s, Some(&bob), "/v1/queues", 3).await;
    assert_eq!(statuses, [200, 200, 200]);
    let (statuses, _, _) = burst(&s, None, "/health/live", 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    s.stop().await;
}
