//! The worker runtime against a real server on an ephemeral port.

mod common;
use common::{job, server};

use kairos_client::Client;
use kairos_client::worker::{JobContext, JobError, SHUTDOWN_ERROR, Worker};
use kairos_core::api::EnqueueRequest;
use kairos_core::{Job, JobState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

fn with_attempts(kind: &str, max_attempts: u32) -> EnqueueRequest {
    EnqueueRequest {
        max_attempts: Some(max_attempts),
        ..job(kind)
    }
}

/// Waits for `job` to reach a state `done` accepts; answers it as it is then.
async fn until(c: &Client, id: uuid::Uuid, done: impl Fn(&Job) -> bool) -> Job {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let j = c.job(id).await.unwrap();
            if done(&j) {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.expect("the job got there in time")
}

/// A handler that says when it starts, then holds its job until the gate opens.
fn held() -> (
    impl kairos_client::worker::Handler,
    mpsc::UnboundedReceiver<()>,
    watch::Sender<bool>,
) {
    let (started, starts) = mpsc::unbounded_channel::<()>();
    let (gate, opened) = watch::channel(false);
    let handler = move |_job: JobContext| {
        let (started, mut opened) = (started.clone(), opened.clone());
        async move {
            let _ = started.send(());
            let _ = opened.wait_for(|o| *o).await;
            Ok(None)
        }
    };
    (handler, starts, gate)
}

/// Runs `worker` until the returned sender is used (or dropped).
fn start(
    worker: Worker,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<
        Result<kairos_client::worker::WorkerReport, kairos_client::ClientError>,
    >,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    (stop, run)
}

#[tokio::test]
async fn the_concurrency_limit_is_never_exceeded() {
    let (c, _dir, _stop) = server().await;
    let ids: Vec<_> = c
        .enqueue_batch(&(0..12).map(|_| job("slow")).collect::<Vec<_>>(), None)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let (gate, opened) = watch::channel(false);
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .concurrency(3)
        .handle("slow", {
            let (running, most) = (running.clone(), most.clone());
            move |_job: JobContext| {
                let (running, most, started, mut opened) = (
                    running.clone(),
                    most.clone(),
                    started.clone(),
                    opened.clone(),
                );
                async move {
                    let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                    most.fetch_max(now, Ordering::AcqRel);
                    let _ = started.send(());
                    let _ = opened.wait_for(|o| *o).await;
                    running.fetch_sub(1, Ordering::AcqRel);
                    Ok(None)
                }
            }
        });
    let (stop, run) = start(worker);
    // Three start and hold their slots; no fourth can start while they do.
    for _ in 0..3 {
        starts.recv().await.unwrap();
    }
    assert_eq!(running.load(Ordering::Acquire), 3);
    gate.send_replace(true);
    for id in &ids {
        until(&c, *id, |j| j.state == JobState::Completed).await;
    }
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        most.load(Ordering::Acquire),
        3,
        "never more than the limit at once"
    );
    assert_eq!(report.completed, 12);
    assert_eq!(report.refused, 0);
}

fn explode() -> kairos_client::worker::JobResult {
    panic!("out of cheese")
}

#[tokio::test]
async fn handler_errors_and_panics_are_failed_attempts() {
    let (c, _dir, _stop) = server().await;
    let panics = c.enqueue(&with_attempts("panics", 1)).await.unwrap();
    let fatal = c.enqueue(&with_attempts("fatal", 5)).await.unwrap();
    let later = c.enqueue(&with_attempts("later", 5)).await.unwrap();
    let result = c.enqueue(&job("result")).await.unwrap();
    let unknown = c
        .enqueue(&with_attempts("nobody-handles-this", 1))
        .await
        .unwrap();
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .concurrency(4)
        .handle("panics", |_job: JobContext| async move { explode() })
        .handle("fatal", |_job: JobContext| async move {
            Err(JobError::fatal("the address does not exist"))
        })
        .handle("later", |_job: JobContext| async move {
            Err(JobError::retry_in(
                "rate limited",
                Duration::from_secs(3600),
            ))
        })
        .handle("result", |job: JobContext| async move {
            let p: serde_json::Value = job.payload()?;
            Ok(Some(serde_json::json!({ "seen": p["x"] })))
        });
    let (stop, run) = start(worker);
    let p = until(&c, panics.id, |j| j.state == JobState::Dead).await;
    assert!(
        p.errors[0].error.contains("out of cheese"),
        "{:?}",
        p.errors
    );
    let f = until(&c, fatal.id, |j| j.state == JobState::Dead).await;
    assert_eq!(f.attempt, 1, "a fatal error is not retried");
    assert_eq!(f.errors[0].error, "the address does not exist");
    let l = until(&c, later.id, |j| !j.errors.is_empty()).await;
    assert!(l.run_at > l.errors[0].at + Duration::from_secs(3000));
    let r = until(&c, result.id, |j| j.state == JobState::Completed).await;
    assert_eq!(r.result.unwrap().get(), r#"{"seen":1}"#);
    let u = until(&c, unknown.id, |j| j.state == JobState::Dead).await;
    assert!(u.errors[0].error.contains("no handler"), "{:?}", u.errors);
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.completed, report.failed), (1, 4));
}

