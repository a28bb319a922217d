//! The notifications side: a durable subscriber of the bus (`tasks:notifications`)
//! that makes a notification of each `task.due`, once per (task, remind time) however
//! often the event comes, and announces each as `notification.created` (the live stream
//! follows those). Its cursor is committed after a page is handled, so a crash handles
//! that page again: the store finds the notifications made, and announces only those
//! not known to be announced (at least once: a crash between an announcement and its
//! record announces it again, with the same notification id). On a shared store only
//! the node leading the background duties runs it.

use crate::Tasks;
use crate::model::{Due, NotificationFilter, NotificationPage, NotificationQuery};
use crate::store::TaskStore;
use kairos_core::event::{Event, EventQuery, EventType, NewEvent};
use kairos_server::engine::{Engine, EngineError};
use kairos_store::StoreError;
use std::sync::Arc;
use uuid::Uuid;

/// The subscriber's cursor name.
pub const SUBSCRIBER: &str = "tasks:notifications";

/// Follows the bus while this node leads, until shutdown.
pub async fn run(engine: Engine, store: Arc<dyn TaskStore>) {
    let mut shutdown = engine.shutting_down();
    let mut leading = engine.leading();
    let mut retry = crate::Retry::new("making notifications");
    loop {
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let ended = tokio::select! {
            ended = follow(&engine, store.as_ref(), &mut retry) => ended,
            _ = leading.wait_for(|l| !*l) => Ok(()),
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if let Err(e) = ended
            && !retry.failed(&e, &mut shutdown).await
        {
            return;
        }
    }
}

/// Handles `task.due` events from the subscriber's cursor on; ends at shutdown or on a
/// failure (the caller retries from the cursor).
async fn follow(
    engine: &Engine,
    store: &dyn TaskStore,
    retry: &mut crate::Retry,
) -> Result<(), EngineError> {
    let filter = EventQuery {
        types: Some(EventType::TaskDue.as_str().to_string()),
        ..EventQuery::default()
    }
    .validate()?;
    let mut sub = engine.subscribe(SUBSCRIBER, filter).await?;
    while let Some(events) = sub.next().await {
        for event in events? {
            notify(engine, store, &event).await?;
        }
        sub.commit().await?;
        retry.recovered();
    }
    Ok(())
}

/// Makes (or finds) the notification of one `task.due`, and announces it unless it is
/// known to be announced.
async fn notify(engine: &Engine, store: &dyn TaskStore, event: &Event) -> Result<(), EngineError> {
    let Ok(due) = serde_json::from_str::<Due>(event.data.get()) else {
        tracing::warn!(
            event = event.id,
            "a task.due event without a task's data; skipped"
        );
        return Ok(());
    };
    let Some(made) = store
        .notify(&due, Uuid::now_v7(), crate::now(engine))
        .await?
    else {
        return Ok(()); // stale: the task moved on
    };
    if made.unannounced {
        let n = &made.notification;
        engine
            .emit(vec![NewEvent::feature(
                EventType::NotificationCreated,
                None,
                None,
                n,
            )])
            .await?;
        store.announced(n.id).await?;
    }
    Ok(())
}

impl Tasks {
    /// A page of notifications.
    pub async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<NotificationPage, EngineError> {
        let filter: NotificationFilter = query.validate()?;
        Ok(self.store.notifications(&filter).await?)
    }

    /// Marks a notification read.
    pub async fn read(
        &self,
        engine: &Engine,
        id: Uuid,
    ) -> Result<crate::model::Notification, EngineError> {
        self.store
            .read(id, crate::now(engine))
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound))
    }

    /// Marks every notification read; answers how many were unread.
    pub async fn read_all(&self, engine: &Engine) -> Result<u64, EngineError> {
        Ok(self.store.read_all(crate::now(engine)).await?)
    }
}
