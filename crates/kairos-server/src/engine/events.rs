//! The event log as the engine offers it: pages (`GET /v1/events`), tails that follow
//! the log as it grows (the stream) and end at shutdown, and the bus: subscriptions,
//! tails whose position is a stored cursor, so a subscriber (a sink, a feature) gets
//! every event in order at least once and resumes where it left off after a restart.
//!
//! A tail waits on the store's signal of newly readable events, never on a timer, except
//! that a store shared with other nodes (whose announcements are hints that may be lost)
//! is also looked at every `poll_interval`.

use super::{Engine, EngineError, shutdown_signalled};
use kairos_core::event::{Event, EventFilter, EventPage, EventQuery, NewEvent};
use kairos_store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::watch;

impl Engine {
    /// A page of the event log.
    pub async fn events(&self, query: EventQuery) -> Result<EventPage, EngineError> {
        let filter = query.validate()?;
        Ok(self.inner.store.events(filter).await?)
    }

    /// Appends a feature's events to the log, in order, as one commit (see
    /// [`kairos_core::event::NewEvent::feature`]).
    pub async fn emit(&self, events: Vec<NewEvent>) -> Result<(), EngineError> {
        Ok(self.inner.store.append_events(events).await?)
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

/// The longest subscriber name.
pub const MAX_SUBSCRIBER_NAME: usize = 200;

impl Engine {
    /// Subscribes `name` to the log (passing events through `filter`'s types and queue),
    /// from its stored cursor. A name never seen before starts with the oldest event the
    /// log still keeps: whatever was committed before the subscriber first ran (since
    /// the server started, say) is not skipped.
    pub async fn subscribe(
        &self,
        name: &str,
        filter: EventFilter,
    ) -> Result<Subscription, EngineError> {
        if name.is_empty() || name.len() > MAX_SUBSCRIBER_NAME {
            return Err(kairos_core::Invalid::field(
                "name",
                format!("must be 1 to {MAX_SUBSCRIBER_NAME} bytes"),
            )
            .into());
        }
        let store = &self.inner.store;
        let saved = store.cursor(name).await?.unwrap_or(0);
        Ok(Subscription {
            name: name.to_string(),
            tail: self.tail(filter, Some(saved)).await?,
            saved,
        })
    }
}

/// A durable subscriber's tail: [`Subscription::next`] gives events, and
/// [`Subscription::commit`] records that everything given so far is handled. Until then
/// a restart (or [`Subscription::rewind`]) gives them again.
pub struct Subscription {
    name: String,
    tail: Tail,
    saved: u64,
}

impl Subscription {
    /// The id after which events were handled, as last committed.
    pub fn committed(&self) -> u64 {
        self.saved
    }

    /// The next events after those already given (see [`Tail::next`]).
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, StoreError>> {
        self.tail.next().await
    }

    /// Records, durably, that every event given so far is handled.
    pub async fn commit(&mut self) -> Result<(), StoreError> {
        let upto = self.tail.cursor();
        if upto > self.saved {
            self.tail.store.save_cursor(&self.name, upto).await?;
            self.saved = upto;
        }
        Ok(())
    }

    /// Forgets what was given since the last commit: the next call gives it again.
    pub fn rewind(&mut self) {
        self.tail.cursor = self.saved;
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
