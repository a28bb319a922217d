//! Where tasks and notifications are kept: the feature's own tables, never the engine's.
//! With the embedded store they live in a SQLite file of their own beside the engine's
//! ([`SqliteTasks`]), so the feature's writes never queue behind the job writer; with
//! PostgreSQL, in tables of their own in the engine's schema ([`PostgresTasks`]), so every
//! node of a cluster shares them. Both pass one suite (`tests/it/store.rs`).
//!
//! What must hold whatever the backend: a notification exists at most once per (task,
//! remind time), and only while its task is open and still reminds at that time (the
//! check and the insert are one transaction, so a task changed at the same moment never
//! gets a stale one).

mod postgres;
mod sqlite;

pub use postgres::PostgresTasks;
pub use sqlite::SqliteTasks;

use crate::model::{
    Due, Notification, NotificationFilter, NotificationPage, Task, TaskFilter, TaskPage,
};
use async_trait::async_trait;
use kairos_core::Timestamp;
use kairos_store::StoreError;
use uuid::Uuid;

/// A notification as [`TaskStore::notify`] found or made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notified {
    /// The notification.
    pub notification: Notification,
    /// Its `notification.created` event is not known to be written yet.
    pub unannounced: bool,
}

/// The feature's storage.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Inserts a new task.
    async fn insert_task(&self, task: &Task) -> Result<(), StoreError>;

    /// One task.
    async fn task(&self, id: Uuid) -> Result<Option<Task>, StoreError>;

    /// Replaces the task with `task`'s id (`NotFound`: it is gone).
    async fn save_task(&self, task: &Task) -> Result<(), StoreError>;

    /// Deletes a task and its notifications; answers the task as it was.
    async fn delete_task(&self, id: Uuid) -> Result<Option<Task>, StoreError>;

    /// A page of tasks, soonest due first.
    async fn tasks(&self, filter: &TaskFilter) -> Result<TaskPage, StoreError>;

    /// The notification for `due`: made now (as `id`, at `now`) unless one exists
    /// for its (task, remind time) already, which is answered instead. `None`: the
    /// reminder is stale (its task is gone, done, or reminds at another time now).
    async fn notify(
        &self,
        due: &Due,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Notified>, StoreError>;

    /// Records that `id`'s `notification.created` event is written.
    async fn announced(&self, id: Uuid) -> Result<(), StoreError>;

    /// A page of notifications, newest first.
    async fn notifications(
        &self,
        filter: &NotificationFilter,
    ) -> Result<NotificationPage, StoreError>;

    /// Marks a notification read (at `now`, unless it was already); answers it.
    async fn read(&self, id: Uuid, now: Timestamp) -> Result<Option<Notification>, StoreError>;

    /// Marks every unread notification read at `now`; answers how many were.
    async fn read_all(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Releases the store's connections.
    async fn close(&self) {}
}
