//! Task operations: each keeps the task and its reminder job in step. A reminder is
//! scheduled before the task that needs it is saved, and an old one cancelled after: a
//! crash in between leaves at most an extra reminder, which the reminder worker finds
//! stale (its task is gone or reminds at another time) and drops. A reminder leased
//! before its task's save commits (one due at once, say) is not taken for stale: while
//! it is young the worker looks again shortly (`reminder.rs`, `SAVE_GRACE`). Each remind
//! time's job has a unique key, so a retried request never schedules two.

use crate::Tasks;
use crate::model::{Task, TaskPage, TaskPatch, TaskQuery, TaskRequest, TaskStatus};
use kairos_server::engine::{Engine, EngineError};
use kairos_store::StoreError;
use uuid::Uuid;

fn not_found() -> EngineError {
    EngineError::Store(StoreError::NotFound)
}

impl Tasks {
    /// Creates a task and schedules its reminder.
    pub async fn create(&self, engine: &Engine, req: TaskRequest) -> Result<Task, EngineError> {
        let mut task = req.validate(Uuid::now_v7(), crate::now(engine))?;
        task.reminder_job_id = Some(schedule(engine, &task).await?);
        self.store.insert_task(&task).await?;
        Ok(task)
    }

    /// One task.
    pub async fn task(&self, id: Uuid) -> Result<Task, EngineError> {
        self.store.task(id).await?.ok_or_else(not_found)
    }

    /// A page of tasks.
    pub async fn tasks(&self, query: TaskQuery) -> Result<TaskPage, EngineError> {
        Ok(self.store.tasks(&query.validate()?).await?)
    }

    /// Changes a task; a new remind time reschedules its reminder.
    pub async fn change(
        &self,
        engine: &Engine,
        id: Uuid,
        patch: TaskPatch,
    ) -> Result<Task, EngineError> {
        let before = self.task(id).await?;
        let mut next = patch.apply(&before, crate::now(engine))?;
        if next == before {
            return Ok(before);
        }
        if next.reminds_anew(Some(&before)) {
            next.reminder_job_id = Some(schedule(engine, &next).await?);
        }
        self.store.save_task(&next).await?;
        if before.reminder_job_id != next.reminder_job_id {
            cancel(engine, before.reminder_job_id).await;
        }
        Ok(next)
    }

    /// Marks a task done and cancels its reminder (again: harmless).
    pub async fn complete(&self, engine: &Engine, id: Uuid) -> Result<Task, EngineError> {
        let mut task = self.task(id).await?;
        if task.status != TaskStatus::Done {
            task.status = TaskStatus::Done;
            task.updated_at = crate::now(engine);
            self.store.save_task(&task).await?;
        }
        cancel(engine, task.reminder_job_id).await;
        Ok(task)
    }

    /// Deletes a task (and its notifications) and cancels its reminder.
    pub async fn delete(&self, engine: &Engine, id: Uuid) -> Result<(), EngineError> {
        let task = self.store.delete_task(id).await?.ok_or_else(not_found)?;
        cancel(engine, task.reminder_job_id).await;
        Ok(())
    }
}

/// Enqueues `task`'s reminder (or finds the one its unique key already holds).
async fn schedule(engine: &Engine, task: &Task) -> Result<Uuid, EngineError> {
    let enqueued = engine.enqueue(task.reminder(), None, None).await?;
    let (job, _created) = enqueued.jobs.into_iter().next().ok_or_else(|| {
        EngineError::Store(StoreError::Backend("an enqueue answered no job".into()))
    })?;
    Ok(job.id)
}

/// Cancels a reminder no longer wanted. Best effort: one that has finished, or that the
/// store cannot cancel now, is dropped by the reminder worker when it runs.
async fn cancel(engine: &Engine, job: Option<Uuid>) {
    let Some(id) = job else { return };
    match engine.cancel(id).await {
        Ok(_) | Err(EngineError::Store(StoreError::NotFound | StoreError::Conflict(_))) => {}
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "could not cancel a stale reminder; it will find its task moved on and do nothing");
        }
    }
}
