//! The timer: makes waiting jobs available at their run_at, expires leases at their
//! expiry and fires due schedules, exactly then. It sleeps until the earliest due time the
//! store announced (or until a commit announces an earlier one), runs one store tick, and
//! repeats; a store shared with other nodes is also ticked every `poll_interval`, since
//! their changes are announced nowhere here. It also forgets idempotency keys older than
//! 24 hours, once an hour.

use super::shutdown_signalled;
use kairos_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often expired idempotency keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long idempotency keys are kept.
const KEEP_KEYS: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// Pause after a failed tick before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(super) async fn run(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    let signals = store.signals();
    let mut next_prune = tokio::time::Instant::now();
    // A store shared with other nodes is also looked at every `poll`, announced or not.
    let poll = store.poll_interval();
    let mut last_tick = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let changed = signals.due_changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = store.now();
        if tokio::time::Instant::now() >= next_prune {
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            let before = now.saturating_sub(KEEP_KEYS).unwrap_or(now);
            match store.prune_idempotency_keys(before).await {
                Ok(n) if n > 0 => tracing::debug!(pruned = n, "forgot old idempotency keys"),
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
            }
        }
        let polled = poll.is_some_and(|p| last_tick.elapsed() >= p);
        let sleep_for = match signals.next_due() {
            due if polled || due.is_some_and(|at| at <= now) => {
                last_tick = tokio::time::Instant::now();
                match store.tick().await {
                    Ok(t) if t.promoted + t.expired + t.fired > 0 => {
                        tracing::debug!(
                            promoted = t.promoted,
                            expired = t.expired,
                            fired = t.fired,
                            "tick"
                        );
                    }
                    Ok(_) => {}
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "tick failed; trying again shortly");
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                            _ = shutdown_signalled(&mut shutdown) => return,
                        }
                    }
                }
                continue;
            }
            Some(at) => Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO),
            None => PRUNE_EVERY,
        };
        let sleep_for = match poll {
            Some(p) => sleep_for.min(p.saturating_sub(last_tick.elapsed())),
            None => sleep_for,
        };
        let until_prune = next_prune.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(sleep_for.min(until_prune)) => {}
            _ = &mut changed => {}
            _ = shutdown_signalled(&mut shutdown) => return,
        }
    }
}
