//! `kairos worker --exec CMD`: each leased job runs the command once.
//!
//! - stdin: the leased job as `POST /v1/lease` answers it (payload included), written
//!   while stdout and stderr are read, so a 1 MiB payload never deadlocks on a pipe;
//! - environment: `KAIROS_JOB_ID`, `KAIROS_JOB_KIND`, `KAIROS_JOB_QUEUE`,
//!   `KAIROS_JOB_ATTEMPT`, `KAIROS_JOB_MAX_ATTEMPTS`, and `TRACEPARENT`/`TRACESTATE`
//!   when the producer sent a trace context;
//! - exit 0 completes the job (stdout, if JSON, is the result, else kept as a string;
//!   over 64 KiB fails the attempt instead); exit 65 (`EX_DATAERR`) fails it for good;
//!   any other exit fails the attempt (the last 4 KiB of stderr as its error), retried
//!   by the job's backoff;
//! - the job's `timeout` bounds the run: then the command's process group gets SIGTERM,
//!   and SIGKILL 5 s later. A job cancelled through the API, or still running at the end
//!   of the shutdown grace, is stopped the same way.

use anyhow::Context;
use kairos_client::worker::{JobContext, JobError, JobResult};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Most stdout a successful command may print (its result).
pub(super) const MAX_STDOUT: usize = 64 * 1024;
/// How much of the end of stderr becomes a failed attempt's error.
const STDERR_TAIL: usize = 4 * 1024;
/// From SIGTERM to SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(5);
/// The exit status that fails a job without retry (sysexits' `EX_DATAERR`).
const EX_DATAERR: i32 = 65;

/// The command, resolved once at start.
#[derive(Debug)]
pub(super) struct Command {
    program: PathBuf,
    args: Vec<String>,
}

/// Splits `line` into words and finds its program: on `PATH` unless it names a path. A
/// program that does not exist or cannot be executed is an error now, not per job.
pub(super) fn resolve(line: &str) -> anyhow::Result<Command> {
    let mut words = shlex::split(line)
        .filter(|w| !w.is_empty())
        .with_context(|| format!("--exec {line:?} does not split into words (unbalanced quotes?)"))?
        .into_iter();
    let program = words.next().context("--exec names no command")?;
    let found = if program.contains('/') {
        Some(PathBuf::from(&program)).filter(|p| executable(p))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&program))
                .find(|p| executable(p))
        })
    };
    let program = found.with_context(|| {
        format!("--exec: {program:?} is not an executable file (nor one on PATH)")
    })?;
    Ok(Command {
        program,
        args: words.collect(),
    })
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the command for one job.
pub(super) async fn execute(command: &Command, job: JobContext) -> JobResult {
    let input = serde_json::to_vec(&job.leased())
        .map_err(|e| JobError::retry(format!("the job does not serialise: {e}")))?;
    let j = &job.job;
    let mut process = tokio::process::Command::new(&command.program);
    process
        .args(&command.args)
        .env("KAIROS_JOB_ID", j.id.to_string())
        .env("KAIROS_JOB_KIND", &j.kind)
        .env("KAIROS_JOB_QUEUE", &j.queue)
        .env("KAIROS_JOB_ATTEMPT", j.attempt.to_string())
        .env("KAIROS_JOB_MAX_ATTEMPTS", j.max_attempts.to_string())
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE");
    // The producer's trace continues in the command (W3C names for environment carriers).
    if let Some(t) = job.trace() {
        process.env("TRACEPARENT", &t.traceparent);
        if let Some(state) = &t.tracestate {
            process.env("TRACESTATE", state);
        }
    }
    let mut child = process
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout stops whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            JobError::retry(format!("{} did not start: {e}", command.program.display()))
        })?;
    let group = Group(child.id().map(|pid| pid as i32));
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let feed = async move {
        // A command that exits without reading all of stdin is not an error.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let io = async {
        let (_, out, err) = tokio::join!(feed, head(stdout, MAX_STDOUT), tail(stderr, STDERR_TAIL));
        (out, err)
    };
    let run = async {
        let (status, (out, err)) = tokio::join!(child.wait(), io);
        (status, out, err)
    };
    tokio::pin!(run);
    let timeout = j.timeout.as_std();
    let stop = tokio::select! {
        done = &mut run => Ok(done),
        _ = tokio::time::sleep(timeout) => Err(format!(
            "timed out after {}: the command was stopped",
            kairos_core::Duration::from(timeout)
        )),
        _ = job.cancelled() => Err(super::STOPPED.to_string()),
    };
    let (status, (stdout, truncated), stderr) = match stop {
        Ok(done) => done,
        Err(why) => {
            group.stop(&mut run).await;
            return Err(JobError::retry(why));
        }
    };
    let status = status.map_err(|e| JobError::retry(format!("waiting for the command: {e}")))?;
    let stderr_text = String::from_utf8_lossy(&stderr).trim().to_string();
    let why = |what: String| {
        if stderr_text.is_empty() {
            what
        } else {
            stderr_text.clone()
        }
    };
    match status.code() {
        Some(0) if truncated => Err(JobError::retry(format!(
            "the command printed more than {} KiB on stdout (a result is at most that)",
            MAX_STDOUT / 1024
        ))),
        Some(0) => Ok(result_of(&stdout)),
        Some(EX_DATAERR) => Err(JobError::fatal(why(format!("exit status {EX_DATAERR}")))),
        Some(code) => Err(JobError::retry(why(format!("exit status {code}")))),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            Err(JobError::retry(why(format!("killed by signal {signal}"))))
        }
    }
}

