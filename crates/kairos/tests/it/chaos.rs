//! Workers and servers killed under each other: a `kairos worker` killed mid-job, a
//! server stopped while its worker finishes jobs (results wait in the worker's buffer),
//! and a worker killed while its results wait. Nothing is lost, nothing applied twice.

use crate::support::Kairos;
use crate::worker::{WorkerProcess, worker};
use kairos_client::Client;
use kairos_client::buffer::Buffer;
use kairos_core::api::EnqueueRequest;
use kairos_core::{Job, JobState};
use std::path::Path;
use std::time::Duration;

/// The jobs' script: `gated` says it started, waits for `$OUT/gate`, notes its run and
/// answers; `doomed` runs forever on its first attempt (its worker is killed under it)
/// and completes on the next.
const SCRIPT: &str = r#"
cat > /dev/null
case "$KAIROS_JOB_KIND" in
  gated)
    : > "$OUT/started-$KAIROS_JOB_ID"
    while [ ! -e "$OUT/gate" ]; do sleep 0.02; done
    echo "$KAIROS_JOB_ID" >> "$OUT/ran"
    printf '{"attempt":%s}\n' "$KAIROS_JOB_ATTEMPT" ;;
  doomed)
    if [ "$KAIROS_JOB_ATTEMPT" = 1 ]; then
      echo $$ > "$OUT/doomed.pid"
      exec sleep 600
    fi
    echo '{"survived":true}' ;;
esac
"#;

/// A directory with the script; `kairos worker` keeps its buffer in it too.
fn workspace() -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let script = out.path().join("job.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let exec = format!("sh {}", script.display());
    (out, exec)
}

fn job(kind: &str) -> EnqueueRequest {
    EnqueueRequest {
        queue: Some("chaos".into()),
        kind: kind.into(),
        max_attempts: Some(3),
        backoff: Some(serde_json::from_str(r#"{"type":"fixed","base":"0s"}"#).unwrap()),
        ..Default::default()
    }
}

/// Waits up to 60 s for `done`, looking every 20 ms.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what} in time"));
}

fn kill9(mut w: WorkerProcess) {
    w.0.kill().unwrap();
    w.0.wait().unwrap();
}

/// Entries waiting in the buffer of `kairos worker` runs in `out`.
fn buffered(out: &Path) -> u64 {
    Buffer::open(out.join("buffer")).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_it_to_another_after_its_lease() {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let c = Client::new(&server.base).unwrap();
    let (out, exec) = workspace();
    let job = c.enqueue(&job("doomed")).await.unwrap();
    let args = ["--queue", "chaos", "--lease", "1s", "--exec", &exec];
    let first = worker(&server.base, &args, out.path());
    let pid_file = out.path().join("doomed.pid");
    eventually("the first attempt started", async || pid_file.exists()).await;
    kill9(first);
    // Its command outlives it (it is in a group of its own); stop it, as an operator would.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();

    let _second = worker(&server.base, &args, out.path());
    let mut done = None;
    eventually("the job completed on the second worker", async || {
        let j = c.job(job.id).await.unwrap();
        let finished = j.state.is_finished();
        done = Some(j);
        finished
    })
    .await;
    let done = done.unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result.unwrap().get(), r#"{"survived":true}"#);
    assert_eq!(done.errors.len(), 1, "the first attempt's lease ran out");
}

/// A server and a worker running `n` gated jobs, all started; then the server is killed
/// and the gate opened: every result waits in the worker's buffer. Answers what must
/// live on, and the jobs.
async fn results_wait_for_a_killed_server(
    n: usize,
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    String,
    WorkerProcess,
    Vec<Job>,
) {
    let data = tempfile::tempdir().unwrap();
    let server = Kairos::start(data.path());
    let addr = server.addr().to_string();
    let c = Client::new(&server.base).unwrap();
    let (out, exec) = workspace();
    let mut jobs = Vec::new();
    for _ in 0..n {
        jobs.push(c.enqueue(&job("gated")).await.unwrap());
    }
    let concurrency = n.to_string();
    let w = worker(
        &server.base,
        &[
            "--queue",
            "chaos",
            "--concurrency",
            &concurrency,
            "--lease",
            "10m",
            "--exec",
            &exec,
        ],
        out.path(),
    );
    eventually("every job started", async || {
        jobs.iter()
            .all(|j| out.path().join(format!("started-{}", j.id)).exists())
    })
    .await;
    server.kill9();
    std::fs::write(out.path().join("gate"), "").unwrap();
    eventually("every result is buffered", async || {
        buffered(out.path()) == n as u64
    })
    .await;
    (data, out, addr, w, jobs)
}

/// Restarts the server on its address and store; checks that every job completed once.
async fn every_result_arrives_once(data: &Path, out: &Path, addr: &str, jobs: &[Job]) {
    let server = Kairos::start_at(data, addr);
    let c = Client::new(&server.base).unwrap();
    for j in jobs {
        let mut seen = None;
        eventually("the buffered result arrived", async || {
            let got = c.job(j.id).await.unwrap();
            let finished = got.state.is_finished();
            seen = Some(got);
            finished
        })
        .await;
        let done = seen.unwrap();
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.attempt, 1, "it ran once");
        assert_eq!(done.result.unwrap().get(), r#"{"attempt":1}"#);
    }
    eventually("the buffer is drained", async || buffered(out) == 0).await;
    let ran = std::fs::read_to_string(out.join("ran")).unwrap();
    let mut ran: Vec<&str> = ran.lines().collect();
    ran.sort();
    let mut want: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    want.sort();
    assert_eq!(ran, want, "each job's command ran exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_finished_while_the_server_is_down_are_delivered_when_it_is_back() {
    let (data, out, addr, _worker, jobs) = results_wait_for_a_killed_server(5).await;
    every_result_arrives_once(data.path(), out.path(), &addr, &jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_its_results_wait_sends_them_after_its_restart() {
    let (data, out, addr, worker_process, jobs) = results_wait_for_a_killed_server(5).await;
    kill9(worker_process);
    // A new worker (another pid, so another name) on the same buffer, queue empty.
    let exec = format!("sh {}", out.path().join("job.sh").display());
    let _restarted = worker(
        &format!("http://{addr}"),
        &["--queue", "chaos", "--exec", &exec],
        out.path(),
    );
    every_result_arrives_once(data.path(), out.path(), &addr, &jobs).await;
}