#[tokio::test]
async fn heartbeats_keep_a_job_longer_than_its_lease() {
    let (c, _dir, _stop) = server().await;
    let long = c.enqueue(&job("long")).await.unwrap();
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .lease(Duration::from_secs(2))
        .handle("long", |_job: JobContext| async move {
            // The work itself: two and a half lease lengths.
            tokio::time::sleep(Duration::from_millis(5_000)).await;
            Ok(None)
        });
    let (stop, run) = start(worker);
    let done = until(&c, long.id, |j| j.state.is_finished()).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.attempt, 1, "the lease never ran out");
    assert!(done.errors.is_empty());
    stop.send(()).unwrap();
    assert_eq!(run.await.unwrap().unwrap().refused, 0);
}

#[tokio::test]
async fn a_cancel_through_the_api_trips_the_handlers_token() {
    let (c, _dir, _stop) = server().await;
    let job = c.enqueue(&job("cancellable")).await.unwrap();
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .lease(Duration::from_secs(2))
        .handle("cancellable", move |ctx: JobContext| {
            let started = started.clone();
            async move {
                let _ = started.send(());
                ctx.cancelled().await;
                Err(JobError::fatal("cancelled"))
            }
        });
    let (stop, run) = start(worker);
    starts.recv().await.unwrap();
    c.cancel(job.id).await.unwrap();
    let done = until(&c, job.id, |j| j.state.is_finished()).await;
    assert_eq!(done.state, JobState::Cancelled);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_jobs_finish_and_hands_back_what_outlives_the_grace() {
    let (c, _dir, _stop) = server().await;
    let quick = c.enqueue(&job("quick")).await.unwrap();
    let stuck = c.enqueue(&with_attempts("stuck", 3)).await.unwrap();
    let (started, mut starts) = mpsc::unbounded_channel::<&'static str>();
    let (gate, opened) = watch::channel(false);
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .concurrency(2)
        .grace(Duration::from_millis(500))
        .handle("quick", {
            let started = started.clone();
            move |_job: JobContext| {
                let (started, mut opened) = (started.clone(), opened.clone());
                async move {
                    let _ = started.send("quick");
                    let _ = opened.wait_for(|o| *o).await;
                    Ok(None)
                }
            }
        })
        .handle("stuck", move |_job: JobContext| {
            let started = started.clone();
            async move {
                let _ = started.send("stuck");
                // Ignores its cancellation: only the end of the grace stops it.
                std::future::pending::<()>().await;
                Ok(None)
            }
        });
    let (stop, run) = start(worker);
    starts.recv().await.unwrap();
    starts.recv().await.unwrap();
    stop.send(()).unwrap();
    // Shutdown has begun: the quick job may still finish within the grace.
    gate.send_replace(true);
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.completed, report.stopped), (1, 1));
    assert_eq!(c.job(quick.id).await.unwrap().state, JobState::Completed);
    let s = c.job(stuck.id).await.unwrap();
    assert_eq!(s.errors[0].error, SHUTDOWN_ERROR);
    assert_eq!(s.attempt, 1);
    assert!(
        matches!(s.state, JobState::Available | JobState::Retryable) && s.run_at <= s.errors[0].at,
        "handed back to run again at once: {:?} at {}",
        s.state,
        s.run_at
    );
}

