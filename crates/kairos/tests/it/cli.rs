//! The client commands (`kairos job|queue|schedule|worker list|import|export`) end to
//! end against a real server: JSON and table output, exit codes (0, 1 refused with the
//! field named, 2 refused before sending, 3 unreachable), global flags before or after
//! the subcommand, an import resumed after `kill -9`, completions and `--watch`.

use crate::support::Kairos;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

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

#[test]
fn global_flags_before_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    // The environment names a closed port; the flag before the subcommand wins.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = kairos(
        &closed,
        &["--server", &k.base, "--output", "table", "queue", "list"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("QUEUE"),
        "{}",
        text(&out.stdout)
    );
    let out = kairos(&closed, &["--server", &k.base, "worker", "list"]);
    // The built-in reminder worker may or may not have leased yet; no other is there.
    let others: Vec<Value> = json(&out)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"] != "kairos-tasks-reminders")
        .cloned()
        .collect();
    assert_eq!(others, Vec::<Value>::new());
    // A client flag before a command that takes none is refused, not ignored.
    let out = kairos(&closed, &["--output", "json", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn schedules_from_create_to_delete() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    let created = json(&kairos(
        s,
        &[
            "schedule",
            "create",
            "--name",
            "weekday report",
            "--cron",
            "0 9 * * 1-5",
            "--timezone",
            "Europe/Berlin",
            "--kind",
            "report",
            "--queue",
            "reports",
            "--payload",
            r#"{"to":"ops"}"#,
            "--misfire",
            "skip",
        ],
    ));
    assert_eq!(
        (
            &created["job"]["queue"],
            &created["misfire"],
            &created["active"]
        ),
        (&"reports".into(), &"skip".into(), &true.into())
    );
    assert!(created["next_run_at"].is_string());
    let id = created["id"].as_str().unwrap().to_string();
    // By name or by id.
    assert_eq!(
        json(&kairos(s, &["schedule", "get", "weekday report"]))["id"],
        id.as_str()
    );
    assert_eq!(
        json(&kairos(s, &["schedule", "get", &id]))["name"],
        "weekday report"
    );
    // An update changes what it names and keeps the rest of the job.
    let updated = json(&kairos(
        s,
        &[
            "schedule",
            "update",
            &id,
            "--priority",
            "7",
            "--cron",
            "0 10 * * 1-5",
        ],
    ));
    assert_eq!(
        (
            &updated["cron"],
            &updated["job"]["priority"],
            &updated["job"]["kind"],
            &updated["job"]["payload"]["to"]
        ),
        (
            &"0 10 * * 1-5".into(),
            &7.into(),
            &"report".into(),
            &"ops".into()
        )
    );
    let paused = json(&kairos(s, &["schedule", "pause", "weekday report"]));
    assert_eq!(
        (&paused["active"], &paused["next_run_at"]),
        (&false.into(), &Value::Null)
    );
    assert_eq!(
        json(&kairos(s, &["schedule", "resume", "weekday report"]))["active"],
        true
    );
    let run = json(&kairos(s, &["schedule", "trigger", "weekday report"]));
    assert_eq!(
        (&run["schedule_id"], &run["queue"]),
        (&id.as_str().into(), &"reports".into())
    );
    let table = kairos(s, &["schedule", "list", "--output", "table"]);
    let table = text(&table.stdout);
    assert!(
        table.starts_with("NAME") && table.lines().nth(1).unwrap().starts_with("weekday report"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    assert_eq!(
        json(&kairos(s, &["schedule", "delete", "weekday report"]))["deleted"],
        id.as_str()
    );
    let gone = kairos(s, &["schedule", "get", "weekday report"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("no schedule"));
    // The server's refusal names the field.
    let bad = kairos(
        s,
        &[
            "schedule",
            "create",
            "--name",
            "x",
            "--cron",
            "61 * * * *",
            "--kind",
            "k",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("cron:"), "{}", text(&bad.stderr));
    // A policy the API does not know is refused before sending.
    let bad = kairos(
        s,
        &[
            "schedule",
            "create",
            "--name",
            "x",
            "--cron",
            "* * * * *",
            "--kind",
            "k",
            "--overlap",
            "never",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn preview_marks_daylight_saving_moves_and_drops() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    // Berlin springs forward at 02:00 on 2027-03-28: 02:00 shifts to the jump (03:00),
    // 02:20 and 02:40 happen nowhere.
    let args = [
        "schedule",
        "preview",
        "*/20 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--count",
        "3",
        "--after",
        "2027-03-27T12:00:00Z",
    ];
    let p = json(&kairos(s, &args));
    assert_eq!(
        p["local_times"],
        serde_json::json!([
            "2027-03-28T03:00:00+02:00",
            "2027-03-29T02:00:00+02:00",
            "2027-03-29T02:20:00+02:00"
        ])
    );
    assert_eq!(p["times"][0], "2027-03-28T01:00:00Z");
    assert_eq!(
        p["dst"],
        serde_json::json!([{"rule": "shifted", "wall_time": "2027-03-28T02:00:00"}, null, null])
    );
    assert_eq!(
        p["dropped"],
        serde_json::json!(["2027-03-28T02:20:00", "2027-03-28T02:40:00"])
    );
    let mut table_args = args.to_vec();
    table_args.extend(["--output", "table"]);
    let table = text(&kairos(s, &table_args).stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("LOCAL (Europe/Berlin)") && lines[0].contains("UTC"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("2027-03-28 03:00:00+02:00")
            && lines[1].contains("2027-03-28 01:00:00Z")
            && lines[1].contains("moved: 02:00:00 is skipped"),
        "{table}"
    );
    assert_eq!(lines.len(), 1 + 3 + 2, "{table}");
    assert!(
        lines[4].starts_with("dropped: 2027-03-28 02:20:00"),
        "{table}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");
    // The repeated hour of the fall-back, both passes.
    let p = json(&kairos(
        s,
        &[
            "schedule",
            "preview",
            "30 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--count",
            "2",
            "--dst-repeated",
            "both",
            "--after",
            "2026-10-25T00:00:00Z",
        ],
    ));
    assert_eq!(p["dst"][0]["rule"], "repeated_first");
    assert_eq!(p["dst"][1]["rule"], "repeated_second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let leased = reqwest::Client::new()
        .post(format!("{}/v1/lease", k.base))
        .json(&serde_json::json!({"queues": ["mail", "sms"], "worker": "box-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(leased.status(), 200);
    // Beside the server's built-in reminder worker.
    let list = json(&kairos(&k.base, &["worker", "list"]));
    let listed = list["workers"].as_array().unwrap();
    let box1 = listed
        .iter()
        .find(|w| w["name"] == "box-1")
        .expect("box-1 listed");
    assert_eq!(box1["state"], "online");
    let table = text(&kairos(&k.base, &["worker", "list", "--output", "table"]).stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("box-1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.starts_with("box-1") && row.contains("online") && row.contains("mail,sms"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
}

/// A file of `n` jobs for queue `bulk`, each payload `{"n": i}`.
fn jobs_file(dir: &std::path::Path, name: &str, n: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"kind\":\"load\",\"queue\":\"bulk\",\"payload\":{{\"n\":{i}}}}}\n"
        ));
        if i % 1000 == 0 {
            // Blank lines are skipped.
            text.push('\n');
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Every `n` of the exported jobs of queue `bulk`.
fn exported(server: &str) -> Vec<u64> {
    let out = kairos(server, &["export", "--queue", "bulk"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut ns: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["payload"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ns.sort_unstable();
    ns
}

#[test]
fn an_import_killed_midway_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let k = Kairos::start(data.path());
    const N: usize = 20_000;
    let file = jobs_file(dir.path(), "jobs.jsonl", N);
    let mut import = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("import")
        .arg(&file)
        .env("KAIROS_SERVER", &k.base)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed as the third batch is reported landed.
    let progress = BufReader::new(import.stderr.take().unwrap());
    let mut landed = 0;
    for line in progress.lines() {
        let line = line.unwrap();
        if line.starts_with("kairos: imported") {
            landed += 1;
            if landed == 3 {
                break;
            }
        }
    }
    import.kill().unwrap();
    import.wait().unwrap();
    let before = exported(&k.base).len();
    assert!(
        (1_500..N).contains(&before),
        "killed midway: {before} of {N} landed"
    );
    // The same command again: the batches that landed answer their first answer.
    let out = json(&kairos(&k.base, &["import", file.to_str().unwrap()]));
    assert_eq!(out["jobs"], N);
    // The key is the file's own SHA-256, as `sha256sum` would say it.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&file).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(out["sha256"], hex);
    assert_eq!(exported(&k.base), (0..N as u64).collect::<Vec<_>>());
    // Once more, complete: nothing new.
    json(&kairos(&k.base, &["import", file.to_str().unwrap()]));
    assert_eq!(exported(&k.base).len(), N);
    // Another file (the same first lines) shares no key with it.
    let other = jobs_file(dir.path(), "other.jsonl", 3);
    json(&kairos(&k.base, &["import", other.to_str().unwrap()]));
    assert_eq!(exported(&k.base).len(), N + 3);
}

#[test]
fn import_refuses_a_bad_file_before_sending_and_names_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let k = Kairos::try_start(data.path(), &["--max-payload-bytes", "1024"]).unwrap();
    let s = k.base.as_str();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"kind\":\"a\",\"queue\":\"bulk\"}\n{\"kind\":\"\"}\nnot json\n{\"kind\":\"b\",\"nope\":1}\n",
    )
    .unwrap();
    let out = kairos(s, &["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("3 mistake(s)")
            && err.contains("line 2: kind:")
            && err.contains("line 3:")
            && err.contains("line 4:")
            && !err.contains("line 1:"),
        "{err}"
    );
    assert!(exported(s).is_empty(), "nothing was sent");
    // Size limits are the server's: its refusal names the line.
    let big = dir.path().join("big.jsonl");
    let mut text_ = String::new();
    for i in 0..600 {
        let pad = if i == 549 {
            "x".repeat(2048)
        } else {
            String::new()
        };
        text_.push_str(&format!(
            "{{\"kind\":\"k\",\"queue\":\"bulk\",\"payload\":{{\"n\":{i},\"pad\":\"{pad}\"}}}}\n"
        ));
    }
    std::fs::write(&big, text_).unwrap();
    let out = kairos(s, &["import", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 550: payload"), "{err}");
    assert_eq!(exported(s).len(), 500, "the first batch landed");
    let missing = kairos(s, &["import", "/nonexistent/jobs.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn export_as_import_recreates_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    let s = k.base.as_str();
    json(&kairos(
        s,
        &[
            "job",
            "enqueue",
            "--kind",
            "k",
            "--queue",
            "from",
            "--priority",
            "3",
            "--tag",
            "t",
        ],
    ));
    let out = kairos(s, &["export", "--queue", "from", "--as-import"]);
    let line = text(&out.stdout);
    let req: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        (&req["kind"], &req["priority"], &req["tags"], req.get("id")),
        (&"k".into(), &3.into(), &serde_json::json!(["t"]), None)
    );
    let file = dir.path().join("again.jsonl");
    std::fs::write(&file, line).unwrap();
    json(&kairos(s, &["import", file.to_str().unwrap()]));
    let list = json(&kairos(s, &["job", "list", "--queue", "from"]));
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    // --limit stops early.
    let out = kairos(s, &["export", "--queue", "from", "--limit", "1"]);
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kairos("http://127.0.0.1:9", &["completions", shell]);
        let script = text(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            script.contains("schedule") && script.contains("import"),
            "{shell}: {script}"
        );
    }
    let out = kairos("http://127.0.0.1:9", &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn job_list_watch_refreshes_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kairos::start(dir.path());
    json(&kairos(&k.base, &["job", "enqueue", "--kind", "watched"]));
    let mut watch = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args([
            "job",
            "list",
            "--watch",
            "--interval",
            "20ms",
            "--output",
            "table",
        ])
        .env("KAIROS_SERVER", &k.base)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Each frame moves the cursor home, draws the page over the last one, and clears
    // what a longer page left below.
    let mut frames = Vec::new();
    for line in BufReader::new(watch.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(header) = line.strip_prefix("\x1b[H") {
            frames.push(vec![header.to_string()]);
        } else if let Some(frame) = frames.last_mut() {
            frame.push(line);
        }
        if frames.len() == 3 {
            break;
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    for frame in &frames[..2] {
        assert!(frame[0].starts_with("ID"), "{frame:?}");
        assert!(frame[1].contains("watched"), "{frame:?}");
        assert!(frame.last().unwrap().ends_with("\x1b[J"), "{frame:?}");
    }
}
