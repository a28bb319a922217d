//! Unit and property tests of the state machine.

use super::*;
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn job(max_attempts: u32) -> Job {
    Job::new(
        crate::job::test_spec(max_attempts, None),
        Uuid::now_v7(),
        t(0),
    )
}

fn failed(retry: bool) -> Outcome {
    Outcome::Failed {
        error: "boom".into(),
        retry,
        retry_in: None,
    }
}

fn done() -> Outcome {
    Outcome::Completed { result: None }
}

#[test]
fn lease_then_complete() {
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(1)).unwrap();
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.attempt, 1);
    assert_eq!(j.lease.as_ref().unwrap().expires_at, t(31));
    assert_eq!(
        j.ack(tok, done(), t(2), 0.0),
        Ok(AckEffect::Applied(JobState::Completed))
    );
    assert_eq!(j.finished_at, Some(t(2)));
}

#[test]
fn failure_backs_off_then_dies() {
    let mut j = job(2);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(0)).unwrap();
    j.ack(tok, failed(true), t(1), 0.0).unwrap();
    assert_eq!(j.state, JobState::Retryable);
    assert_eq!(j.run_at, t(3), "first retry after base 2s");
    assert!(
        j.lease("w", Uuid::now_v7(), None, t(2)).is_err(),
        "not due yet"
    );
    let tok2 = Uuid::now_v7();
    j.lease("w", tok2, None, t(3)).unwrap();
    j.ack(tok2, failed(true), t(4), 0.0).unwrap();
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.errors.len(), 2);
    assert_eq!(j.errors[1].attempt, 2);
}

#[test]
fn retry_false_goes_dead_at_once() {
    let mut j = job(5);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(0)).unwrap();
    j.ack(tok, failed(false), t(1), 0.0).unwrap();
    assert_eq!(j.state, JobState::Dead);
}

#[test]
fn repeated_ack_is_idempotent_and_different_outcome_conflicts() {
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(0)).unwrap();
    j.ack(tok, done(), t(1), 0.0).unwrap();
    let before = format!("{j:?}");
    assert_eq!(
        j.ack(tok, done(), t(2), 0.0),
        Ok(AckEffect::Repeated(JobState::Completed))
    );
    assert_eq!(
        j.ack(tok, failed(true), t(2), 0.0),
        Err(TransitionError::AlreadyReported(Reported::Completed))
    );
    assert_eq!(format!("{j:?}"), before);
}

#[test]
fn expiry_counts_as_failed_attempt_and_blocks_late_ack() {
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, Some(Duration::from_secs(5)), t(0))
        .unwrap();
    assert!(j.expire(t(4), 0.0).is_err(), "not expired yet");
    assert_eq!(
        j.ack(tok, done(), t(5), 0.0),
        Err(TransitionError::LeaseExpired)
    );
    j.expire(t(5), 0.0).unwrap();
    assert_eq!(j.state, JobState::Retryable);
    assert_eq!(j.errors[0].error, "lease expired");
    assert_eq!(
        j.ack(tok, done(), t(6), 0.0),
        Err(TransitionError::LeaseExpired)
    );
    assert_eq!(
        j.heartbeat(tok, Duration::from_secs(5), t(6)),
        Err(TransitionError::LeaseExpired),
        "a heartbeat says the same as an ack"
    );
}

#[test]
fn cancel_running_waits_for_report() {
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(0)).unwrap();
    j.cancel(t(1)).unwrap();
    assert_eq!(j.state, JobState::Running);
    assert!(j.cancel_requested);
    assert_eq!(
        j.ack(tok, failed(true), t(2), 0.0),
        Ok(AckEffect::Applied(JobState::Cancelled))
    );
    assert_eq!(
        j.cancel(t(3)),
        Err(TransitionError::Finished(JobState::Cancelled))
    );
}

#[test]
fn retry_resets_finished_jobs_and_keeps_errors() {
    let mut j = job(1);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(0)).unwrap();
    j.ack(tok, failed(true), t(1), 0.0).unwrap();
    assert_eq!(j.state, JobState::Dead);
    j.retry(t(10)).unwrap();
    assert_eq!(
        (j.state, j.attempt, j.run_at),
        (JobState::Available, 0, t(10))
    );
    assert_eq!(j.errors.len(), 1);
    assert!(j.finished_at.is_none());
}

#[test]
fn running_jobs_refuse_retry_and_delete() {
    let mut j = job(3);
    j.lease("w", Uuid::now_v7(), None, t(0)).unwrap();
    assert_eq!(j.retry(t(1)), Err(TransitionError::Running));
    assert_eq!(j.check_delete(), Err(TransitionError::Running));
}

