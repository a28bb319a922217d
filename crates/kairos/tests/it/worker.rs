//! `kairos worker --exec`: real worker processes running shell scripts against a real
//! server.

use crate::support::Kairos;
use kairos_client::Client;
use kairos_core::api::EnqueueRequest;
use kairos_core::{Job, JobState, RawValue};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One script for every case, chosen by the job's kind.
const SCRIPT: &str = r#"
case "$KAIROS_JOB_KIND" in
  ok)
    cat > "$OUT/stdin-$KAIROS_JOB_ID.json"
    printf '{"id":"%s","kind":"%s","queue":"%s","attempt":%s,"max_attempts":%s}\n' \
      "$KAIROS_JOB_ID" "$KAIROS_JOB_KIND" "$KAIROS_JOB_QUEUE" "$KAIROS_JOB_ATTEMPT" \
      "$KAIROS_JOB_MAX_ATTEMPTS" ;;
  text) cat > /dev/null; echo "plain words" ;;
  traced) cat > /dev/null; printf '{"traceparent":"%s","tracestate":"%s"}\n' "$TRACEPARENT" "$TRACESTATE" ;;
  fail) cat > /dev/null; echo "it broke on attempt $KAIROS_JOB_ATTEMPT" >&2; exit 3 ;;
  data) cat > /dev/null; echo "the payload is wrong" >&2; exit 65 ;;
  big) head -c 100000 /dev/zero >&2; wc -c | tr -d ' ' ;;
  huge) cat > /dev/null; head -c 70000 /dev/zero | tr '\0' a ;;
  sleepy)
    cat > /dev/null
    sh -c 'echo $$ > "$OUT/sleeper.pid"; exec sleep 600' &
    wait ;;
esac
"#;

