//! The conformance suite: behaviour every `Store` backend must show, behind the
//! `conformance` feature so that every backend's tests (in this crate or another) run the
//! same cases. A backend runs it with `kairos_store::conformance_suite!(path::to::make_env)`,
//! where `make_env` opens a fresh, empty store on a manual clock; each case becomes one
//! `#[tokio::test]`.

pub mod database;
mod events;
pub use events::*;

use crate::{Extended, IdempotencyKey, ItemError, Store, StoreError};
use kairos_core::api::{AckReport, EnqueueRequest, Extension, JobFilter, JobSearch, LeaseSpec};
use kairos_core::schedule::{JobTemplateRequest, SchedulePatch, ScheduleRequest};
use kairos_core::{
    Duration, Job, JobState, Limits, ManualClock, NewJob, Outcome, QueueChange, Reported,
    Timestamp, TransitionError,
};
use std::sync::Arc;
use uuid::Uuid;

/// A fresh store and the clock it reads.
pub struct Env {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    /// Whatever must live as long as the store (a temp dir, a database).
    pub _guard: Box<dyn std::any::Any + Send>,
}

/// The instant every test starts at.
pub fn start() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

/// Generates one `#[tokio::test]` per conformance case for a backend. `$make` answers
/// `None` when the backend's service is not there (the case is skipped, loudly).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            enqueue_and_read_back,
            delayed_job_waits_for_its_time,
            lease_order_is_priority_then_run_at,
            lease_respects_max_and_counts_attempts,
            ack_completed_is_idempotent,
            stale_tokens_change_nothing,
            failure_backs_off_then_dies,
            expired_lease_is_a_failed_attempt,
            heartbeat_extends_and_reports_cancel,
            cancel_rules,
            retry_rules,
            delete_rules,
            unique_key_dedupes_unfinished_jobs,
            idempotency_key_replays_the_first_answer,
            listing_pages_newest_first_and_filters,
            searches_match_ids_kinds_unique_keys_and_tags,
            a_search_looks_at_a_bounded_window_per_page,
            the_oldest_available_job_is_found_across_priorities,
            listing_pages_are_bounded_in_bytes,
            queue_counts_follow_every_transition,
            paused_queue_is_not_leased,
            retry_dead_moves_all_dead,
            retry_dead_crosses_chunk_boundaries,
            concurrent_leasers_never_share_a_job,
            concurrent_reports_of_one_lease_agree,
            concurrent_enqueues_of_one_unique_key_make_one_job,
            a_failing_batch_stores_nothing,
            maintenance_crosses_chunk_boundaries,
            enqueue_wakes_waiters,
            tick_reports_next_due,
            schedules_are_created_with_next_run_at,
            due_schedule_fires_once_per_slot,
            fired_timing_reads_back_and_an_update_rules_the_next_fire,
            overlap_skip_waits_for_the_previous_run,
            schedule_update_trigger_and_delete,
            retry_never_makes_two_unfinished_jobs_share_a_unique_key,
            two_triggers_in_one_commit_both_run,
            finished_jobs_go_after_their_retention,
            running_jobs_are_counted_per_worker,
            workers_are_saved_merged_and_forgotten,
            queue_limits_are_kept_and_removed,
            max_depth_refuses_what_would_pass_it,
            concurrency_caps_running_jobs,
            rate_spends_tokens_that_refill_on_the_clock,
            concurrent_leasers_never_pass_a_queues_concurrency,
            concurrent_enqueues_never_pass_a_queues_max_depth,
            every_change_writes_its_events_in_order,
            event_pages_filter_and_continue,
            a_rare_filter_pages_through_the_log_a_window_at_a_time,
            events_go_after_their_retention_and_ids_are_never_reused,
            event_cursors_are_durable_and_only_move_forward,
            appended_events_follow_the_changes_before_them,
            a_commit_of_many_events_reads_back_in_order_from_any_point,
            concurrent_writers_events_are_followed_without_gaps,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                if let Some(env) = $make().await {
                    $crate::conformance::$case(env).await;
                }
            }
        )*
    };
}

fn spec(kind: &str) -> NewJob {
    spec_in("default", kind)
}

fn spec_in(queue: &str, kind: &str) -> NewJob {
    EnqueueRequest {
        queue: Some(queue.into()),
        kind: kind.into(),
        ..Default::default()
    }
    .validate("", &Limits::default())
    .unwrap()
}

async fn enqueue_one(env: &Env, s: NewJob) -> Job {
    let mut out = env.store.enqueue(vec![s], None).await.unwrap();
    assert!(out.jobs[0].1, "created");
    out.jobs.remove(0).0
}

fn lease_spec(queues: &[&str], max: u32) -> LeaseSpec {
    LeaseSpec {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        worker: "w1".into(),
        max,
        wait: Duration::ZERO,
        lease: None,
    }
}

fn completed(id: Uuid, token: Uuid) -> AckReport {
    AckReport {
        id,
        lease_token: token,
        outcome: Outcome::Completed { result: None },
    }
}

fn failed(id: Uuid, token: Uuid) -> AckReport {
    AckReport {
        id,
        lease_token: token,
        outcome: Outcome::Failed {
            error: "boom".into(),
            retry: true,
            retry_in: None,
        },
    }
}

fn advance(env: &Env, secs: u64) {
    env.clock.advance(std::time::Duration::from_secs(secs));
}

async fn listed(env: &Env, filter: JobFilter) -> usize {
    env.store.list_jobs(filter).await.unwrap().jobs.len()
}

async fn state_of(env: &Env, id: Uuid) -> JobState {
    env.store.job(id).await.unwrap().expect("job exists").state
}