/// A successful command's result: its stdout as JSON, else as a JSON string; none when
/// it printed nothing.
pub(super) fn result_of(stdout: &[u8]) -> Option<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(
        serde_json::from_str(trimmed)
            .unwrap_or_else(|_| serde_json::Value::String(trimmed.to_string())),
    )
}

/// Reads all of `r`, keeping the first `limit` bytes; answers them and whether there was
/// more (read to the end all the same, so the command never blocks on a full pipe).
async fn head(mut r: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        more |= n > room;
    }
    (kept, more)
}

/// Reads all of `r`, keeping the last `limit` bytes.
async fn tail(mut r: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = std::collections::VecDeque::with_capacity(limit);
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for b in &buf[..n] {
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(*b);
        }
    }
    kept.into()
}

/// A command's process group: stopped with SIGTERM, then SIGKILL; killed outright when
/// dropped before it was reaped (the runtime stops a job's task at the end of the grace).
struct Group(Option<i32>);

impl Group {
    /// SIGTERM, then SIGKILL if `run` (the command's wait) has not ended 5 s later.
    async fn stop(&self, run: impl Future) {
        let Some(pgid) = self.0 else { return };
        signal_group(pgid, libc::SIGTERM);
        tokio::pin!(run);
        if tokio::time::timeout(KILL_AFTER, &mut run).await.is_err() {
            signal_group(pgid, libc::SIGKILL);
            // A process that left the group may still hold the pipes: not waited for.
            let _ = tokio::time::timeout(Duration::from_secs(1), run).await;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0
            && group_alive(pgid)
        {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether any process of the group is left (signal 0 checks without signalling; an
/// unreaped one counts, and killing it is harmless).
fn group_alive(pgid: i32) -> bool {
    // SAFETY: as above; signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_and_resolve_on_path() {
        let c = resolve("sh -c 'echo \"a b\"'").unwrap();
        assert!(c.program.ends_with("sh"));
        assert_eq!(c.args, vec!["-c", "echo \"a b\""]);
        let missing = resolve("no-such-command-kairos --flag")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no-such-command-kairos"), "{missing}");
        assert!(resolve("'unbalanced").is_err());
        assert!(resolve("   ").is_err());
    }

    #[test]
    fn a_result_is_json_or_else_a_string() {
        assert_eq!(
            result_of(b" {\"a\":1}\n"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(result_of(b"done\n"), Some(serde_json::json!("done")));
        assert_eq!(result_of(b"\n"), None);
    }
}