#[test]
fn waiting_job_reads_available_once_due() {
    let mut j = job(3);
    j.state = JobState::Scheduled;
    j.run_at = t(10);
    assert_eq!(j.effective_state(t(9)), JobState::Scheduled);
    assert_eq!(j.effective_state(t(10)), JobState::Available);
    assert!(j.promote(t(10)));
    assert_eq!(j.state, JobState::Available);
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Advance(u16),
    Lease(u16),
    AckCurrent(bool, bool),
    AckStale(bool),
    Heartbeat(u16),
    HeartbeatStale,
    Expire,
    Cancel,
    Retry,
    Promote,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u16..120).prop_map(Op::Advance),
        (1u16..60).prop_map(Op::Lease),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::AckCurrent(a, b)),
        any::<bool>().prop_map(Op::AckStale),
        (1u16..60).prop_map(Op::Heartbeat),
        Just(Op::HeartbeatStale),
        Just(Op::Expire),
        Just(Op::Cancel),
        Just(Op::Retry),
        Just(Op::Promote),
    ]
}

fn check_invariants(j: &Job) {
    assert!(
        j.attempt <= j.max_attempts,
        "attempt {} > max {}",
        j.attempt,
        j.max_attempts
    );
    match j.state {
        JobState::Running => {
            let l = j.lease.as_ref().expect("running job has a lease");
            assert!(l.reported.is_none(), "running job's lease is unreported");
            assert!(j.attempt >= 1);
            assert!(j.finished_at.is_none());
        }
        s if s.is_finished() => {
            assert!(j.finished_at.is_some(), "{s} job has finished_at");
            if let Some(l) = &j.lease {
                assert!(l.reported.is_some(), "a finished job's lease is over");
            }
        }
        _ => {
            assert!(j.finished_at.is_none());
            assert!(
                j.attempt < j.max_attempts,
                "a waiting job has attempts left"
            );
        }
    }
    assert!(
        j.errors
            .iter()
            .all(|e| e.attempt >= 1 && e.attempt <= j.max_attempts)
    );
    assert!(j.errors.len() <= crate::validate::MAX_ERRORS_KEPT);
    assert!(j.failures as usize >= j.errors.len());
}

#[test]
fn the_error_list_keeps_the_latest_and_counts_them_all() {
    let mut j = job(1);
    for i in 0..200u32 {
        let tok = Uuid::now_v7();
        j.lease("w", tok, None, t(i as i64 * 10)).unwrap();
        let fail = Outcome::Failed {
            error: format!("failure {i}"),
            retry: true,
            retry_in: None,
        };
        j.ack(tok, fail, t(i as i64 * 10 + 1), 0.0).unwrap();
        assert_eq!(j.state, JobState::Dead);
        j.retry(t(i as i64 * 10 + 2)).unwrap();
    }
    assert_eq!(j.failures, 200);
    assert_eq!(j.errors.len(), crate::validate::MAX_ERRORS_KEPT);
    assert_eq!(j.errors.first().unwrap().error, "failure 180");
    assert_eq!(j.errors.last().unwrap().error, "failure 199");
}

/// The dashboard's buttons ([`Job::operator_actions`]) are offered exactly when the
/// transition would be accepted and change the job.
fn check_operator_actions(j: &Job, now: Timestamp) {
    let actions = j.operator_actions();
    let changes = |f: &dyn Fn(&mut Job) -> bool| {
        let mut copy = j.clone();
        f(&mut copy) && format!("{copy:?}") != format!("{j:?}")
    };
    assert_eq!(
        actions.retry,
        changes(&|c| c.retry(now).is_ok()),
        "retry of {j:?}"
    );
    assert_eq!(
        actions.cancel,
        changes(&|c| c.cancel(now).is_ok()),
        "cancel of {j:?}"
    );
    assert_eq!(actions.delete, j.check_delete().is_ok(), "delete of {j:?}");
}