pub async fn enqueue_and_read_back(env: Env) {
    let mut s = spec("email");
    s.payload = kairos_core::RawValue::from_string(r#"{"to":"a@b.c","n":1}"#.into()).unwrap();
    s.priority = 7;
    s.tags = vec!["t1".into()];
    let job = enqueue_one(&env, s).await;
    assert_eq!(job.state, JobState::Available);
    assert_eq!(job.created_at, start());
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(got.payload.get(), r#"{"to":"a@b.c","n":1}"#);
    assert_eq!((got.priority, got.attempt, got.max_attempts), (7, 0, 3));
    assert_eq!(got.tags, vec!["t1".to_string()]);
    assert_eq!(got.run_at, start());
    assert!(env.store.job(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn delayed_job_waits_for_its_time(env: Env) {
    let mut s = spec("later");
    s.delay = Some(Duration::from_secs(10));
    let job = enqueue_one(&env, s).await;
    assert_eq!(job.state, JobState::Scheduled);
    assert!(
        env.store
            .lease(lease_spec(&["default"], 10))
            .await
            .unwrap()
            .is_empty()
    );
    advance(&env, 10);
    assert_eq!(
        state_of(&env, job.id).await,
        JobState::Available,
        "reads available once due"
    );
    let leased = env.store.lease(lease_spec(&["default"], 10)).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job.id, job.id);
}

pub async fn lease_order_is_priority_then_run_at(env: Env) {
    let low = enqueue_one(&env, spec_in("a", "low")).await;
    advance(&env, 1);
    let mut hi = spec_in("b", "high");
    hi.priority = 10;
    let high = enqueue_one(&env, hi).await;
    advance(&env, 1);
    let low2 = enqueue_one(&env, spec_in("b", "low2")).await;
    let mut early = spec_in("a", "early");
    early.run_at = Some(start());
    let early = enqueue_one(&env, early).await;
    let leased = env.store.lease(lease_spec(&["a", "b"], 10)).await.unwrap();
    let ids: Vec<Uuid> = leased.iter().map(|l| l.job.id).collect();
    assert_eq!(ids, vec![high.id, low.id, early.id, low2.id]);
}

pub async fn lease_respects_max_and_counts_attempts(env: Env) {
    for i in 0..5 {
        enqueue_one(&env, spec(&format!("k{i}"))).await;
    }
    let first = env.store.lease(lease_spec(&["default"], 3)).await.unwrap();
    assert_eq!(first.len(), 3);
    for l in &first {
        assert_eq!(l.job.state, JobState::Running);
        assert_eq!(l.job.attempt, 1);
        assert_eq!(
            l.lease_expires_at,
            start() + jiff::SignedDuration::from_secs(30)
        );
    }
    let second = env.store.lease(lease_spec(&["default"], 3)).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(
        env.store
            .lease(lease_spec(&["default"], 3))
            .await
            .unwrap()
            .is_empty()
    );
    let mut tokens: Vec<Uuid> = first.iter().chain(&second).map(|l| l.lease_token).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "every lease has its own token");
    let mut custom = lease_spec(&["default"], 1);
    custom.lease = Some(Duration::from_secs(5));
    enqueue_one(&env, spec("k")).await;
    let l = env.store.lease(custom).await.unwrap();
    assert_eq!(
        l[0].lease_expires_at,
        start() + jiff::SignedDuration::from_secs(5)
    );
}

pub async fn ack_completed_is_idempotent(env: Env) {
    let mut with_payload = spec("k");
    with_payload.payload =
        kairos_core::RawValue::from_string(r#"{"keep":[1,2,3]}"#.into()).unwrap();
    let job = enqueue_one(&env, with_payload).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    let r = env
        .store
        .ack(vec![completed(job.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(r, vec![Ok(JobState::Completed)]);
    let r = env
        .store
        .ack(vec![completed(job.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![Ok(JobState::Completed)],
        "a repeat answers ok again"
    );
    let r = env
        .store
        .ack(vec![failed(job.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![Err(ItemError::Conflict(TransitionError::AlreadyReported(
            Reported::Completed
        )))]
    );
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(got.state, JobState::Completed);
    assert_eq!(
        got.payload.get(),
        r#"{"keep":[1,2,3]}"#,
        "reports never touch the payload"
    );
    assert!(got.errors.is_empty());
    assert_eq!(got.finished_at, Some(start()));
}

pub async fn stale_tokens_change_nothing(env: Env) {
    let job = enqueue_one(&env, spec("k")).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    let before_job = env.store.job(job.id).await.unwrap().unwrap();
    let before = serde_json::to_string(&before_job).unwrap();
    let r = env
        .store
        .ack(vec![
            completed(job.id, Uuid::new_v4()),
            completed(Uuid::now_v7(), l.lease_token),
        ])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Err(ItemError::Conflict(TransitionError::StaleLease)),
            Err(ItemError::NotFound)
        ]
    );
    let hb = env
        .store
        .heartbeat(vec![Extension {
            id: job.id,
            lease_token: Uuid::new_v4(),
            extend: Duration::from_secs(60),
        }])
        .await
        .unwrap();
    assert_eq!(
        hb,
        vec![Err(ItemError::Conflict(TransitionError::StaleLease))]
    );
    let after_job = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(before, serde_json::to_string(&after_job).unwrap());
    // The serialised job leaves the lease out: compare its columns too.
    assert_eq!(before_job.lease, after_job.lease);
    let lease = after_job.lease.expect("the lease is stored");
    assert_eq!(
        (lease.token, lease.expires_at, lease.reported),
        (l.lease_token, l.lease_expires_at, None)
    );
}

pub async fn failure_backs_off_then_dies(env: Env) {
    let mut s = spec("k");
    s.max_attempts = 2;
    let job = enqueue_one(&env, s).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        env.store
            .ack(vec![failed(job.id, l.lease_token)])
            .await
            .unwrap(),
        vec![Ok(JobState::Retryable)]
    );
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(
        got.run_at,
        start() + jiff::SignedDuration::from_secs(2),
        "default backoff: 2s"
    );
    assert_eq!(got.errors.len(), 1);
    assert!(
        env.store
            .lease(lease_spec(&["default"], 1))
            .await
            .unwrap()
            .is_empty()
    );
    advance(&env, 2);
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(l.job.attempt, 2);
    assert_eq!(
        env.store
            .ack(vec![failed(job.id, l.lease_token)])
            .await
            .unwrap(),
        vec![Ok(JobState::Dead)]
    );
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.attempt, got.errors.len()),
        (JobState::Dead, 2, 2)
    );
}

pub async fn expired_lease_is_a_failed_attempt(env: Env) {
    let job = enqueue_one(&env, spec("k")).await;
    let mut ls = lease_spec(&["default"], 1);
    ls.lease = Some(Duration::from_secs(5));
    let l = env.store.lease(ls).await.unwrap().remove(0);
    let t = env.store.tick().await.unwrap();
    assert_eq!(t.expired, 0);
    assert_eq!(t.next_due, Some(l.lease_expires_at));
    advance(&env, 5);
    let t = env.store.tick().await.unwrap();
    assert_eq!(t.expired, 1);
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(got.state, JobState::Retryable);
    assert_eq!(got.errors[0].error, "lease expired");
    assert_eq!(got.payload.get(), "{}", "expiry keeps the payload");
    let r = env
        .store
        .ack(vec![completed(job.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![Err(ItemError::Conflict(TransitionError::LeaseExpired))]
    );
    advance(&env, 2);
    let again = env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    assert_eq!(again.len(), 1, "leased again after backoff");
    assert_eq!(again[0].job.attempt, 2);
}

pub async fn heartbeat_extends_and_reports_cancel(env: Env) {
    let job = enqueue_one(&env, spec("k")).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    advance(&env, 20);
    let ext = Extension {
        id: job.id,
        lease_token: l.lease_token,
        extend: Duration::from_secs(60),
    };
    let r = env.store.heartbeat(vec![ext]).await.unwrap();
    let extended = Extended {
        lease_expires_at: start() + jiff::SignedDuration::from_secs(80),
        cancel_requested: false,
    };
    assert_eq!(r, vec![Ok(extended)]);
    advance(&env, 40);
    assert_eq!(
        env.store.tick().await.unwrap().expired,
        0,
        "extended lease holds"
    );
    env.store.cancel(job.id).await.unwrap();
    let r = env.store.heartbeat(vec![ext]).await.unwrap();
    assert!(
        r[0].as_ref().unwrap().cancel_requested,
        "cancel_requested reported"
    );
}

pub async fn cancel_rules(env: Env) {
    let a = enqueue_one(&env, spec("a")).await;
    let c = env.store.cancel(a.id).await.unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert!(matches!(
        env.store.cancel(a.id).await,
        Err(StoreError::Conflict(TransitionError::Finished(
            JobState::Cancelled
        )))
    ));
    let b = enqueue_one(&env, spec("b")).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    let c = env.store.cancel(b.id).await.unwrap();
    assert_eq!((c.state, c.cancel_requested), (JobState::Running, true));
    let r = env
        .store
        .ack(vec![completed(b.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(r, vec![Ok(JobState::Cancelled)]);
    let d = enqueue_one(&env, spec("d")).await;
    let mut ls = lease_spec(&["default"], 1);
    ls.lease = Some(Duration::from_secs(1));
    env.store.lease(ls).await.unwrap();
    env.store.cancel(d.id).await.unwrap();
    advance(&env, 1);
    env.store.tick().await.unwrap();
    assert_eq!(
        state_of(&env, d.id).await,
        JobState::Cancelled,
        "cancelled when the lease expires"
    );
    assert!(matches!(
        env.store.cancel(Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn retry_rules(env: Env) {
    let mut s = spec("k");
    s.max_attempts = 1;
    let job = enqueue_one(&env, s).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        env.store.retry(job.id).await,
        Err(StoreError::Conflict(TransitionError::Running))
    ));
    env.store
        .ack(vec![failed(job.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(state_of(&env, job.id).await, JobState::Dead);
    advance(&env, 3);
    let r = env.store.retry(job.id).await.unwrap();
    assert_eq!(
        (r.state, r.attempt, r.errors.len()),
        (JobState::Available, 0, 1)
    );
    assert_eq!(r.run_at, env.clock_now());
    let mut later = spec("later");
    later.delay = Some(Duration::from_secs(3600));
    let later = enqueue_one(&env, later).await;
    let r = env.store.retry(later.id).await.unwrap();
    assert_eq!(r.state, JobState::Available, "scheduled runs now");
    assert_eq!(
        env.store
            .lease(lease_spec(&["default"], 5))
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn delete_rules(env: Env) {
    let a = enqueue_one(&env, spec("a")).await;
    env.store.delete(a.id).await.unwrap();
    assert!(env.store.job(a.id).await.unwrap().is_none());
    assert!(matches!(
        env.store.delete(a.id).await,
        Err(StoreError::NotFound)
    ));
    let b = enqueue_one(&env, spec("b")).await;
    env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    assert!(matches!(
        env.store.delete(b.id).await,
        Err(StoreError::Conflict(TransitionError::Running))
    ));
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.counts.available, q.counts.running), (0, 1));
}

pub async fn unique_key_dedupes_unfinished_jobs(env: Env) {
    let mut s = spec("k");
    s.unique_key = Some("order-1".into());
    let first = enqueue_one(&env, s.clone()).await;
    let again = env
        .store
        .enqueue(vec![s.clone(), s.clone()], None)
        .await
        .unwrap();
    assert_eq!(again.jobs.len(), 2);
    for (j, created) in &again.jobs {
        assert_eq!((j.id, *created), (first.id, false));
    }
    let mut other = s.clone();
    other.queue = "other".into();
    let o = enqueue_one(&env, other).await;
    assert_ne!(o.id, first.id, "unique per queue");
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    env.store
        .ack(vec![completed(first.id, l.lease_token)])
        .await
        .unwrap();
    let fresh = enqueue_one(&env, s).await;
    assert_ne!(fresh.id, first.id, "a finished job no longer holds the key");
}

pub async fn idempotency_key_replays_the_first_answer(env: Env) {
    let key = IdempotencyKey {
        key: "jobs:abc".into(),
        fingerprint: 42,
    };
    let first = env
        .store
        .enqueue(vec![spec("k")], Some(key.clone()))
        .await
        .unwrap();
    assert!(!first.replayed);
    let id = first.jobs[0].0.id;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    env.store
        .ack(vec![completed(id, l.lease_token)])
        .await
        .unwrap();
    let again = env
        .store
        .enqueue(vec![spec("k")], Some(key.clone()))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.jobs.len(), 1);
    assert_eq!((again.jobs[0].0.id, again.jobs[0].1), (id, true));
    assert_eq!(
        again.jobs[0].0.state,
        JobState::Available,
        "the first answer, as it was"
    );
    let other = IdempotencyKey {
        key: "jobs:abc".into(),
        fingerprint: 43,
    };
    assert!(matches!(
        env.store.enqueue(vec![spec("k")], Some(other)).await,
        Err(StoreError::IdempotencyMismatch)
    ));
    let page = env
        .store
        .list_jobs(JobFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 1, "replays create nothing");
    advance(&env, 24 * 3600 + 1);
    let late = env.store.enqueue(vec![spec("k")], Some(key)).await.unwrap();
    assert!(!late.replayed, "keys are remembered for 24h");
    let before = env.clock_now();
    assert_eq!(env.store.prune_idempotency_keys(before).await.unwrap(), 0);
    advance(&env, 1);
    assert_eq!(
        env.store
            .prune_idempotency_keys(env.clock_now())
            .await
            .unwrap(),
        1
    );
}

pub async fn listing_pages_newest_first_and_filters(env: Env) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let q = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            enqueue_one(&env, spec_in(q, &format!("k{}", i % 3)))
                .await
                .id,
        );
    }
    let mut later = spec_in("even", "k0");
    later.delay = Some(Duration::from_secs(5));
    let later = enqueue_one(&env, later).await;
    ids.push(later.id);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = env
            .store
            .list_jobs(JobFilter {
                limit: 3,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");
    let even = env
        .store
        .list_jobs(JobFilter {
            queue: Some("even".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(even.jobs.len(), 5);
    let k0 = env
        .store
        .list_jobs(JobFilter {
            kind: Some("k0".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(k0.jobs.len(), 4);
    let by_state = |s| JobFilter {
        state: Some(s),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(listed(&env, by_state(JobState::Scheduled)).await, 1);
    assert_eq!(listed(&env, by_state(JobState::Available)).await, 7);
    advance(&env, 5);
    assert_eq!(listed(&env, by_state(JobState::Scheduled)).await, 0);
    assert_eq!(listed(&env, by_state(JobState::Available)).await, 8);
    let bad = JobFilter {
        cursor: Some("nonsense".into()),
        limit: 5,
        ..Default::default()
    };
    assert!(matches!(
        env.store.list_jobs(bad).await,
        Err(StoreError::InvalidCursor)
    ));
}

pub async fn searches_match_ids_kinds_unique_keys_and_tags(env: Env) {
    let mut jobs = Vec::new();
    for (kind, key, tags) in [
        ("email.welcome", None, vec![]),
        ("sms", Some("user-42-sms"), vec![]),
        ("report", None, vec!["billing", "eu-west"]),
        ("Email.Upper", None, vec![]),
        ("half_off", None, vec!["50%"]),
    ] {
        let mut s = spec_in(if kind == "sms" { "texts" } else { "default" }, kind);
        s.unique_key = key.map(str::to_string);
        s.tags = tags.into_iter().map(str::to_string).collect();
        jobs.push(enqueue_one(&env, s).await);
    }
    let found = |q: &str, queue: Option<&str>| {
        let filter = JobFilter {
            queue: queue.map(str::to_string),
            search: Some(JobSearch::new(q)),
            limit: 50,
            ..Default::default()
        };
        let store = env.store.clone();
        async move {
            let page = store.list_jobs(filter).await.unwrap();
            assert_eq!(page.next_cursor, None);
            page.jobs.iter().map(|j| j.kind.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("email", None).await,
        ["email.welcome"],
        "case-sensitive"
    );
    assert_eq!(found("Email", None).await, ["Email.Upper"]);
    assert_eq!(found("42", None).await, ["sms"], "the unique key");
    assert_eq!(
        found("42", Some("default")).await,
        Vec::<String>::new(),
        "with the filters"
    );
    assert_eq!(found("eu-", None).await, ["report"], "a tag");
    assert_eq!(found("_", None).await, ["half_off"], "no wildcards");
    assert_eq!(found("%", None).await, ["half_off"], "no wildcards in tags");
    assert_eq!(
        found("\"", None).await,
        Vec::<String>::new(),
        "tags' JSON is not text"
    );
    let id = jobs[2].id.to_string();
    assert_eq!(found(&id, None).await, ["report"], "an id");
    // Every backend agrees with the rule in core.
    for q in ["e", "m", "-", "sms", "billing", "x", &id] {
        let search = JobSearch::new(q);
        let want: Vec<String> = jobs
            .iter()
            .rev()
            .filter(|j| search.matches(j))
            .map(|j| j.kind.clone())
            .collect();
        assert_eq!(found(q, None).await, want, "q={q}");
    }
}

pub async fn a_search_looks_at_a_bounded_window_per_page(env: Env) {
    use kairos_core::validate::MAX_SEARCH_SCAN;
    // One match, then more than a window of jobs that do not match above it.
    enqueue_one(&env, spec("needle")).await;
    let hay = MAX_SEARCH_SCAN as usize + 10;
    for start in (0..hay).step_by(1000) {
        let batch = (start..hay.min(start + 1000))
            .map(|_| spec("hay"))
            .collect();
        env.store.enqueue(batch, None).await.unwrap();
    }
    let search = |cursor: Option<String>| JobFilter {
        search: Some(JobSearch::new("needle")),
        limit: 5,
        cursor,
        ..Default::default()
    };
    let first = env.store.list_jobs(search(None)).await.unwrap();
    assert!(first.jobs.is_empty(), "the newest window holds no match");
    let cursor = first
        .next_cursor
        .expect("the cursor goes on below the window");
    let second = env.store.list_jobs(search(Some(cursor))).await.unwrap();
    assert_eq!(second.jobs.len(), 1);
    assert_eq!(second.jobs[0].kind, "needle");
    assert_eq!(second.next_cursor, None, "nothing is left below");
}

pub async fn the_oldest_available_job_is_found_across_priorities(env: Env) {
    assert_eq!(env.store.oldest_available("default").await.unwrap(), None);
    let t0 = env.clock_now();
    let mut low = spec("k");
    low.priority = -5;
    enqueue_one(&env, low).await;
    advance(&env, 10);
    let t10 = env.clock_now();
    let mut high = spec("k");
    high.priority = 10;
    enqueue_one(&env, high).await;
    enqueue_one(&env, spec("k")).await;
    let mut later = spec("k");
    later.delay = Some(Duration::from_secs(60));
    enqueue_one(&env, later).await;
    enqueue_one(&env, spec_in("other", "k")).await;
    let oldest = || env.store.oldest_available("default");
    assert_eq!(
        oldest().await.unwrap(),
        Some(t0),
        "the low-priority job waits longest"
    );
    // Leased in priority order: the oldest stays until it is leased itself.
    env.store.lease(lease_spec(&["default"], 2)).await.unwrap();
    assert_eq!(oldest().await.unwrap(), Some(t0));
    env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    assert_eq!(
        oldest().await.unwrap(),
        None,
        "a job not yet due is not available"
    );
    advance(&env, 60);
    env.store.tick().await.unwrap();
    assert!(oldest().await.unwrap().is_some_and(|t| t > t10));
}

pub async fn queue_counts_follow_every_transition(env: Env) {
    assert!(env.store.queue("default").await.unwrap().is_none());
    let mut s = spec("k");
    s.max_attempts = 1;
    let a = enqueue_one(&env, s.clone()).await;
    let b = enqueue_one(&env, s.clone()).await;
    let c = enqueue_one(&env, s.clone()).await;
    let mut d = s.clone();
    d.delay = Some(Duration::from_secs(60));
    enqueue_one(&env, d).await;
    let leased = env.store.lease(lease_spec(&["default"], 2)).await.unwrap();
    let tok = |id: Uuid| leased.iter().find(|l| l.job.id == id).unwrap().lease_token;
    env.store
        .ack(vec![completed(a.id, tok(a.id)), failed(b.id, tok(b.id))])
        .await
        .unwrap();
    env.store.cancel(c.id).await.unwrap();
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(q.name, "default");
    assert!(!q.paused);
    let n = q.counts;
    assert_eq!(
        (
            n.scheduled,
            n.available,
            n.running,
            n.retryable,
            n.completed,
            n.dead,
            n.cancelled
        ),
        (1, 0, 0, 0, 1, 1, 1)
    );
    let all = env.store.queues().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0], q);
}

pub async fn paused_queue_is_not_leased(env: Env) {
    enqueue_one(&env, spec("k")).await;
    let q = env.store.set_paused("default", true).await.unwrap();
    assert!(q.paused);
    assert_eq!(q.counts.available, 1);
    assert!(
        env.store
            .lease(lease_spec(&["default"], 1))
            .await
            .unwrap()
            .is_empty()
    );
    enqueue_one(&env, spec("k")).await;
    assert!(env.store.queue("default").await.unwrap().unwrap().paused);
    env.store.set_paused("default", false).await.unwrap();
    assert_eq!(
        env.store
            .lease(lease_spec(&["default"], 5))
            .await
            .unwrap()
            .len(),
        2
    );
    let fresh = env.store.set_paused("fresh", true).await.unwrap();
    assert!(fresh.paused);
    assert!(
        env.store.queue("fresh").await.unwrap().unwrap().paused,
        "patching creates the queue"
    );
}

pub async fn retry_dead_moves_all_dead(env: Env) {
    for _ in 0..3 {
        let mut s = spec("k");
        s.max_attempts = 1;
        enqueue_one(&env, s).await;
    }
    let leased = env.store.lease(lease_spec(&["default"], 3)).await.unwrap();
    let acks = leased
        .iter()
        .map(|l| failed(l.job.id, l.lease_token))
        .collect();
    env.store.ack(acks).await.unwrap();
    assert_eq!(env.store.retry_dead("default").await.unwrap(), 3);
    assert_eq!(env.store.retry_dead("default").await.unwrap(), 0);
    let again = env.store.lease(lease_spec(&["default"], 3)).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|l| l.job.attempt == 1));
}

/// Redrive goes in chunks (1,000 per commit in SQLite): every dead job comes back once,
/// whatever the chunk boundaries, and one whose unique key is taken stays dead.
pub async fn retry_dead_crosses_chunk_boundaries(env: Env) {
    let n = 2_345;
    let mut specs = Vec::new();
    for i in 0..n {
        let mut s = spec("k");
        s.max_attempts = 1;
        if i == 1_500 {
            s.unique_key = Some("u".into());
        }
        specs.push(s);
    }
    env.store.enqueue(specs, None).await.unwrap();
    loop {
        let leased = env
            .store
            .lease(lease_spec(&["default"], 1000))
            .await
            .unwrap();
        if leased.is_empty() {
            break;
        }
        let acks = leased
            .iter()
            .map(|l| failed(l.job.id, l.lease_token))
            .collect();
        env.store.ack(acks).await.unwrap();
    }
    let mut holder = spec("k");
    holder.unique_key = Some("u".into());
    enqueue_one(&env, holder).await;
    assert_eq!(
        env.store.retry_dead("default").await.unwrap(),
        n as u64 - 1,
        "all but the one whose unique key is held"
    );
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.counts.available, q.counts.dead), (n as u64, 1));
    assert_eq!(env.store.retry_dead("default").await.unwrap(), 0);
}

/// A listing page stops once its payloads pass `MAX_PAGE_BYTES`, and the cursor goes on.
pub async fn listing_pages_are_bounded_in_bytes(env: Env) {
    let big = format!(
        "\"{}\"",
        "x".repeat(kairos_core::validate::MAX_PAGE_BYTES / 2)
    );
    for _ in 0..3 {
        let mut s = spec("big");
        s.payload = kairos_core::RawValue::from_string(big.clone()).unwrap();
        enqueue_one(&env, s).await;
    }
    let filter = JobFilter {
        limit: 50,
        ..Default::default()
    };
    let first = env.store.list_jobs(filter.clone()).await.unwrap();
    assert_eq!(first.jobs.len(), 2);
    let second = env
        .store
        .list_jobs(JobFilter {
            cursor: first.next_cursor.clone(),
            ..filter
        })
        .await
        .unwrap();
    assert_eq!((second.jobs.len(), second.next_cursor), (1, None));
}

/// Many leasers at once never get the same job, and between them get every job.
pub async fn concurrent_leasers_never_share_a_job(env: Env) {
    let n = 400;
    env.store
        .enqueue((0..n).map(|_| spec("k")).collect(), None)
        .await
        .unwrap();
    let mut leasers = Vec::new();
    for _ in 0..8 {
        let store = env.store.clone();
        leasers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.lease(lease_spec(&["default"], 7)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|l| l.job.id));
            }
        }));
    }
    let mut all = Vec::new();
    for l in leasers {
        all.extend(l.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), n, "every job leased once");
    assert_eq!(unique.len(), n, "no job leased twice");
}

/// Many enqueues with the same unique key at once (each on its own connection, where the
/// backend has connections): one job is created, and every answer names it.
pub async fn concurrent_enqueues_of_one_unique_key_make_one_job(env: Env) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = env.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = spec(&format!("k{i}"));
            s.unique_key = Some("one".into());
            // Some in batches with a job of their own, so a batch's other jobs still land.
            let mut batch = vec![s];
            if i % 2 == 0 {
                batch.push(spec("free"));
            }
            store.enqueue(batch, None).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let out = t.await.unwrap();
        let (job, was_created) = &out.jobs[0];
        created += *was_created as usize;
        ids.insert(job.id);
        if out.jobs.len() == 2 {
            assert!(out.jobs[1].1, "the batch's job without a key is created");
        }
    }
    assert_eq!(created, 1, "exactly one job was created for the key");
    assert_eq!(ids.len(), 1, "every answer names the one job");
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(
        q.counts.available,
        1 + 8,
        "one keyed job and the eight free ones"
    );
}

/// Concurrent acks and heartbeats of one lease: exactly one outcome is applied, and
/// the job ends completed, never half-reported.
pub async fn concurrent_reports_of_one_lease_agree(env: Env) {
    let job = enqueue_one(&env, spec("k")).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = env.store.clone();
        let token = l.lease_token;
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store
                    .ack(vec![completed(job.id, token)])
                    .await
                    .unwrap()
                    .remove(0)
                    .is_ok()
            } else {
                let ext = Extension {
                    id: job.id,
                    lease_token: token,
                    extend: Duration::from_secs(60),
                };
                store.heartbeat(vec![ext]).await.unwrap();
                false
            }
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap() as usize;
    }
    assert_eq!(
        acked, 8,
        "a repeated ack of the same outcome is answered ok each time"
    );
    let got = env.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(got.state, JobState::Completed);
    assert_eq!(got.lease.unwrap().reported, Some(Reported::Completed));
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(
        (q.counts.running, q.counts.completed),
        (0, 1),
        "counted once"
    );
}

/// A batch enqueue is one call: when one of its jobs cannot be stored, none is.
pub async fn a_failing_batch_stores_nothing(env: Env) {
    let schedule = Uuid::now_v7();
    let run = |kind: &str| {
        let mut s = spec(kind);
        s.schedule_id = Some(schedule);
        s.scheduled_for = Some(start());
        s
    };
    // Two runs of one schedule for one slot: the second breaks the one-run-per-slot rule.
    let refused = env
        .store
        .enqueue(vec![spec("first"), run("a"), run("b")], None)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        listed(
            &env,
            JobFilter {
                limit: 50,
                ..Default::default()
            }
        )
        .await,
        0
    );
    assert!(
        env.store
            .queue("default")
            .await
            .unwrap()
            .is_none_or(|q| q.counts.available == 0),
        "nothing counted"
    );
    // Per-item calls keep their items apart: one refused ack item, the others applied.
    let jobs = env
        .store
        .enqueue(vec![spec("x"), spec("y")], None)
        .await
        .unwrap();
    assert!(jobs.jobs.iter().all(|(_, created)| *created));
    let leased = env.store.lease(lease_spec(&["default"], 2)).await.unwrap();
    let r = env
        .store
        .ack(vec![
            completed(leased[0].job.id, leased[0].lease_token),
            completed(leased[1].job.id, Uuid::new_v4()),
            completed(Uuid::now_v7(), leased[1].lease_token),
            failed(leased[1].job.id, leased[1].lease_token),
        ])
        .await
        .unwrap();
    assert!(r[0].is_ok() && r[1].is_err() && r[2].is_err() && r[3].is_ok());
    assert_eq!(state_of(&env, leased[0].job.id).await, JobState::Completed);
    assert_eq!(state_of(&env, leased[1].job.id).await, JobState::Retryable);
}

/// Maintenance works in chunks (SQLite: 5,000 promotions or expiries, 100 schedules per
/// tick): whatever the chunk, every due job is promoted once, every lapsed lease expired
/// once, every due schedule fired once, and a tick that left work says it is due now.
pub async fn maintenance_crosses_chunk_boundaries(env: Env) {
    let n = 12_000;
    for _ in 0..(n / 1000) {
        let batch = (0..1000)
            .map(|_| {
                let mut s = spec("later");
                s.delay = Some(Duration::from_secs(10));
                s
            })
            .collect();
        env.store.enqueue(batch, None).await.unwrap();
    }
    for i in 0..250 {
        env.store
            .create_schedule(
                schedule_req(&format!("s{i}"), "* * * * *"),
                Limits::default(),
            )
            .await
            .unwrap();
    }
    advance(&env, 61);
    let (mut promoted, mut fired, mut ticks) = (0, 0, 0);
    loop {
        let t = env.store.tick().await.unwrap();
        ticks += 1;
        promoted += t.promoted;
        fired += t.fired;
        if promoted < n as u64 || fired < 250 {
            assert!(
                t.next_due.is_some_and(|d| d <= env.store.now()),
                "work is left, so the next tick is due now"
            );
        } else {
            break;
        }
        assert!(ticks < 1_000, "ticks make no progress");
    }
    assert_eq!((promoted, fired), (n as u64, 250));
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.counts.scheduled, q.counts.available), (0, n as u64));
    for s in env.store.schedules().await.unwrap() {
        assert_eq!(runs_of(&env, s.id).await.len(), 1, "{} fired once", s.name);
    }
    // Leases: all lapse together, and all expire once across chunks.
    let mut leased = 0;
    loop {
        let mut spec = lease_spec(&["default", "cron"], 1000);
        spec.lease = Some(Duration::from_secs(5));
        let got = env.store.lease(spec).await.unwrap().len();
        if got == 0 {
            break;
        }
        leased += got;
    }
    assert_eq!(leased, n + 250);
    advance(&env, 6);
    let mut expired = 0;
    while expired < leased as u64 {
        let t = env.store.tick().await.unwrap();
        assert!(t.expired > 0, "each tick expires some");
        expired += t.expired;
    }
    assert_eq!(expired, leased as u64);
    let mut waiting_again = 0;
    for name in ["default", "cron"] {
        let q = env.store.queue(name).await.unwrap().unwrap();
        assert_eq!(q.counts.running, 0, "{name}");
        waiting_again += q.counts.retryable + q.counts.available;
    }
    assert_eq!(waiting_again, leased as u64, "each expiry counted once");
}

pub async fn enqueue_wakes_waiters(env: Env) {
    let watch = env.store.signals().watch("default");
    let notified = watch.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    enqueue_one(&env, spec("k")).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("a waiter of the queue is woken by the commit");
}

pub async fn tick_reports_next_due(env: Env) {
    let t = env.store.tick().await.unwrap();
    assert_eq!((t.promoted, t.expired, t.next_due), (0, 0, None));
    let mut s = spec("k");
    s.delay = Some(Duration::from_secs(30));
    let job = enqueue_one(&env, s).await;
    assert!(env.store.signals().next_due().unwrap() <= job.run_at);
    let t = env.store.tick().await.unwrap();
    assert_eq!(t.next_due, Some(job.run_at));
    assert_eq!(env.store.signals().next_due(), Some(job.run_at));
    advance(&env, 30);
    let t = env.store.tick().await.unwrap();
    assert_eq!((t.promoted, t.next_due), (1, None));
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.counts.scheduled, q.counts.available), (0, 1));
}

impl Env {
    fn clock_now(&self) -> Timestamp {
        use kairos_core::Clock;
        self.clock.now()
    }
}

/// A schedule request of `name` and `cron`, running kind `report` on queue `cron`.
pub fn schedule_req(name: &str, cron: &str) -> ScheduleRequest {
    ScheduleRequest {
        name: name.into(),
        cron: cron.into(),
        job: JobTemplateRequest {
            queue: Some("cron".into()),
            kind: "report".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn runs_of(env: &Env, id: Uuid) -> Vec<Job> {
    let filter = JobFilter {
        schedule_id: Some(id),
        limit: 500,
        ..Default::default()
    };
    env.store.list_jobs(filter).await.unwrap().jobs
}

pub async fn schedules_are_created_with_next_run_at(env: Env) {
    let s = env
        .store
        .create_schedule(schedule_req("hourly", "0 * * * *"), Limits::default())
        .await
        .unwrap();
    assert_eq!(
        s.next_run_at,
        Some(start() + jiff::SignedDuration::from_hours(1))
    );
    assert_eq!((s.active, s.timezone.as_str()), (true, "UTC"));
    let dup = env
        .store
        .create_schedule(schedule_req("hourly", "* * * * *"), Limits::default())
        .await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))));
    let bad = env
        .store
        .create_schedule(schedule_req("bad", "not cron"), Limits::default())
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
    assert_eq!(env.store.schedules().await.unwrap().len(), 1);
    assert_eq!(
        env.store.schedule(s.id).await.unwrap().unwrap().name,
        "hourly"
    );
    assert!(env.store.schedule(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn due_schedule_fires_once_per_slot(env: Env) {
    let s = env
        .store
        .create_schedule(schedule_req("minutely", "* * * * *"), Limits::default())
        .await
        .unwrap();
    assert_eq!(env.store.tick().await.unwrap().fired, 0);
    assert_eq!(
        env.store.signals().next_due(),
        s.next_run_at,
        "the timer knows the fire time"
    );
    advance(&env, 60);
    let t = env.store.tick().await.unwrap();
    assert_eq!(t.fired, 1);
    assert_eq!(
        t.next_due,
        Some(start() + jiff::SignedDuration::from_secs(120))
    );
    assert_eq!(
        env.store.tick().await.unwrap().fired,
        0,
        "a slot fires once"
    );
    let runs = runs_of(&env, s.id).await;
    assert_eq!(runs.len(), 1);
    let expected = start() + jiff::SignedDuration::from_secs(60);
    assert_eq!(
        (runs[0].schedule_id, runs[0].scheduled_for),
        (Some(s.id), Some(expected))
    );
    assert_eq!(
        (runs[0].queue.as_str(), runs[0].kind.as_str()),
        ("cron", "report")
    );
    let s = env.store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(s.last_run_at, Some(expected));
    assert_eq!(
        s.next_run_at,
        Some(start() + jiff::SignedDuration::from_secs(120))
    );
}

/// A fire's timing reads back by id and in the list, survives an update of something
/// else, and an update of the cron rules the very next fire (a backend that keeps parsed
/// schedules between fires must not fire by a stale one).
pub async fn fired_timing_reads_back_and_an_update_rules_the_next_fire(env: Env) {
    let at = |secs| start() + jiff::SignedDuration::from_secs(secs);
    let s = env
        .store
        .create_schedule(schedule_req("timing", "* * * * *"), Limits::default())
        .await
        .unwrap();
    for _ in 0..2 {
        advance(&env, 60);
        assert_eq!(env.store.tick().await.unwrap().fired, 1);
    }
    let timing = |s: &kairos_core::schedule::Schedule| (s.last_run_at, s.next_run_at);
    let by_id = env.store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(timing(&by_id), (Some(at(120)), Some(at(180))));
    let listed = env.store.schedules().await.unwrap();
    assert_eq!(timing(&listed[0]), (Some(at(120)), Some(at(180))));
    let renamed = SchedulePatch {
        description: Some("renamed".into()),
        ..Default::default()
    };
    let s = env
        .store
        .update_schedule(s.id, renamed, Limits::default())
        .await
        .unwrap();
    assert_eq!(timing(&s), (Some(at(120)), Some(at(180))));
    // Every second minute from now (120) on: 240 next, then 360 (the old cron: 300).
    let every_other = SchedulePatch {
        cron: Some("*/2 * * * *".into()),
        ..Default::default()
    };
    let s = env
        .store
        .update_schedule(s.id, every_other, Limits::default())
        .await
        .unwrap();
    assert_eq!(s.next_run_at, Some(at(240)));
    advance(&env, 120);
    assert_eq!(env.store.tick().await.unwrap().fired, 1);
    let s = env.store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(timing(&s), (Some(at(240)), Some(at(360))));
    assert_eq!(s.description.as_deref(), Some("renamed"));
    let mut slots: Vec<_> = runs_of(&env, s.id)
        .await
        .iter()
        .filter_map(|j| j.scheduled_for)
        .collect();
    slots.sort();
    assert_eq!(slots, [at(60), at(120), at(240)]);
}

pub async fn overlap_skip_waits_for_the_previous_run(env: Env) {
    let mut req = schedule_req("no-overlap", "* * * * *");
    req.overlap = Some(kairos_core::schedule::Overlap::Skip);
    let s = env
        .store
        .create_schedule(req, Limits::default())
        .await
        .unwrap();
    advance(&env, 60);
    assert_eq!(env.store.tick().await.unwrap().fired, 1);
    advance(&env, 60);
    assert_eq!(
        env.store.tick().await.unwrap().fired,
        0,
        "the first run is unfinished"
    );
    let l = env.store.lease(lease_spec(&["cron"], 5)).await.unwrap();
    assert_eq!(l.len(), 1);
    env.store
        .ack(vec![completed(l[0].job.id, l[0].lease_token)])
        .await
        .unwrap();
    advance(&env, 60);
    assert_eq!(env.store.tick().await.unwrap().fired, 1);
    assert_eq!(runs_of(&env, s.id).await.len(), 2);
}

pub async fn schedule_update_trigger_and_delete(env: Env) {
    let s = env
        .store
        .create_schedule(schedule_req("daily", "0 9 * * *"), Limits::default())
        .await
        .unwrap();
    let patch = SchedulePatch {
        cron: Some("30 * * * *".into()),
        ..Default::default()
    };
    let u = env
        .store
        .update_schedule(s.id, patch, Limits::default())
        .await
        .unwrap();
    assert_eq!(
        u.next_run_at,
        Some(start() + jiff::SignedDuration::from_mins(30))
    );
    let off = SchedulePatch {
        active: Some(false),
        ..Default::default()
    };
    let u = env
        .store
        .update_schedule(s.id, off, Limits::default())
        .await
        .unwrap();
    assert_eq!(u.next_run_at, None);
    advance(&env, 3600);
    assert_eq!(
        env.store.tick().await.unwrap().fired,
        0,
        "inactive schedules fire nothing"
    );
    let job = env.store.trigger_schedule(s.id).await.unwrap();
    assert_eq!(
        (job.schedule_id, job.scheduled_for),
        (Some(s.id), Some(env.clock_now()))
    );
    let other = env
        .store
        .create_schedule(schedule_req("other", "0 9 * * *"), Limits::default())
        .await
        .unwrap();
    let rename = SchedulePatch {
        name: Some("other".into()),
        ..Default::default()
    };
    assert!(matches!(
        env.store
            .update_schedule(s.id, rename, Limits::default())
            .await,
        Err(StoreError::Duplicate(_))
    ));
    env.store.delete_schedule(s.id).await.unwrap();
    assert!(matches!(
        env.store.delete_schedule(s.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(env.store.job(job.id).await.unwrap().is_some(), "runs stay");
    assert!(matches!(
        env.store.trigger_schedule(s.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(env.store.schedules().await.unwrap()[0].id, other.id);
}

pub async fn retry_never_makes_two_unfinished_jobs_share_a_unique_key(env: Env) {
    let mut s = spec("k");
    s.unique_key = Some("order-9".into());
    s.max_attempts = 1;
    let old = enqueue_one(&env, s.clone()).await;
    let l = env
        .store
        .lease(lease_spec(&["default"], 1))
        .await
        .unwrap()
        .remove(0);
    env.store
        .ack(vec![failed(old.id, l.lease_token)])
        .await
        .unwrap();
    assert_eq!(state_of(&env, old.id).await, JobState::Dead);
    let newer = enqueue_one(&env, s).await;
    assert!(
        matches!(env.store.retry(old.id).await, Err(StoreError::Duplicate(_))),
        "retrying the dead job would duplicate the key"
    );
    assert_eq!(
        env.store.retry_dead("default").await.unwrap(),
        0,
        "it stays dead"
    );
    assert_eq!(state_of(&env, old.id).await, JobState::Dead);
    env.store.cancel(newer.id).await.unwrap();
    assert_eq!(
        env.store.retry(old.id).await.unwrap().state,
        JobState::Available,
        "free again"
    );
}

pub async fn two_triggers_in_one_commit_both_run(env: Env) {
    let s = env
        .store
        .create_schedule(schedule_req("manual", "0 0 1 1 *"), Limits::default())
        .await
        .unwrap();
    // The manual clock does not move: both runs happen "at the same instant".
    let (a, b) = tokio::join!(
        env.store.trigger_schedule(s.id),
        env.store.trigger_schedule(s.id)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.id, b.id);
    assert_ne!(a.scheduled_for, b.scheduled_for);
    assert_eq!(runs_of(&env, s.id).await.len(), 2);
}

/// Completed and cancelled jobs go after the completed retention, dead ones after the
/// dead retention; unfinished jobs never; counts follow; a batch stops at its limit.
pub async fn finished_jobs_go_after_their_retention(env: Env) {
    let done = enqueue_one(&env, spec("done")).await;
    let mut d = spec("dead");
    d.max_attempts = 1;
    let dead = enqueue_one(&env, d).await;
    for l in env.store.lease(lease_spec(&["default"], 10)).await.unwrap() {
        let report = if l.job.id == done.id {
            completed(l.job.id, l.lease_token)
        } else {
            failed(l.job.id, l.lease_token)
        };
        env.store.ack(vec![report]).await.unwrap();
    }
    let waiting = enqueue_one(&env, spec("waiting")).await;
    let cancelled = enqueue_one(&env, spec("cancelled")).await;
    env.store.cancel(cancelled.id).await.unwrap();
    assert_eq!(state_of(&env, dead.id).await, JobState::Dead);
    let retention = kairos_core::Retention {
        completed: Duration::from_secs(3600),
        dead: Duration::from_secs(7 * 3600),
        events: Duration::from_secs(3600),
    };
    advance(&env, 3599);
    let cut = retention.cutoffs(env.clock_now());
    assert_eq!(
        env.store.prune_finished(cut, 100).await.unwrap(),
        0,
        "not yet"
    );
    advance(&env, 2);
    let cut = retention.cutoffs(env.clock_now());
    assert_eq!(
        env.store.prune_finished(cut, 1).await.unwrap(),
        1,
        "a batch stops at its limit"
    );
    assert_eq!(env.store.prune_finished(cut, 100).await.unwrap(), 1);
    assert!(env.store.job(done.id).await.unwrap().is_none());
    assert!(env.store.job(cancelled.id).await.unwrap().is_none());
    assert!(
        env.store.job(dead.id).await.unwrap().is_some(),
        "dead jobs are kept longer"
    );
    assert!(
        env.store.job(waiting.id).await.unwrap().is_some(),
        "unfinished jobs stay"
    );
    advance(&env, 6 * 3600);
    let cut = retention.cutoffs(env.clock_now());
    assert_eq!(env.store.prune_finished(cut, 100).await.unwrap(), 1);
    assert!(env.store.job(dead.id).await.unwrap().is_none());
    assert!(
        env.store.job(waiting.id).await.unwrap().is_some(),
        "unfinished jobs stay"
    );
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(
        (q.counts.completed, q.counts.cancelled, q.counts.dead),
        (0, 0, 0),
        "counts follow the deletions"
    );
}

pub async fn running_jobs_are_counted_per_worker(env: Env) {
    for _ in 0..5 {
        enqueue_one(&env, spec("k")).await;
    }
    assert!(env.store.running_by_worker().await.unwrap().is_empty());
    let mut a = lease_spec(&["default"], 3);
    a.worker = "alpha".into();
    let leased = env.store.lease(a).await.unwrap();
    let mut b = lease_spec(&["default"], 1);
    b.worker = "beta".into();
    env.store.lease(b).await.unwrap();
    let running = env.store.running_by_worker().await.unwrap();
    assert_eq!(running.get("alpha"), Some(&3));
    assert_eq!(running.get("beta"), Some(&1));
    // A report ends the count; jobs not leased are nobody's.
    env.store
        .ack(vec![completed(leased[0].job.id, leased[0].lease_token)])
        .await
        .unwrap();
    let running = env.store.running_by_worker().await.unwrap();
    assert_eq!(running.get("alpha"), Some(&2));
    assert_eq!(running.len(), 2);
}

pub async fn workers_are_saved_merged_and_forgotten(env: Env) {
    use kairos_core::worker::Sighting;
    let t: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let at = |s: i64| t + jiff::SignedDuration::from_secs(s);
    let alpha = Sighting {
        name: "alpha".into(),
        queues: vec!["mail".into(), "sms".into()],
        hostname: Some("h1".into()),
        version: None,
        started_at: at(5),
        last_seen_at: at(10),
    };
    let beta = Sighting {
        name: "beta".into(),
        queues: vec![],
        hostname: None,
        version: None,
        started_at: at(0),
        last_seen_at: at(8),
    };
    env.store
        .save_workers(vec![alpha.clone(), beta.clone()])
        .await
        .unwrap();
    // Another node heard alpha later, through acks only; a third, earlier, said more.
    let later = Sighting {
        queues: vec![],
        hostname: None,
        version: Some("2.0".into()),
        started_at: at(1),
        last_seen_at: at(20),
        ..alpha.clone()
    };
    let earlier = Sighting {
        queues: vec!["old".into()],
        hostname: Some("h0".into()),
        version: Some("1.0".into()),
        started_at: at(3),
        last_seen_at: at(15),
        ..alpha.clone()
    };
    env.store.save_workers(vec![later.clone()]).await.unwrap();
    env.store.save_workers(vec![earlier.clone()]).await.unwrap();
    let mut want = alpha.clone();
    want.merge(later);
    want.merge(earlier);
    let saved = env.store.workers(100).await.unwrap();
    assert_eq!(
        saved,
        vec![want.clone(), beta.clone()],
        "most recently seen first"
    );
    assert_eq!(
        (want.started_at, want.last_seen_at, want.queues.len()),
        (at(1), at(20), 2)
    );
    assert_eq!(env.store.workers(1).await.unwrap(), vec![want.clone()]);

    // Forgotten when unseen since a time, or past the most recent `keep`.
    assert_eq!(env.store.forget_workers(at(9), 100).await.unwrap(), 1);
    assert_eq!(env.store.workers(100).await.unwrap(), vec![want]);
    let many: Vec<Sighting> = (0..5)
        .map(|i| Sighting {
            name: format!("w{i}"),
            started_at: at(100 + i),
            last_seen_at: at(100 + i),
            ..beta.clone()
        })
        .collect();
    env.store.save_workers(many).await.unwrap();
    assert_eq!(env.store.forget_workers(at(0), 3).await.unwrap(), 3);
    let names: Vec<String> = env
        .store
        .workers(100)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["w4", "w3", "w2"]);
}

/// How many jobs one lease of up to `max` takes from `default`.
async fn leased(env: &Env, max: u32) -> usize {
    env.store
        .lease(lease_spec(&["default"], max))
        .await
        .unwrap()
        .len()
}

fn limit(max_depth: Option<u64>, concurrency: Option<u32>, rate: Option<&str>) -> QueueChange {
    QueueChange {
        paused: None,
        max_depth: max_depth.map(Some),
        concurrency: concurrency.map(Some),
        rate: rate.map(|r| Some(r.parse().unwrap())),
    }
}

async fn ack_all(env: &Env, leased: &[kairos_core::api::LeasedJob]) {
    let reports = leased
        .iter()
        .map(|l| completed(l.job.id, l.lease_token))
        .collect();
    for r in env.store.ack(reports).await.unwrap() {
        r.unwrap();
    }
}

/// Limits are shown on the queue, changed one at a time, and removed by `null`.
pub async fn queue_limits_are_kept_and_removed(env: Env) {
    let q = env
        .store
        .change_queue("limited", limit(Some(100), Some(4), Some("10/m")))
        .await
        .unwrap();
    assert_eq!(q.limits.max_depth, Some(100));
    assert_eq!(q.limits.concurrency, Some(4));
    assert_eq!(q.limits.rate.unwrap().to_string(), "10/m");
    assert!(!q.paused);
    let paused = env.store.set_paused("limited", true).await.unwrap();
    assert_eq!(paused.limits, q.limits, "pausing keeps the limits");
    let removed = env
        .store
        .change_queue(
            "limited",
            QueueChange {
                concurrency: Some(None),
                ..QueueChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            removed.limits.concurrency,
            removed.limits.max_depth,
            removed.paused
        ),
        (None, Some(100), true)
    );
    let read = env.store.queue("limited").await.unwrap().unwrap();
    assert_eq!(read, removed);
    assert_eq!(env.store.queues().await.unwrap(), vec![removed]);
}

/// A queue at its max_depth of unfinished jobs refuses new ones, a batch that would pass
/// it whole; finished jobs make room, and a job its unique key dedupes is no new job.
pub async fn max_depth_refuses_what_would_pass_it(env: Env) {
    env.store
        .change_queue("default", limit(Some(3), None, None))
        .await
        .unwrap();
    let mut keyed = spec("k");
    keyed.unique_key = Some("one".into());
    env.store
        .enqueue(vec![keyed.clone(), spec("k")], None)
        .await
        .unwrap();
    match env.store.enqueue(vec![spec("k"), spec("k")], None).await {
        Err(StoreError::QueueFull(full)) => {
            assert_eq!((full.max_depth, full.queue.as_str()), (3, "default"));
        }
        other => panic!("expected queue full, got {other:?}"),
    }
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(q.counts.available, 2, "nothing of the refused batch");
    enqueue_one(&env, spec("k")).await;
    let dup = env.store.enqueue(vec![keyed], None).await.unwrap();
    assert!(!dup.jobs[0].1, "answered with the holder of its unique key");
    assert!(matches!(
        env.store.enqueue(vec![spec("k")], None).await,
        Err(StoreError::QueueFull(_))
    ));
    // Another queue is not affected.
    enqueue_one(&env, spec_in("other", "k")).await;
    let leased = env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    assert!(
        env.store.enqueue(vec![spec("k")], None).await.is_err(),
        "a running job is unfinished"
    );
    ack_all(&env, &leased).await;
    enqueue_one(&env, spec("k")).await;
    env.store
        .change_queue(
            "default",
            QueueChange {
                max_depth: Some(None),
                ..QueueChange::default()
            },
        )
        .await
        .unwrap();
    env.store
        .enqueue((0..5).map(|_| spec("k")).collect(), None)
        .await
        .unwrap();
}

/// A queue's concurrency bounds its running jobs; an ended job makes room.
pub async fn concurrency_caps_running_jobs(env: Env) {
    env.store
        .enqueue((0..5).map(|_| spec("k")).collect(), None)
        .await
        .unwrap();
    env.store
        .change_queue("default", limit(None, Some(2), None))
        .await
        .unwrap();
    let first = env.store.lease(lease_spec(&["default"], 5)).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(leased(&env, 5).await == 0);
    ack_all(&env, &first[..1]).await;
    let second = env.store.lease(lease_spec(&["default"], 5)).await.unwrap();
    assert_eq!(second.len(), 1, "one ended, one more runs");
    // A lease over two queues takes the limited one's room only.
    enqueue_one(&env, spec_in("open", "k")).await;
    let both = env
        .store
        .lease(lease_spec(&["default", "open"], 5))
        .await
        .unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].job.queue, "open");
    env.store
        .change_queue(
            "default",
            QueueChange {
                concurrency: Some(None),
                ..QueueChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(leased(&env, 5).await, 2, "no limit: the rest");
}

/// A queue's rate: a burst of one second's worth, then one job per interval as the
/// store's clock moves; a changed rate starts full again.
pub async fn rate_spends_tokens_that_refill_on_the_clock(env: Env) {
    env.store
        .enqueue((0..20).map(|_| spec("k")).collect(), None)
        .await
        .unwrap();
    env.store
        .change_queue("default", limit(None, None, Some("2/s")))
        .await
        .unwrap();
    let burst = env.store.lease(lease_spec(&["default"], 10)).await.unwrap();
    assert_eq!(burst.len(), 2, "one second's worth");
    assert!(leased(&env, 10).await == 0);
    env.clock.advance(std::time::Duration::from_millis(500));
    assert_eq!(leased(&env, 10).await, 1, "one token in half a second");
    advance(&env, 60);
    assert_eq!(
        leased(&env, 10).await,
        2,
        "an idle minute piles up no more than the burst"
    );
    env.store
        .change_queue("default", limit(None, None, Some("5/s")))
        .await
        .unwrap();
    assert_eq!(leased(&env, 10).await, 5, "a new rate starts full");
}

/// Many leasers at once (on their own connections, where the backend has them), each
/// holding what it leased for a moment, never hold more than the queue's concurrency
/// between them, and between them run every job.
pub async fn concurrent_leasers_never_pass_a_queues_concurrency(env: Env) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = 120;
    env.store
        .enqueue((0..n).map(|_| spec("k")).collect(), None)
        .await
        .unwrap();
    env.store
        .change_queue("default", limit(None, Some(3), None))
        .await
        .unwrap();
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut leasers = Vec::new();
    for _ in 0..8 {
        let (store, holding, most, done) = (
            env.store.clone(),
            holding.clone(),
            most.clone(),
            done.clone(),
        );
        leasers.push(tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < n {
                let got = store.lease(lease_spec(&["default"], 2)).await.unwrap();
                if got.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                // Between the lease's answer and the ack's request, these jobs run.
                let now = holding.fetch_add(got.len(), Ordering::SeqCst) + got.len();
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                holding.fetch_sub(got.len(), Ordering::SeqCst);
                let reports = got
                    .iter()
                    .map(|l| completed(l.job.id, l.lease_token))
                    .collect();
                for r in store.ack(reports).await.unwrap() {
                    r.unwrap();
                }
                done.fetch_add(got.len(), Ordering::SeqCst);
            }
        }));
    }
    for l in leasers {
        l.await.unwrap();
    }
    assert!(
        most.load(Ordering::SeqCst) <= 3,
        "held {} at once",
        most.load(Ordering::SeqCst)
    );
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!((q.counts.completed, q.counts.running), (n as u64, 0));
}

/// Many enqueues into a queue with a max_depth at once: exactly that many get in.
pub async fn concurrent_enqueues_never_pass_a_queues_max_depth(env: Env) {
    env.store
        .change_queue("default", limit(Some(5), None, None))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = env.store.clone();
        tasks.push(tokio::spawn(async move {
            match store.enqueue(vec![spec("k")], None).await {
                Ok(_) => true,
                Err(StoreError::QueueFull(_)) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap() as usize;
    }
    assert_eq!(admitted, 5);
    let q = env.store.queue("default").await.unwrap().unwrap();
    assert_eq!(q.counts.available, 5);
}
