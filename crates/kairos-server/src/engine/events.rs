//! The event log as the engine offers it: pages (`GET /v1/events`), and tails that follow
//! the log as it grows (the stream, the bus) and end at shutdown.
//!
//! A tail waits on the store's signal of newly readable events, never on a timer, except
//! that a store shared with other nodes (whose announcements are hints that may be lost)
//! is also looked at every `poll_interval`.

use super::{Engine, EngineError, shutdown_signalled};
use kairos_core::event::{Event, EventFilter, EventPage, EventQuery};
use kairos_store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::watch;

impl Engine {
    /// A page of the event log.
    pub async fn events(&self, query: EventQuery) -> Result<EventPage, EngineError> {
        let filter = query.validate()?;
        Ok(self.inner.store.events(filter).await?)
    }

    /// Follows the log from `after` (`None`: from now, new events only), passing events
    /// through `filter`'s types and queue.
    pub async fn tail(&self, filter: EventFilter, after: Option<u64>) -> Result<Tail, EngineError> {
        let store = self.inner.store.clone();
        // Watched before the start is read, so nothing committed in between is missed.
        let seen = store.signals().watch_events();
        let cursor = match after {
            Some(after) => after,
            None => store.last_event_id().await?,
        };
        Ok(Tail {
            store,
            filter,
            cursor,
            seen,
            shutdown: self.inner.shutdown.subscribe(),
        })
    }
}

/// A follower of the event log.
pub struct Tail {
    store: Arc<dyn Store>,
    filter: EventFilter,
    cursor: u64,
    seen: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Tail {
    /// The id the tail continues after.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next events, oldest first (never empty), once there are some; `None` at
    /// shutdown. A store failure ends the tail with the error (its follower resumes from
    /// [`Tail::cursor`]).
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, StoreError>> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            self.seen.borrow_and_update();
            let mut filter = self.filter.clone();
            filter.after = self.cursor;
            let page = match self.store.events(filter).await {
                Ok(page) => page,
                Err(e) => return Some(Err(e)),
            };
            let moved = page.next_after != self.cursor;
            self.cursor = self.cursor.max(page.next_after);
            if !page.events.is_empty() {
                return Some(Ok(page.events));
            }
            if moved {
                continue; // a window the filters passed over: look at the next
            }
            let poll = self.store.poll_interval();
            let seen = &mut self.seen;
            let changed = async move {
                match poll {
                    Some(p) => {
                        let _ = tokio::time::timeout(p, seen.changed()).await;
                    }
                    None => {
                        let _ = seen.changed().await;
                    }
                }
            };
            tokio::select! {
                _ = changed => {}
                _ = shutdown_signalled(&mut self.shutdown) => return None,
            }
        }
    }
}
