//! The built-in reminder worker: it leases reminder jobs through the engine (as any
//! worker would, over the same lease and ack calls), and for each whose task still
//! reminds at the job's time emits `task.due`. A stale reminder (its task gone, done,
//! or moved) completes without a word; one younger than [`SAVE_GRACE`] whose task does
//! not match yet is looked at again shortly, since it may have come before its task's
//! save. A reminder that runs twice (a lease that expired
//! after the event was written, a retry through the API) emits twice; the notifications
//! side makes one notification of them. Every node runs one: leasing is safe anywhere.

use crate::model::{Due, REMINDER_KIND, REMINDER_QUEUE, Reminder, TaskStatus};
use crate::store::TaskStore;
use kairos_core::Duration;
use kairos_core::api::{AckItem, AckRequest, LeaseRequest, LeasedJob, OutcomeKind};
use kairos_core::event::{EventType, NewEvent};
use kairos_server::engine::{Caller, Engine, EngineError};
use std::sync::Arc;

/// The name the built-in worker leases under (`GET /v1/workers` lists it).
pub const WORKER: &str = "kairos-tasks-reminders";
/// Reminders leased at once.
const BATCH: u32 = 32;
/// How long a lease request waits for reminders to come due.
const WAIT: Duration = Duration::from_secs(30);
/// A reminder's lease: far longer than handling one takes.
const LEASE: Duration = Duration::from_secs(60);
/// A reminder is scheduled before its task is saved (`tasks.rs`), so one leased at once
/// can come before that save commits: while it is this young, a task not found (or not
/// yet reminding at its time) is looked at again shortly instead of being taken as
/// stale. Older, it is stale (a crash between the two writes, a task moved on).
const SAVE_GRACE: Duration = Duration::from_secs(10);
/// The first look again after that, in milliseconds; doubled each attempt (0.1 s,
/// 0.2 s, … 6.4 s: seven attempts span the grace, well inside a reminder's
/// `max_attempts`).
const LOOK_AGAIN_MS: u64 = 100;

/// Leases and handles reminders until shutdown.
pub async fn run(engine: Engine, store: Arc<dyn TaskStore>) {
    // One name on every node and across restarts: the registry shows one entry for the
    // built-in worker, not one per start.
    let worker = WORKER.to_string();
    let caller = Caller {
        hostname: None,
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
    };
    let mut shutdown = engine.shutting_down();
    let mut retry = crate::Retry::new("leasing reminders");
    loop {
        if *shutdown.borrow() {
            return;
        }
        let request = LeaseRequest {
            queues: vec![REMINDER_QUEUE.to_string()],
            worker: worker.clone(),
            max: Some(BATCH),
            wait: Some(WAIT),
            lease: Some(LEASE),
        };
        match engine.lease(request, &caller).await {
            Ok(jobs) => {
                retry.recovered();
                for job in jobs {
                    handle(&engine, store.as_ref(), &worker, &caller, job).await;
                }
            }
            Err(e) => {
                if !retry.failed(&e, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Handles one leased reminder and reports it.
async fn handle(
    engine: &Engine,
    store: &dyn TaskStore,
    worker: &str,
    caller: &Caller,
    job: LeasedJob,
) {
    let mut item = AckItem::completed(job.job.id, job.lease_token);
    match remind(engine, store, &job).await {
        Ok(due) => {
            item.result = serde_json::value::to_raw_value(&serde_json::json!({ "due": due })).ok();
        }
        Err(Refused::Retry(error)) => {
            item.outcome = OutcomeKind::Failed;
            item.error = Some(error);
        }
        Err(Refused::NotYetSaved) => {
            item.outcome = OutcomeKind::Failed;
            item.error = Some("its task is not saved yet; looking again shortly".into());
            let doublings = job.job.attempt.saturating_sub(1).min(6);
            item.retry_in = Some(Duration::from_millis(LOOK_AGAIN_MS << doublings));
        }
        Err(Refused::Never(error)) => {
            item.outcome = OutcomeKind::Failed;
            item.error = Some(error);
            item.retry = Some(false);
        }
    }
    let ack = AckRequest {
        worker: worker.to_string(),
        results: vec![item],
    };
    // A report that does not land leaves the lease to expire: the reminder runs again,
    // and its second `task.due` makes no second notification.
    if let Err(e) = engine.ack(ack, caller).await {
        tracing::warn!(job = %job.job.id, error = %e, "could not report a reminder");
    }
}

enum Refused {
    /// Try again later (the task store failed).
    Retry(String),
    /// Its task's save may not have committed yet: look again shortly.
    NotYetSaved,
    /// Not a reminder this worker understands.
    Never(String),
}

/// Emits `task.due` if the reminder is still wanted; answers whether it was.
async fn remind(engine: &Engine, store: &dyn TaskStore, job: &LeasedJob) -> Result<bool, Refused> {
    if job.job.kind != REMINDER_KIND {
        return Err(Refused::Never(format!(
            "the queue {REMINDER_QUEUE} is reserved for {REMINDER_KIND} jobs"
        )));
    }
    let reminder: Reminder = serde_json::from_str(job.job.payload.get())
        .map_err(|e| Refused::Never(format!("not a reminder's payload: {e}")))?;
    let task = store
        .task(reminder.task_id)
        .await
        .map_err(|e| Refused::Retry(e.to_string()))?;
    let Some(task) =
        task.filter(|t| t.status == TaskStatus::Open && t.remind_at == reminder.remind_at)
    else {
        let age = crate::now(engine)
            .duration_since(job.job.created_at)
            .unsigned_abs();
        if age < SAVE_GRACE.as_std() {
            return Err(Refused::NotYetSaved);
        }
        return Ok(false);
    };
    let due = Due {
        task_id: task.id,
        title: task.title,
        due_at: task.due_at,
        remind_at: task.remind_at,
    };
    let event = NewEvent::feature(
        EventType::TaskDue,
        Some(REMINDER_QUEUE),
        Some(job.job.id),
        &due,
    );
    engine
        .emit(vec![event])
        .await
        .map_err(|e: EngineError| Refused::Retry(e.to_string()))?;
    Ok(true)
}
