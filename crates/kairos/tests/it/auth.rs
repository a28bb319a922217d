//! Auth as operators meet it: a server off loopback without a key refuses to start, a
//! short secret is refused, and tokens minted by `kairos token create` work.

use crate::support::Kairos;
use std::process::Command;

const SECRET: &str = "an-operator-secret-of-32-bytes-or-more";

#[test]
fn off_loopback_without_a_key_the_server_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let refused = Kairos::try_start_at(data.path(), "0.0.0.0:0", &[])
        .err()
        .expect("refused");
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("--jwt-secret"),
        "{}",
        refused.stderr
    );
    let short = Kairos::try_start_at(data.path(), "127.0.0.1:0", &["--jwt-secret", "short"])
        .err()
        .expect("a short secret is refused");
    assert!(short.stderr.contains("at least 32"), "{}", short.stderr);
}

fn mint(args: &[&str]) -> String {
    crate::support::mint(SECRET, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_open_what_their_role_and_queues_allow() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::try_start_at(data.path(), "0.0.0.0:0", &["--jwt-secret", SECRET])
        .unwrap_or_else(|r| panic!("{r:?}"));
    let base = server.base.replace("0.0.0.0", "127.0.0.1");
    let http = reqwest::Client::new();
    let producer = mint(&[
        "--role",
        "producer",
        "--queues",
        "emails,sms.*",
        "--ttl",
        "1d",
    ]);
    let enqueue = |queue: &str, token: Option<&str>| {
        let mut req = http
            .post(format!("{base}/v1/jobs"))
            .json(&serde_json::json!({"queue": queue, "kind": "k"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(enqueue("emails", None).await.unwrap().status(), 401);
    assert_eq!(
        enqueue("emails", Some(&producer)).await.unwrap().status(),
        201
    );
    assert_eq!(
        enqueue("sms.eu", Some(&producer)).await.unwrap().status(),
        201
    );
    assert_eq!(
        enqueue("billing", Some(&producer)).await.unwrap().status(),
        403
    );
    let reader = mint(&["--role", "reader"]);
    assert_eq!(
        enqueue("emails", Some(&reader)).await.unwrap().status(),
        403
    );
    let health = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "probes need no token");
}

/// `kairos ARGS` against `base`, the token (if any) from the environment as a user
/// would set it.
fn client(base: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.args(args)
        .env("KAIROS_SERVER", base)
        .env_remove("KAIROS_TOKEN");
    if let Some(t) = token {
        cmd.env("KAIROS_TOKEN", t);
    }
    cmd.output().unwrap()
}

#[test]
fn the_command_line_sends_its_token() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::try_start(data.path(), &["--jwt-secret", SECRET])
        .unwrap_or_else(|r| panic!("{r:?}"));
    let base = server.base.as_str();
    let args = ["job", "enqueue", "--kind", "k", "--output", "json"];
    // No token: the server says no (exit 1) and why.
    let out = client(base, None, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // A reader may list, not enqueue; a producer may enqueue (by flag or environment).
    let reader = mint(&["--role", "reader"]);
    assert_eq!(client(base, Some(&reader), &args).status.code(), Some(1));
    assert!(
        client(base, Some(&reader), &["job", "list"])
            .status
            .success()
    );
    let producer = mint(&["--role", "producer"]);
    let mut flagged = vec!["--token", producer.as_str()];
    flagged.extend(args);
    assert!(client(base, None, &flagged).status.success());
    assert!(client(base, Some(&producer), &args).status.success());
}