proptest! {
    #[test]
    fn no_history_reaches_an_illegal_state(max in 1u32..5, ops in proptest::collection::vec(op(), 1..60)) {
        let mut j = job(max);
        let mut now = t(0);
        let mut token: Option<Uuid> = None;
        for op in ops {
            let before = format!("{j:?}");
            match op {
                Op::Advance(s) => now = now.checked_add(jiff::SignedDuration::from_secs(s as i64)).unwrap(),
                Op::Lease(s) => {
                    let tok = Uuid::now_v7();
                    if j.lease("w", tok, Some(Duration::from_secs(s as u64)), now).is_ok() {
                        token = Some(tok);
                    }
                }
                Op::AckCurrent(ok, retry) => {
                    if let Some(tok) = token {
                        let o = if ok { done() } else { failed(retry) };
                        let _ = j.ack(tok, o, now, 0.5);
                    }
                }
                Op::AckStale(ok) => {
                    let o = if ok { done() } else { failed(true) };
                    prop_assert!(j.ack(Uuid::now_v7(), o, now, 0.5).is_err());
                    prop_assert_eq!(format!("{j:?}"), before, "a stale token changed the job");
                }
                Op::Heartbeat(s) => {
                    if let Some(tok) = token {
                        let _ = j.heartbeat(tok, Duration::from_secs(s as u64), now);
                    }
                }
                Op::HeartbeatStale => {
                    prop_assert!(j.heartbeat(Uuid::now_v7(), Duration::from_secs(5), now).is_err());
                    prop_assert_eq!(format!("{j:?}"), before, "a stale token changed the job");
                }
                Op::Expire => { let _ = j.expire(now, 0.5); }
                Op::Cancel => { let _ = j.cancel(now); }
                Op::Retry => { let _ = j.retry(now); }
                Op::Promote => { j.promote(now); }
            }
            check_invariants(&j);
            check_operator_actions(&j, now);
        }
    }

    #[test]
    fn a_failed_transition_changes_nothing(max in 1u32..4, ops in proptest::collection::vec(op(), 1..40)) {
        let mut j = job(max);
        let mut now = t(0);
        let mut token = Uuid::now_v7();
        for op in ops {
            let before = format!("{j:?}");
            let res: Result<(), TransitionError> = match op {
                Op::Advance(s) => { now = now.checked_add(jiff::SignedDuration::from_secs(s as i64)).unwrap(); Ok(()) }
                Op::Lease(s) => {
                    let tok = Uuid::now_v7();
                    let r = j.lease("w", tok, Some(Duration::from_secs(s as u64)), now);
                    if r.is_ok() { token = tok; }
                    r.map(|_| ())
                }
                Op::AckCurrent(ok, retry) => j.ack(token, if ok { done() } else { failed(retry) }, now, 0.5).map(|_| ()),
                Op::AckStale(ok) => j.ack(Uuid::now_v7(), if ok { done() } else { failed(true) }, now, 0.5).map(|_| ()),
                Op::Heartbeat(s) => j.heartbeat(token, Duration::from_secs(s as u64), now).map(|_| ()),
                Op::HeartbeatStale => j.heartbeat(Uuid::now_v7(), Duration::from_secs(1), now).map(|_| ()),
                Op::Expire => j.expire(now, 0.5).map(|_| ()),
                Op::Cancel => j.cancel(now).map(|_| ()),
                Op::Retry => j.retry(now).map(|_| ()),
                Op::Promote => Ok(()),
            };
            if res.is_err() {
                prop_assert_eq!(format!("{j:?}"), before);
            }
        }
    }
}

fn names(h: Happened) -> Vec<&'static str> {
    h.events().map(EventType::as_str).collect()
}

#[test]
fn each_transition_says_what_happened() {
    // Lease, fail (retryable), lease, fail the last attempt: failed then dead.
    let mut j = job(2);
    let tok = Uuid::now_v7();
    assert_eq!(
        names(j.lease("w", tok, None, t(1)).unwrap()),
        ["job.started"]
    );
    let effect = j.ack(tok, failed(true), t(2), 0.0).unwrap();
    assert_eq!(names(effect.happened()), ["job.failed"]);
    // The same report again changes nothing and says nothing.
    let again = j.ack(tok, failed(true), t(2), 0.0).unwrap();
    assert_eq!(names(again.happened()), Vec::<&str>::new());
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(100)).unwrap();
    let effect = j.ack(tok, failed(true), t(101), 0.0).unwrap();
    assert_eq!(names(effect.happened()), ["job.failed", "job.dead"]);
    // An API retry of the dead job, then a delete check.
    assert_eq!(names(j.retry(t(102)).unwrap()), ["job.retried"]);
    assert_eq!(names(j.retry(t(103)).unwrap()), Vec::<&str>::new());
    assert_eq!(names(j.check_delete().unwrap()), ["job.deleted"]);

    // A completed attempt.
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(1)).unwrap();
    assert_eq!(
        names(j.ack(tok, done(), t(2), 0.0).unwrap().happened()),
        ["job.completed"]
    );

    // A lease expiry is a failed attempt; the last one makes the job dead.
    let mut j = job(1);
    j.lease("w", Uuid::now_v7(), None, t(1)).unwrap();
    assert_eq!(
        names(j.expire(t(100), 0.0).unwrap()),
        ["job.failed", "job.dead"]
    );

    // Cancelling a waiting job is the event; a running one's comes at its report.
    let mut j = job(3);
    assert_eq!(names(j.cancel(t(1)).unwrap()), ["job.cancelled"]);
    let mut j = job(3);
    let tok = Uuid::now_v7();
    j.lease("w", tok, None, t(1)).unwrap();
    assert_eq!(names(j.cancel(t(2)).unwrap()), Vec::<&str>::new());
    assert_eq!(
        names(j.ack(tok, failed(true), t(3), 0.0).unwrap().happened()),
        ["job.cancelled"]
    );
}
