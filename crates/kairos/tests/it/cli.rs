//! `kairos job …` and `kairos queue …` end to end against a real server: JSON and table
//! output, exit codes (0, 1 refused with the field named, 2 refused before sending,
//! 3 unreachable), and global flags before or after the subcommand.

use crate::support::Kairos;
use serde_json::Value;
use std::process::{Command, Output};

/// Runs `kairos ARGS` against `server` (stdout is a pipe: JSON unless told otherwise).
fn kairos(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(args)
        .env("KAIROS_SERVER", server)
        .env_remove("KAIROS_TOKEN")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn jobs_from_enqueue_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    let job = json(&kairos(
        s,
        &[
            "job",
            "enqueue",
            "--kind",
            "send",
            "--queue",
            "mail",
            "--payload",
            r#"{"to":"a@b"}"#,
            "--priority",
            "-5",
            "--tag",
            "x",
        ],
    ));
    assert_eq!(
        (&job["queue"], &job["priority"], &job["tags"]),
        (&"mail".into(), &(-5).into(), &serde_json::json!(["x"]))
    );
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        json(&kairos(s, &["job", "get", &id]))["payload"]["to"],
        "a@b"
    );
    // The global flags, after or before the subcommand.
    let page = json(&kairos(
        s,
        &["job", "list", "--queue", "mail", "--output", "json"],
    ));
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    let table = kairos(s, &["job", "--output", "table", "list"]);
    assert!(table.status.success());
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE"),
        "{table}"
    );
    assert!(
        lines[1].contains(&id[id.len() - 12..]) && lines[1].contains("available"),
        "{table}"
    );
    assert!(
        lines.iter().all(|l| l.chars().count() <= 80),
        "80 columns: {table}"
    );
    let full = text(&kairos(s, &["job", "list", "--output", "table", "--full-ids"]).stdout);
    assert!(full.contains(&id), "{full}");
    assert_eq!(
        json(&kairos(s, &["job", "cancel", &id]))["state"],
        "cancelled"
    );
    assert_eq!(
        json(&kairos(s, &["job", "retry", &id]))["state"],
        "available"
    );
    assert_eq!(
        json(&kairos(s, &["job", "delete", &id]))["deleted"],
        id.as_str()
    );
    // Gone: the server says no (1) and the problem is printed.
    let gone = kairos(s, &["job", "get", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("404"), "{}", text(&gone.stderr));
}

#[test]
fn exit_codes_say_who_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    // The server refuses, naming the field.
    let bad = kairos(s, &["job", "enqueue", "--kind", "bad name"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(err.contains("422") && err.contains("kind:"), "{err}");
    // Refused before sending: bad JSON, a bad flag value, an unknown flag.
    for args in [
        &["job", "enqueue", "--kind", "k", "--payload", "{x"][..],
        &["job", "get", "not-a-uuid"][..],
        &["queue", "limit", "q", "--concurrency", "many"][..],
        &["job", "list", "--nope"][..],
    ] {
        let out = kairos(s, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        json(&kairos(s, &["job", "list"]))["jobs"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was sent"
    );
    // Nobody listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = kairos(&closed, &["queue", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach"));
}

#[test]
fn queues_are_listed_paused_limited_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    json(&kairos(
        s,
        &["job", "enqueue", "--kind", "k", "--queue", "mail"],
    ));
    let list = json(&kairos(s, &["queue", "list"]));
    assert_eq!(list["queues"][0]["counts"]["available"], 1);
    assert_eq!(
        json(&kairos(s, &["queue", "pause", "mail"]))["paused"],
        true
    );
    assert_eq!(
        json(&kairos(s, &["queue", "resume", "mail"]))["paused"],
        false
    );
    let limited = json(&kairos(
        s,
        &[
            "queue",
            "limit",
            "mail",
            "--concurrency",
            "2",
            "--rate",
            "10/s",
            "--max-depth",
            "100",
        ],
    ));
    assert_eq!(
        (
            &limited["concurrency"],
            &limited["rate"],
            &limited["max_depth"]
        ),
        (&2.into(), &"10/s".into(), &100.into())
    );
    let removed = json(&kairos(s, &["queue", "limit", "mail", "--rate", "none"]));
    assert_eq!(
        (&removed["rate"], &removed["concurrency"]),
        (&Value::Null, &2.into())
    );
    let shown = kairos(s, &["queue", "get", "mail", "--output", "table"]);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("concurrency  2") && shown.contains("rate         none"),
        "{shown}"
    );
    assert_eq!(
        json(&kairos(s, &["queue", "retry-dead", "mail"]))["retried"],
        0
    );
    let table = text(&kairos(s, &["queue", "list", "--output", "table"]).stdout);
    assert!(table.lines().nth(1).unwrap().starts_with("mail"), "{table}");
}