#[tokio::test]
async fn prefetched_jobs_wait_for_a_slot_with_their_leases_kept() {
    let (c, _dir, _stop) = server().await;
    let batch: Vec<_> = (0..10).map(|_| job("held")).collect();
    c.enqueue_batch(&batch, None).await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (gate, opened) = watch::channel(false);
    let worker = Worker::new(c.clone(), "w")
        .queue("q")
        .concurrency(2)
        .prefetch(3)
        .lease_loops(2)
        .handle("held", {
            let (running, most) = (running.clone(), most.clone());
            move |_job: JobContext| {
                let (running, most, mut opened) = (running.clone(), most.clone(), opened.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                    most.fetch_max(now, Ordering::AcqRel);
                    let _ = opened.wait_for(|o| *o).await;
                    running.fetch_sub(1, Ordering::AcqRel);
                    Ok(None)
                }
            }
        });
    let (stop, run) = start(worker);
    // Two run, three more are leased ahead: five leased, never more.
    let leased = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let counts = c.queue("q").await.unwrap().counts;
            if counts.running == 5 {
                return counts.available;
            }
            assert!(counts.running < 5, "at most concurrency + prefetch leased");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("five leased in time");
    assert_eq!(leased, 5, "the rest stay on the server");
    assert_eq!(running.load(Ordering::Acquire), 2);
    gate.send_replace(true);
    let all_done = tokio::time::timeout(Duration::from_secs(20), async {
        while c.queue("q").await.unwrap().counts.completed < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(all_done.is_ok(), "every job completed");
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(most.load(Ordering::Acquire), 2);
    assert_eq!((report.completed, report.refused), (10, 0));
}

#[tokio::test]
async fn a_stopping_worker_does_not_wait_forever_for_a_server_that_is_gone() {
    let (c, _dir, stop_server, serving) = common::stoppable_server().await;
    let job = c.enqueue(&job("orphan")).await.unwrap();
    let (handler, mut starts, gate) = held();
    // Like `kairos worker`: its client never gives up on its own.
    let patient = c.clone().with_retry(kairos_client::RetryPolicy {
        attempts: u32::MAX,
        ..Default::default()
    });
    let worker = Worker::new(patient, "w")
        .queue("q")
        .handle("orphan", handler);
    let (stop, run) = start(worker);
    starts.recv().await.unwrap();
    // The server goes away while the job runs; then the job finishes and the worker stops.
    drop(stop_server);
    serving.await.unwrap().unwrap();
    gate.send_replace(true);
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the worker stopped in bounded time")
        .unwrap()
        .unwrap();
    assert_eq!((report.completed, report.undelivered), (1, 1), "{report:?}");
    assert_eq!(report.refused, 0);
    // Its job is still leased on the server: it runs again once the lease runs out.
    let _ = job;
}

#[tokio::test]
async fn the_server_knows_a_running_worker_by_name_host_and_version() {
    let (c, _dir, _stop) = server().await;
    c.enqueue(&job("held")).await.unwrap();
    let (handler, mut starts, gate) = held();
    let worker = Worker::new(c.clone(), "registry-test")
        .queue("q")
        .handle("held", handler);
    let (stop, run) = start(worker);
    starts.recv().await.unwrap();
    let workers = c.workers().await.unwrap();
    let w = workers.iter().find(|w| w.name == "registry-test").unwrap();
    assert_eq!(w.queues, ["q"]);
    assert_eq!(w.running, 1);
    assert_eq!(
        w.hostname.as_deref(),
        Some(kairos_client::worker::hostname().as_str())
    );
    assert!(w.version.as_deref().unwrap().starts_with("kairos-client "));
    gate.send_replace(true);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
}

/// Waits until `done` holds, looking every 20 ms for up to 20 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what} in time"));
}

#[tokio::test]
async fn what_the_server_cannot_take_waits_in_the_buffer_until_it_is_back() {
    let (c, dir, stop_server, serving) = common::stoppable_server().await;
    let addr = c.base().trim_start_matches("http://").to_string();
    let parent = c.enqueue(&job("parent")).await.unwrap();
    let buffered = tempfile::tempdir().unwrap();
    let buffer = kairos_client::buffer::Buffer::open(buffered.path()).unwrap();
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let (gate, opened) = watch::channel(false);
    let (submitted, mut submissions) = mpsc::unbounded_channel();
    let handler = move |ctx: JobContext| {
        let (started, mut opened, submitted) = (started.clone(), opened.clone(), submitted.clone());
        async move {
            let _ = started.send(());
            let _ = opened.wait_for(|o| *o).await;
            // The server is away by now: the follow-up waits in the buffer.
            let sent = ctx.enqueue(&job("child")).await?;
            let _ = submitted.send(sent);
            Ok(Some(serde_json::json!({"done": true})))
        }
    };
    let patient = c.clone().with_retry(kairos_client::RetryPolicy {
        attempts: u32::MAX,
        ..Default::default()
    });
    let worker = Worker::new(patient, "offline")
        .queue("q")
        .lease(Duration::from_secs(300))
        .buffer(buffer.clone())
        .handle("parent", handler);
    let (stop, run) = start(worker);
    starts.recv().await.unwrap();
    drop(stop_server);
    serving.await.unwrap().unwrap();
    gate.send_replace(true);
    let sent = submissions.recv().await.unwrap();
    assert!(
        matches!(sent, kairos_client::buffer::Submitted::Buffered { .. }),
        "{sent:?}"
    );
    // The follow-up, then the report, oldest first.
    eventually("the report is buffered", || buffer.len() == 2).await;

    // The server is back on the same address and store: both are delivered, once.
    let (_base, _stop_again, _serving) = common::serve(dir.path(), &addr).await;
    let done = until(&c, parent.id, |j| j.state == JobState::Completed).await;
    assert_eq!(done.attempt, 1);
    assert_eq!(done.result.unwrap().get(), r#"{"done":true}"#);
    eventually("the buffer is drained", || buffer.is_empty()).await;
    let children = c
        .list(&kairos_core::api::ListQuery {
            kind: Some("child".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.jobs.len(), 1, "the follow-up is enqueued once");
    stop.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        (
            report.completed,
            report.undelivered,
            report.buffered,
            report.refused
        ),
        (1, 0, 0, 0),
        "{report:?}"
    );
}

/// `examples/worker.rs`, built (cargo builds it beside the tests; a narrower run builds it
/// here).
fn example_worker() -> std::path::PathBuf {
    let debug = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let built = debug.join("examples").join("worker");
    if !built.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "kairos-client", "--example", "worker"])
            .status()
            .unwrap();
        assert!(status.success(), "the example builds");
    }
    built
}