pub struct WorkerProcess(pub Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kairos worker ARGS` for the server at `base` (named by `KAIROS_SERVER`, as a user
/// would), with `OUT` set to `out` for the scripts and its buffer in `out/buffer`.
pub fn worker(base: &str, args: &[&str], out: &std::path::Path) -> WorkerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("worker")
        .args(args)
        .env("KAIROS_SERVER", base)
        .env("KAIROS_BUFFER_DIR", out.join("buffer"))
        .env("OUT", out)
        .env("KAIROS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("kairos worker starts");
    WorkerProcess(child)
}

fn job(kind: &str, max_attempts: u32) -> EnqueueRequest {
    EnqueueRequest {
        queue: Some("exec".into()),
        kind: kind.into(),
        max_attempts: Some(max_attempts),
        backoff: Some(serde_json::from_str(r#"{"type":"fixed","base":"0s"}"#).unwrap()),
        ..Default::default()
    }
}

/// Waits (up to 30 s) for the job to finish; answers it then.
async fn finished(c: &Client, job: &Job) -> Job {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let j = c.job(job.id).await.unwrap();
            if j.state.is_finished() {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.expect("the job finished in time")
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A server, and a `kairos worker --exec` running [`SCRIPT`] for queue `exec`: a client
/// of the server, the directory the script writes to, and what must live as long.
fn exec_worker() -> (
    Client,
    tempfile::TempDir,
    (WorkerProcess, Kairos, tempfile::TempDir),
) {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let script = out.path().join("job.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let server = Kairos::start(data.path());
    let exec = format!("sh {}", script.display());
    let w = worker(
        &server.base,
        &["--queue", "exec", "--concurrency", "3", "--exec", &exec],
        out.path(),
    );
    let c = Client::new(&server.base).unwrap();
    // Dropped in this order: the worker, the server, its data.
    (c, out, (w, server, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_command_per_job_and_reads_its_exit() {
    let (c, out, _running) = exec_worker();

    let ok = c.enqueue(&job("ok", 3)).await.unwrap();
    let text = c.enqueue(&job("text", 3)).await.unwrap();
    let producer_trace = kairos_core::Trace::from_headers(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=x1"),
    )
    .unwrap();
    let traced = c
        .enqueue_traced(&job("traced", 1), None, Some(&producer_trace))
        .await
        .unwrap()
        .job;
    let fail = c.enqueue(&job("fail", 2)).await.unwrap();
    let data_err = c.enqueue(&job("data", 5)).await.unwrap();
    let huge = c.enqueue(&job("huge", 1)).await.unwrap();
    let blob = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1_000_000));
    let big = c
        .enqueue(&EnqueueRequest {
            payload: Some(RawValue::from_string(blob).unwrap()),
            ..job("big", 1)
        })
        .await
        .unwrap();

    // The producer's trace continues in the command's environment.
    let done = finished(&c, &traced).await;
    let seen: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    let traceparent = seen["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert_eq!(seen["tracestate"], "vendor=x1");

    // Exit 0: stdout's JSON is the result; the job came on stdin, its facts in the env.
    let done = finished(&c, &ok).await;
    assert_eq!(done.state, JobState::Completed);
    let result: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"id": ok.id, "kind": "ok", "queue": "exec", "attempt": 1, "max_attempts": 3})
    );
    let stdin = std::fs::read_to_string(out.path().join(format!("stdin-{}.json", ok.id))).unwrap();
    let stdin: serde_json::Value = serde_json::from_str(&stdin).unwrap();
    assert_eq!(stdin["id"], serde_json::json!(ok.id));
    assert_eq!(stdin["state"], "running");
    assert!(stdin["lease_token"].is_string() && stdin["lease_expires_at"].is_string());
    assert!(stdin.get("payload").is_some());

    // Stdout that is not JSON is kept as a string.
    let done = finished(&c, &text).await;
    assert_eq!(done.result.unwrap().get(), r#""plain words""#);

    // Any other exit fails the attempt with stderr's tail, retried by the backoff.
    let done = finished(&c, &fail).await;
    assert_eq!(done.state, JobState::Dead);
    assert_eq!(done.attempt, 2);
    assert_eq!(done.errors[0].error, "it broke on attempt 1");
    assert_eq!(done.errors[1].error, "it broke on attempt 2");

    // Exit 65 is dead at once.
    let done = finished(&c, &data_err).await;
    assert_eq!((done.state, done.attempt), (JobState::Dead, 1));
    assert_eq!(done.errors[0].error, "the payload is wrong");

    // More than 64 KiB of stdout is a failed attempt, not a result.
    let done = finished(&c, &huge).await;
    assert_eq!(done.state, JobState::Dead);
    assert!(done.errors[0].error.contains("64 KiB"), "{:?}", done.errors);

    // A 1 MB job on stdin while the command fills stderr first: no deadlock.
    let done = finished(&c, &big).await;
    assert_eq!(done.state, JobState::Completed, "{:?}", done.errors);
    let read: u64 = done.result.unwrap().get().parse().unwrap();
    assert!(
        read > 1_000_000,
        "the command read the whole job: {read} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_is_stopped_with_everything_it_started() {
    let (c, out, _running) = exec_worker();
    let sleepy = c
        .enqueue(&EnqueueRequest {
            timeout: Some("1s".parse().unwrap()),
            ..job("sleepy", 1)
        })
        .await
        .unwrap();
    let done = finished(&c, &sleepy).await;
    assert_eq!(done.state, JobState::Dead);
    assert!(
        done.errors[0].error.contains("timed out"),
        "{:?}",
        done.errors
    );
    // The grandchild (`sleep 600`) went with the command's process group.
    let pid: i32 = std::fs::read_to_string(out.path().join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "process {pid} outlived its job");
}

#[test]
fn a_command_that_cannot_run_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["worker", "--server", "http://127.0.0.1:1", "--queue", "q"])
        .args(["--exec", "no-such-command-for-kairos --flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-command-for-kairos"), "{stderr}");
    assert!(stderr.contains("not an executable"), "{stderr}");
}

/// `examples/` at the repository's root.
fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn payload(text: &str) -> Option<Box<RawValue>> {
    Some(RawValue::from_string(text.into()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_works_jobs_without_an_sdk() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let child = Command::new("python3")
        .arg(examples().join("python/worker.py"))
        .env("KAIROS_SERVER", &server.base)
        .env("KAIROS_QUEUE", "py")
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let _w = WorkerProcess(child);
    let c = Client::new(&server.base).unwrap();
    let j = c
        .enqueue(&EnqueueRequest {
            queue: Some("py".into()),
            kind: "greet".into(),
            payload: payload(r#"{"n":7}"#),
            ..Default::default()
        })
        .await
        .unwrap();
    let done = finished(&c, &j).await;
    assert_eq!(done.state, JobState::Completed, "{:?}", done.errors);
    let result: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"echo": {"n": 7}, "kind": "greet"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_example_runs_under_exec() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let exec = format!("sh {}", examples().join("shell/worker.sh").display());
    let _w = worker(
        &server.base,
        &["--queue", "sh", "--exec", &exec],
        data.path(),
    );
    let c = Client::new(&server.base).unwrap();
    let in_sh = |kind: &str, body: &str| EnqueueRequest {
        queue: Some("sh".into()),
        kind: kind.into(),
        payload: payload(body),
        max_attempts: Some(1),
        ..Default::default()
    };
    let ok = c.enqueue(&in_sh("resize", r#"{"w":10}"#)).await.unwrap();
    let bad = c
        .enqueue(&in_sh("resize", r#"{"fail":true}"#))
        .await
        .unwrap();
    let done = finished(&c, &ok).await;
    assert_eq!(done.state, JobState::Completed, "{:?}", done.errors);
    let result: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result["handled_by"], "shell");
    assert_eq!(result["kind"], "resize");
    assert_eq!(result["attempt"], 1);
    let done = finished(&c, &bad).await;
    assert_eq!(done.state, JobState::Dead);
    assert_eq!(done.errors[0].error, "asked to fail on attempt 1");
}

/// A job endpoint answering by the job's kind.
async fn endpoint() -> String {
    use axum::http::{HeaderMap, StatusCode};
    async fn job(body: axum::Json<serde_json::Value>) -> (StatusCode, HeaderMap, String) {
        let mut headers = HeaderMap::new();
        match body["kind"].as_str().unwrap_or("") {
            "ok" => (
                StatusCode::OK,
                headers,
                format!(r#"{{"got":"{}"}}"#, body["id"].as_str().unwrap()),
            ),
            "plain" => (StatusCode::OK, headers, "fine".into()),
            "busy" => {
                headers.insert("retry-after", "3600".parse().unwrap());
                (StatusCode::SERVICE_UNAVAILABLE, headers, String::new())
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, headers, "boom".into()),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/job", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/job", axum::routing::post(job));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_posts_each_job_and_reads_the_answer() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let url = endpoint().await;
    let _w = worker(
        &server.base,
        &["--queue", "exec", "--http", &url],
        data.path(),
    );
    let c = Client::new(&server.base).unwrap();
    let ok = c.enqueue(&job("ok", 3)).await.unwrap();
    let plain = c.enqueue(&job("plain", 3)).await.unwrap();
    let broken = c.enqueue(&job("broken", 1)).await.unwrap();
    let busy = c.enqueue(&job("busy", 3)).await.unwrap();

    let done = finished(&c, &ok).await;
    let result: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result, serde_json::json!({"got": ok.id}));
    assert_eq!(
        finished(&c, &plain).await.result.unwrap().get(),
        r#""fine""#
    );
    let done = finished(&c, &broken).await;
    assert_eq!(done.state, JobState::Dead);
    assert!(
        done.errors[0].error.ends_with("answered 500: boom"),
        "{:?}",
        done.errors
    );
    // 503 with Retry-After: retried an hour later, not by the backoff.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let j = c.job(busy.id).await.unwrap();
            if !j.errors.is_empty() {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the busy job was tried");
    assert_eq!(waited.state, JobState::Retryable);
    assert!(waited.run_at > waited.errors[0].at + Duration::from_secs(3500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_heard_from_are_listed_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let http = reqwest::Client::new();
    let leased = http
        .post(format!("{}/v1/lease", server.base))
        .header("x-kairos-worker-hostname", "box-1")
        .json(&serde_json::json!({"queues": ["q"], "worker": "survivor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(leased.status(), 200);
    // A clean stop saves what it heard last.
    assert!(server.signal_and_wait("TERM").success());
    let server = Kairos::start(data.path());
    let c = Client::new(&server.base).unwrap();
    let workers = c.workers().await.unwrap();
    let w = workers
        .iter()
        .find(|w| w.name == "survivor")
        .unwrap_or_else(|| panic!("{workers:?}"));
    assert_eq!(w.queues, ["q"]);
    assert_eq!(w.hostname.as_deref(), Some("box-1"));
}
