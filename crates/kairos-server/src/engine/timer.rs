//! The timer: makes waiting jobs available at their run_at, expires leases at their
//! expiry and fires due schedules, exactly then. It sleeps until the earliest due time the
//! store announced (or until a commit announces an earlier one), runs one store tick, and
//! repeats; a store shared with other nodes is also ticked every `poll_interval`, since
//! their changes are announced nowhere here. It also forgets idempotency keys older than
//! 24 hours, once an hour, deletes finished jobs and events past their retention every
//! few seconds (logging "pruned N jobs" for a pass that deleted any), and forgets workers
//! unseen for a day (or past the most kept) every minute.
//!
//! On a shared store only one node does all this at a time: the timer beats
//! ([`Store::beat`]) every `poll_interval`, and runs the duties only while the store says
//! this node leads (announcing it to the other lead-only work, the sinks, through
//! [`super::Engine::leading`]). At shutdown it resigns, so another node takes over at once.

use super::shutdown_signalled;
use kairos_core::Retention;
use kairos_core::worker::WORKER_FORGOTTEN_AFTER;
use kairos_store::{Node, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often expired idempotency keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long idempotency keys are kept.
const KEEP_KEYS: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// How often finished jobs past their retention are looked for.
const PRUNE_JOBS_EVERY: Duration = Duration::from_secs(5);
/// Finished jobs deleted per commit: small, so pruning never holds up leasing.
const PRUNE_BATCH: u32 = 1_000;

/// How often workers unseen for a day (or past the most kept) are forgotten.
const FORGET_WORKERS_EVERY: Duration = Duration::from_secs(60);

/// Pause after a failed tick before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Runs the duties while this node leads them, until shutdown; then hands the lead over.
pub(super) async fn run(
    store: Arc<dyn Store>,
    node: Node,
    retention: Retention,
    shutdown: watch::Receiver<bool>,
    leading: watch::Sender<bool>,
) {
    duties(&store, &node, retention, shutdown, &leading).await;
    leading.send_replace(false);
    if let Err(e) = store.resign(&node).await {
        tracing::debug!(error = %e, "could not hand over the lead; another node takes it when it expires");
    }
}

async fn duties(
    store: &Arc<dyn Store>,
    node: &Node,
    retention: Retention,
    mut shutdown: watch::Receiver<bool>,
    announce: &watch::Sender<bool>,
) {
    let signals = store.signals();
    let mut next_prune = tokio::time::Instant::now();
    let mut next_prune_jobs = tokio::time::Instant::now();
    let mut next_forget = tokio::time::Instant::now();
    // A store shared with other nodes is also looked at every `poll`, announced or not;
    // this node says it is alive, and claims or keeps the lead, as often.
    let poll = store.poll_interval();
    let mut last_tick = tokio::time::Instant::now();
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut leading = false;
    let mut beat_failing = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if last_beat.is_none_or(|b| poll.is_some_and(|p| b.elapsed() >= p)) {
            last_beat = Some(tokio::time::Instant::now());
            let leads = match store.beat(node).await {
                Ok(l) => {
                    beat_failing = false;
                    l
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    // Once per episode: an outage is logged by the store already.
                    if !std::mem::replace(&mut beat_failing, true) {
                        tracing::warn!(error = %e, "could not reach the store to keep the lead");
                    }
                    false
                }
            };
            if leads != leading && poll.is_some() {
                match leads {
                    true => tracing::info!("leading the background duties"),
                    false => tracing::info!("another node leads the background duties"),
                }
            }
            leading = leads;
            announce.send_if_modified(|l| std::mem::replace(l, leads) != leads);
        }
        if !leading {
            // Only the leader runs the duties; look again at the next beat.
            let until_beat = poll.unwrap_or(RETRY_AFTER_FAILURE);
            tokio::select! {
                _ = tokio::time::sleep(until_beat) => {}
                _ = shutdown_signalled(&mut shutdown) => return,
            }
            continue;
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
        if tokio::time::Instant::now() >= next_prune_jobs {
            next_prune_jobs = tokio::time::Instant::now() + PRUNE_JOBS_EVERY;
            match prune_finished(store, retention, &mut shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("pruned {n} jobs"),
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
            }
            match prune_events(store, retention, &mut shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(pruned = n, "pruned events past their retention"),
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "pruning events failed"),
            }
        }
        if tokio::time::Instant::now() >= next_forget {
            next_forget = tokio::time::Instant::now() + FORGET_WORKERS_EVERY;
            let forgotten = jiff::SignedDuration::try_from(WORKER_FORGOTTEN_AFTER)
                .unwrap_or(jiff::SignedDuration::from_hours(24));
            let before = now.saturating_sub(forgotten).unwrap_or(now);
            match store
                .forget_workers(before, super::registry::MAX_WORKERS)
                .await
            {
                Ok(n) if n > 0 => tracing::debug!(forgotten = n, "forgot workers"),
                Ok(_) => {}
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "forgetting old workers failed"),
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
        let sleep_for = match (poll, last_beat) {
            (Some(p), Some(b)) => sleep_for
                .min(p.saturating_sub(last_tick.elapsed()))
                .min(p.saturating_sub(b.elapsed())),
            _ => sleep_for,
        };
        let until_prune = next_prune
            .min(next_prune_jobs)
            .min(next_forget)
            .saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(sleep_for.min(until_prune)) => {}
            _ = &mut changed => {}
            _ = shutdown_signalled(&mut shutdown) => return,
        }
    }
}

/// Deletes every finished job past its retention, a batch per commit (each its own
/// store call, so leases and acks go in between), until a batch comes back short.
async fn prune_finished(
    store: &Arc<dyn Store>,
    retention: Retention,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<u64, StoreError> {
    let cutoffs = retention.cutoffs(store.now());
    in_batches(PRUNE_BATCH, shutdown, || {
        store.prune_finished(cutoffs, PRUNE_BATCH)
    })
    .await
}

/// Deletes every event past its retention, the same way.
async fn prune_events(
    store: &Arc<dyn Store>,
    retention: Retention,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<u64, StoreError> {
    let before = retention.cutoffs(store.now()).events_before;
    let batch = kairos_store::events::PRUNE_EVENTS_BATCH;
    in_batches(batch, shutdown, || store.prune_events(before, batch)).await
}

/// Repeats `prune` (which deletes up to `batch`) until it deletes fewer, or shutdown
/// begins; answers the total.
async fn in_batches<F, Fut>(
    batch: u32,
    shutdown: &mut watch::Receiver<bool>,
    mut prune: F,
) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = prune().await?;
        total += n;
        if n < u64::from(batch) || *shutdown.borrow() {
            return Ok(total);
        }
    }
}