#[tokio::test]
async fn the_rust_example_works_its_jobs() {
    let (c, _dir, _stop) = server().await;
    let hello = c
        .enqueue(&EnqueueRequest {
            queue: Some("email".into()),
            payload: Some(
                kairos_core::RawValue::from_string(r#"{"to":"ada@example.com"}"#.into()).unwrap(),
            ),
            ..job("welcome")
        })
        .await
        .unwrap();
    let nobody = c
        .enqueue(&EnqueueRequest {
            queue: Some("email".into()),
            payload: Some(kairos_core::RawValue::from_string("{}".into()).unwrap()),
            ..job("welcome")
        })
        .await
        .unwrap();
    let example = std::process::Command::new(example_worker())
        .env("KAIROS_SERVER", c.base())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sent = until(&c, hello.id, |j| j.state == JobState::Completed).await;
    assert_eq!(sent.result.unwrap().get(), r#"{"sent":"ada@example.com"}"#);
    let dead = until(&c, nobody.id, |j| j.state == JobState::Dead).await;
    assert_eq!(dead.attempt, 1, "no address: dead at once");
    // SIGTERM: it stops cleanly and prints its report.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &example.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = tokio::task::spawn_blocking(move || example.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("completed: 1, failed: 1"), "{report}");
}

#[tokio::test]
async fn the_producers_trace_runs_into_the_handler_and_its_follow_ups() {
    let (c, _dir, _stop) = server().await;
    let trace = kairos_core::Trace::from_headers(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=x1"),
    )
    .unwrap();
    let traced = c
        .enqueue_traced(&job("traced"), None, Some(&trace))
        .await
        .unwrap()
        .job;
    let (seen, mut sees) = mpsc::unbounded_channel();
    let handler = move |ctx: JobContext| {
        let seen = seen.clone();
        async move {
            let _ = seen.send(ctx.trace().cloned());
            ctx.enqueue(&job("follow-up")).await?;
            Ok(None)
        }
    };
    let (stop, run) = start(
        Worker::new(c.clone(), "tracer")
            .queue("q")
            .handle("traced", handler),
    );
    let inside = sees
        .recv()
        .await
        .unwrap()
        .expect("the handler has the trace");
    assert_eq!(inside.trace_id(), trace.trace_id());
    assert_ne!(inside.traceparent, trace.traceparent, "a span of its own");
    assert_eq!(inside.tracestate, trace.tracestate);
    until(&c, traced.id, |j| j.state == JobState::Completed).await;
    let follow = c
        .list(&kairos_core::api::ListQuery {
            kind: Some("follow-up".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let follow_trace = follow.jobs[0]
        .trace
        .as_ref()
        .expect("the follow-up joins the trace");
    assert_eq!(follow_trace.traceparent, inside.traceparent);
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
}
