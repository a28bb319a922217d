//! The dashboard over HTTP: its pages and their headers, CSRF on every action, sessions
//! (login, the cookie's attributes, logout), roles and queue-limited tokens. The same
//! pages in a real browser: `crates/kairos/tests/it/dashboard.rs`.

use crate::support::TestServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kairos_server::http::layers::auth::{AuthConfig, Claims, TokenKey};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn token(role: &str, queues: Option<&[&str]>, ttl: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        sub: format!("{role}-subject"),
        role: role.into(),
        queues: queues.map(|q| q.iter().map(|s| s.to_string()).collect()),
        exp: now + ttl,
        nbf: None,
        iat: None,
        iss: None,
        aud: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn secured() -> Option<TestServer> {
    TestServer::start_with(|c| {
        c.auth = Some(AuthConfig {
            key: TokenKey::Secret(SECRET.as_bytes().to_vec()),
            issuer: None,
            audience: None,
            metrics_public: false,
        })
    })
    .await
}

/// An API call with `token`: its status and JSON answer.
async fn api(
    s: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

/// A browser-like client: it does not follow redirects, so each answer is seen.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf_token" value=""#)
            .unwrap_or_else(|| panic!("no CSRF token in {}", self.body));
        let rest = &self.body[at + r#"name="csrf_token" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    fn problem(&self) -> Value {
        assert_eq!(self.header("content-type"), "application/problem+json");
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Page {
    let resp = req.send().await.unwrap();
    Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

fn with_cookie(req: reqwest::RequestBuilder, session: Option<&str>) -> reqwest::RequestBuilder {
    match session {
        Some(s) => req.header("cookie", format!("kairos_session={s}")),
        None => req,
    }
}

async fn get(s: &TestServer, path: &str, session: Option<&str>) -> Page {
    send(with_cookie(
        browser().get(format!("{}{path}", s.base)),
        session,
    ))
    .await
}

async fn post(s: &TestServer, path: &str, session: Option<&str>, form: &[(&str, &str)]) -> Page {
    let req = browser()
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    send(with_cookie(req, session)).await
}

#[tokio::test]
async fn every_page_is_html_with_its_guard_headers() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s.enqueue(json!({"queue": "mail", "kind": "email"})).await;
    let schedule = s
        .post(
            "/v1/schedules",
            json!({"name": "nightly", "cron": "0 0 3 * * *", "job": {"kind": "report"}}),
        )
        .await;
    let pages = [
        "/ui".to_string(),
        "/ui/queues".into(),
        "/ui/queues/mail".into(),
        "/ui/jobs".into(),
        "/ui/jobs?queue=mail&state=available".into(),
        format!("/ui/jobs/{}", job["id"].as_str().unwrap()),
        "/ui/dead".into(),
        "/ui/schedules".into(),
        format!("/ui/schedules/{}", schedule.body["id"].as_str().unwrap()),
        "/ui/workers".into(),
    ];
    for path in &pages {
        let p = get(&s, path, None).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert_eq!(
            p.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(p.header("cache-control"), "no-store", "{path}");
        assert!(
            p.header("content-security-policy")
                .contains("default-src 'self'"),
            "{path}"
        );
        assert_eq!(p.header("x-frame-options"), "DENY", "{path}");
        assert!(p.body.contains("/ui/assets/kairos.js"), "{path}");
    }
    // The job waiting longest is named, on the overview and its queue's page.
    assert!(
        get(&s, "/ui", None)
            .await
            .body
            .contains("Oldest waiting job (<a")
    );
    assert!(
        get(&s, "/ui/queues/mail", None)
            .await
            .body
            .contains("available since")
    );
    // `/` leads to the dashboard; the icon a browser asks for by itself is there.
    let root = get(&s, "/", None).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.header("location"), "/ui");
    let icon = get(&s, "/favicon.ico", None).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header("content-type"), "image/svg+xml");
    assert_eq!(
        get(&s, "/ui/assets/missing.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    // Search finds a job by a part of its unique key.
    let keyed = s
        .enqueue(json!({"queue": "mail", "kind": "receipt", "unique_key": "order-7731"}))
        .await;
    let found = get(&s, "/ui/jobs?q=der-77", None).await;
    assert!(
        found.body.contains(keyed["id"].as_str().unwrap()),
        "{}",
        found.body
    );
    assert!(!found.body.contains(job["id"].as_str().unwrap()));
    // A bad filter is the API's problem, shown on the page.
    let bad = get(&s, "/ui/jobs?state=sleeping", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("state"), "{}", bad.body);
    let missing = get(&s, "/ui/jobs/0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("not-found"), "{}", missing.body);
}

#[tokio::test]
async fn a_job_page_escapes_what_producers_wrote() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let job = s
        .enqueue(json!({"kind": "email", "payload": {"html": "<script>alert(1)</script>"}, "tags": ["<b>x</b>"]}))
        .await;
    let p = get(
        &s,
        &format!("/ui/jobs/{}", job["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert!(!p.body.contains("<script>alert"), "{}", p.body);
    assert!(!p.body.contains("<b>x</b>"));
    assert!(p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn an_action_needs_this_sessions_csrf_token() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    s.enqueue(json!({"queue": "mail", "kind": "email"})).await;
    let csrf = get(&s, "/ui/queues/mail", None).await.csrf();
    // None, or a made-up one: 403, and nothing changes.
    let none = post(&s, "/ui/queues/mail/pause", None, &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    assert!(
        none.problem()["detail"]
            .as_str()
            .unwrap()
            .contains("csrf_token")
    );
    let forged = post(
        &s,
        "/ui/queues/mail/pause",
        None,
        &[("csrf_token", &"0".repeat(64))],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/v1/queues/mail").await.body["paused"], false);
    // A browser's own form post gets the refusal as a page.
    let page = send(
        browser()
            .post(format!("{}/ui/queues/mail/pause", s.base))
            .header("accept", "text/html,application/xhtml+xml")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("csrf_token=nope"),
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains("CSRF token"), "{}", page.body);
    // The page's own token works, as a form field or a header, and leasing stops.
    let done = post(&s, "/ui/queues/mail/pause", None, &[("csrf_token", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.header("location"), "/ui/queues/mail");
    assert_eq!(s.get("/v1/queues/mail").await.body["paused"], true);
    assert!(s.lease("mail", 1).await.is_empty());
    let resumed = send(
        browser()
            .post(format!("{}/ui/queues/mail/resume", s.base))
            .header("x-csrf-token", &csrf),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert_eq!(s.lease("mail", 1).await.len(), 1);
    // A form too large is refused before it is read whole.
    let huge = "x".repeat(100 * 1024);
    let big = post(
        &s,
        "/ui/jobs/bulk",
        None,
        &[("csrf_token", &csrf), ("id", &huge)],
    )
    .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn login_keeps_the_token_in_a_strict_cookie_until_it_expires() {
    let Some(s) = secured().await else {
        return;
    };
    // Without a session a page leads to the login, which remembers where to return.
    let away = get(&s, "/ui/queues?x=1", None).await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(
        away.header("location"),
        "/ui/login?next=%2Fui%2Fqueues%3Fx%3D1"
    );
    let login = get(&s, "/ui/login?next=/ui/queues", None).await;
    assert_eq!(login.status, StatusCode::OK);
    let csrf = login.csrf();
    // A bad token is refused with the API's reason; so is a post without the CSRF token.
    let bad = post(
        &s,
        "/ui/login",
        None,
        &[("csrf_token", &csrf), ("token", "nope")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.problem()["type"], "urn:kairos:problem:unauthorized");
    let admin = token("admin", None, 600);
    let no_csrf = post(&s, "/ui/login", None, &[("token", &admin)]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // A good one: the session cookie, back to where the login started.
    let form = [
        ("csrf_token", csrf.as_str()),
        ("token", &admin),
        ("next", "/ui/queues"),
    ];
    let ok = post(&s, "/ui/login", None, &form).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.header("location"), "/ui/queues");
    let cookie = ok.header("set-cookie");
    assert!(
        cookie.starts_with(&format!("kairos_session={admin};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&max_age), "{cookie}");
    // Another site cannot be the destination.
    let away = [
        ("csrf_token", csrf.as_str()),
        ("token", &admin),
        ("next", "//evil.example/"),
    ];
    assert_eq!(
        post(&s, "/ui/login", None, &away).await.header("location"),
        "/ui"
    );
    // Behind a TLS proxy the cookie is Secure.
    let tls = send(
        browser()
            .post(format!("{}/ui/login", s.base))
            .header("x-forwarded-proto", "https")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap()),
    )
    .await;
    assert!(
        tls.header("set-cookie").contains("; Secure"),
        "{}",
        tls.header("set-cookie")
    );
    // Signed in: pages, and Log out, which clears the cookie.
    let overview = get(&s, "/ui", Some(&admin)).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Log out"));
    let out = post(
        &s,
        "/ui/logout",
        Some(&admin),
        &[("csrf_token", &overview.csrf())],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    // A session whose token no longer verifies can still log out (with its CSRF token).
    let broken = admin.replace('.', ".y");
    let csrf_of_broken = get(&s, "/ui/login", Some(&broken)).await.csrf();
    let cleared = post(
        &s,
        "/ui/logout",
        Some(&broken),
        &[("csrf_token", &csrf_of_broken)],
    )
    .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    assert!(cleared.header("set-cookie").contains("Max-Age=0"));
    let no_csrf = post(&s, "/ui/logout", Some(&broken), &[]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // A session whose token does not verify is none.
    let tampered = admin.replace('.', ".x");
    assert_eq!(
        get(&s, "/ui", Some(&tampered)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_reader_sees_every_page_without_buttons_and_forging_is_refused() {
    let Some(s) = secured().await else {
        return;
    };
    let admin = token("admin", None, 600);
    let reader = token("reader", None, 600);
    let (_, job) = api(
        &s,
        &admin,
        reqwest::Method::POST,
        "/v1/jobs",
        Some(json!({"queue": "mail", "kind": "email"})),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    for path in ["/ui/queues/mail", &format!("/ui/jobs/{id}"), "/ui/jobs"] {
        let p = get(&s, path, Some(&reader)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        for button in [">Pause<", ">Cancel<", ">Delete<", ">Retry<"] {
            assert!(!p.body.contains(button), "{button} on {path} for a reader");
        }
        let a = get(&s, path, Some(&admin)).await;
        assert!(
            a.body.contains(">Cancel<") || a.body.contains(">Pause<"),
            "{path} for an admin"
        );
    }
    // The reader's own CSRF token passes the CSRF check; the role still says no.
    let csrf = get(&s, "/ui/queues/mail", Some(&reader)).await.csrf();
    let forged = post(
        &s,
        &format!("/ui/jobs/{id}/cancel"),
        Some(&reader),
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        forged.problem()["detail"]
            .as_str()
            .unwrap()
            .contains("reader")
    );
    // An admin's token used with the reader's cookie is another session's: refused.
    let admins = get(&s, "/ui/queues/mail", Some(&admin)).await.csrf();
    assert_ne!(admins, csrf);
    let swapped = post(
        &s,
        "/ui/queues/mail/pause",
        Some(&reader),
        &[("csrf_token", &admins)],
    )
    .await;
    assert_eq!(swapped.status, StatusCode::FORBIDDEN);
    let (_, job_now) = api(
        &s,
        &admin,
        reqwest::Method::GET,
        &format!("/v1/jobs/{id}"),
        None,
    )
    .await;
    assert_eq!(
        job_now["state"], "available",
        "nothing the reader sent changed it"
    );
    // A producer may cancel it from the dashboard; queue settings stay admin-only.
    let producer = token("producer", None, 600);
    let pc = get(&s, "/ui/queues/mail", Some(&producer)).await;
    assert!(!pc.body.contains(">Pause<"));
    let done = post(
        &s,
        &format!("/ui/jobs/{id}/cancel"),
        Some(&producer),
        &[("csrf_token", &pc.csrf())],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let refused = post(
        &s,
        "/ui/queues/mail/pause",
        Some(&producer),
        &[("csrf_token", &pc.csrf())],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_queue_limited_session_sees_only_its_queues() {
    let Some(s) = secured().await else {
        return;
    };
    let admin = token("admin", None, 600);
    let limited = token("producer", Some(&["billing"]), 600);
    let mut ids = Vec::new();
    for (queue, worker) in [("mail", "mailer"), ("billing", "biller")] {
        let (_, job) = api(
            &s,
            &admin,
            reqwest::Method::POST,
            "/v1/jobs",
            Some(json!({"queue": queue, "kind": "k"})),
        )
        .await;
        ids.push(job["id"].as_str().unwrap().to_string());
        let lease = json!({"worker": worker, "queues": [queue], "max": 1});
        let (status, _) = api(&s, &admin, reqwest::Method::POST, "/v1/lease", Some(lease)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let s2 = &s;
    let body = |path: &'static str| {
        let limited = limited.clone();
        async move { get(s2, path, Some(&limited)).await }
    };
    let queues = body("/ui/queues").await;
    assert!(queues.body.contains(r#"data-queue="billing""#));
    assert!(!queues.body.contains(r#"data-queue="mail""#));
    let overview = body("/ui").await;
    assert!(!overview.body.contains(r#"data-queue="mail""#));
    let workers = body("/ui/workers").await;
    assert!(workers.body.contains("biller") && !workers.body.contains("mailer"));
    // Another queue's job reads as absent; its queue page too; acting on it as well.
    assert_eq!(
        get(&s, &format!("/ui/jobs/{}", ids[0]), Some(&limited))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s, &format!("/ui/jobs/{}", ids[1]), Some(&limited))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(body("/ui/queues/mail").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&s, "/ui/jobs?queue=mail", Some(&limited)).await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = queues.csrf();
    let other = post(
        &s,
        &format!("/ui/jobs/{}/cancel", ids[0]),
        Some(&limited),
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let bulk = post(
        &s,
        "/ui/jobs/bulk",
        Some(&limited),
        &[
            ("csrf_token", &csrf),
            ("action", "cancel"),
            ("id", &ids[1]),
            ("id", &ids[0]),
        ],
    )
    .await;
    assert_eq!(bulk.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bulk.problem()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 2 done")
    );
}

#[tokio::test]
async fn the_dashboard_shares_the_apis_rate_limit() {
    use kairos_server::http::layers::limit::RateLimitConfig;
    let Some(s) = TestServer::start_with(|c| {
        c.rate_limit = Some(RateLimitConfig {
            rate: "1/h".parse().unwrap(),
            burst: Some(2),
            trusted_proxies: vec![],
        })
    })
    .await
    else {
        return;
    };
    assert_eq!(get(&s, "/ui", None).await.status, StatusCode::OK);
    assert_eq!(s.get("/v1/queues").await.status, StatusCode::OK);
    // The burst is spent, by a page and an API call alike.
    let limited = get(&s, "/ui/queues", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(
        get(&s, "/ui/login", None).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the login page too: guessing tokens is limited"
    );
}

#[tokio::test]
async fn lists_a_page_shows_whole_are_cut_and_say_so() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    for chunk in [0..1000, 1000..1001] {
        let jobs: Vec<Value> = chunk
            .map(|i| json!({"queue": format!("q{i:04}"), "kind": "k"}))
            .collect();
        assert_eq!(
            s.post("/v1/jobs/batch", json!({"jobs": jobs})).await.status,
            StatusCode::CREATED
        );
    }
    for path in ["/ui/queues", "/ui"] {
        let p = get(&s, path, None).await;
        assert_eq!(p.body.matches("<tr data-queue=").count(), 1000, "{path}");
        assert!(p.body.contains("Showing the first 1000 of 1001."), "{path}");
    }
    // A queue past the menu's end stays chosen.
    let p = get(&s, "/ui/jobs?queue=q1000", None).await;
    assert!(
        p.body.contains(r#"<option value="q1000" selected>"#),
        "{}",
        p.body
    );
}
