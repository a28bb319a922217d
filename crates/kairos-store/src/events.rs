//! Pages of the event log and its stored form, the same in every backend.
//!
//! Event ids are dense (each commit numbers its events one after another), so a page
//! looks through an id window: from `after` (or just before the oldest event kept,
//! whichever is later) to at most [`EVENT_SCAN_WINDOW`] ids on. A filter that matches
//! rarely so costs bounded work per page, and `next_after` says how far the page looked.
//!
//! Each commit's events are stored as one row, a [`Batch`]: rows are what an insert
//! costs, and one commit carries many events (a batch of jobs enqueued, a group commit
//! of acks), so one row per commit keeps the log from doubling the queue's writes
//! (docs/performance.md, "What the event log costs"). Backends store the batch's
//! columns and hand rows back to a [`Collector`].

use crate::StoreError;
use kairos_core::Timestamp;
use kairos_core::event::{
    EVENT_SCAN_WINDOW, Event, EventFilter, EventPage, EventType, NewEvent, shown_data,
};
use serde_json::value::RawValue;
use uuid::Uuid;

/// The ids a page looks through: greater than `after`, at most `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub after: u64,
    pub upto: u64,
}

/// The window of `filter`'s page, given the oldest id kept (`None`: the log is empty).
pub(crate) fn window(filter: &EventFilter, oldest: Option<u64>) -> Window {
    let after = match oldest {
        Some(oldest) => filter.after.max(oldest.saturating_sub(1)),
        None => filter.after,
    };
    Window {
        after,
        upto: after.saturating_add(EVENT_SCAN_WINDOW),
    }
}

/// The page of `events` (read in `window`, oldest first, at most `filter.limit`), the
/// log's latest id being `head`.
pub(crate) fn page(
    filter: &EventFilter,
    window: Window,
    head: u64,
    events: Vec<Event>,
) -> EventPage {
    let last = events.last().map(|e| e.id);
    let next_after = match last {
        Some(last) if events.len() as u64 >= u64::from(filter.limit) => last,
        // Everything in the window up to the head was looked at. (The head is read
        // before the events, so events numbered in between may lie past it.)
        _ => window
            .upto
            .min(head)
            .max(filter.after)
            .max(last.unwrap_or(0)),
    };
    EventPage { events, next_after }
}

/// One event as a batch packs it: type code, time (µs), queue, job, schedule, data.
type Packed<Q, D> = (u8, i64, Option<Q>, Option<Uuid>, Option<Uuid>, D);

/// The events of one commit as stored: ids `last_id - count + 1` to `last_id` (the
/// backend numbers them), `events` a JSON array of [`Packed`] events in id order.
pub(crate) struct Batch {
    pub count: i64,
    /// The latest event's time: the batch is pruned once that is past retention.
    pub at: Timestamp,
    /// Bit `code` set for each event type in the batch ([`type_mask`]): filtered reads
    /// skip the other batches unread.
    pub types: i64,
    pub events: String,
}

/// Most events in one batch. A commit with more (a group commit of many big batches)
/// writes several: a page reads whole batches, so this bounds what a reader unpacks
/// beyond the events it answers with.
pub(crate) const MAX_BATCH_EVENTS: usize = 256;

impl Batch {
    /// The batches of a commit's `events`, in order (none when there are none).
    pub(crate) fn all_of(events: &[NewEvent]) -> Vec<Batch> {
        events
            .chunks(MAX_BATCH_EVENTS)
            .filter_map(Batch::of)
            .collect()
    }

    /// The batch of `events` (`None`: there are none).
    fn of(events: &[NewEvent]) -> Option<Batch> {
        let at = events.iter().map(|e| e.at).max()?;
        let packed: Vec<Packed<&str, &RawValue>> = events
            .iter()
            .map(|e| {
                let data: &RawValue = &e.data;
                let (queue, job, schedule) = (e.queue.as_deref(), e.job_id, e.schedule_id);
                (
                    e.kind.code(),
                    e.at.as_microsecond(),
                    queue,
                    job,
                    schedule,
                    data,
                )
            })
            .collect();
        Some(Batch {
            count: events.len() as i64,
            at,
            types: type_mask(events.iter().map(|e| e.kind)),
            // Numbers, strings, uuids and JSON already checked: serialising cannot fail.
            events: serde_json::to_string(&packed).unwrap_or_default(),
        })
    }
}

/// The mask of `types` as batches store it (bit `code` for each).
pub(crate) fn type_mask(types: impl IntoIterator<Item = EventType>) -> i64 {
    types.into_iter().fold(0, |m, t| m | 1i64 << t.code())
}

/// Gathers a page's events from batch rows read in id order.
pub(crate) struct Collector<'f> {
    filter: &'f EventFilter,
    window: Window,
    found: Vec<Event>,
}

impl<'f> Collector<'f> {
    pub(crate) fn new(filter: &'f EventFilter, window: Window) -> Self {
        Collector {
            filter,
            window,
            found: Vec::new(),
        }
    }

    /// The filter's type mask for the backend's query (`None`: every type).
    pub(crate) fn types(&self) -> Option<i64> {
        (!self.filter.types.is_empty()).then(|| type_mask(self.filter.types.iter().copied()))
    }

    /// Takes the events of the batch `first_id..=last_id` (packed as `events`) that lie
    /// in the window and pass the filter; answers whether the page is full.
    pub(crate) fn add(
        &mut self,
        first_id: i64,
        last_id: i64,
        events: &str,
    ) -> Result<bool, StoreError> {
        for e in unpack(first_id, last_id, events)? {
            let in_window = e.id > self.window.after && e.id <= self.window.upto;
            if in_window && self.filter.admits(e.kind, e.queue.as_deref()) {
                self.found.push(e);
                if self.found.len() >= self.filter.limit as usize {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    pub(crate) fn into_events(self) -> Vec<Event> {
        self.found
    }
}

/// The events of the batch row `first_id..=last_id` packed as `text`.
fn unpack(first_id: i64, last_id: i64, text: &str) -> Result<Vec<Event>, StoreError> {
    let damaged = |what: String| StoreError::Damaged(format!("event batch {last_id}: {what}"));
    let packed: Vec<Packed<String, Box<RawValue>>> =
        serde_json::from_str(text).map_err(|e| damaged(e.to_string()))?;
    if last_id - first_id + 1 != packed.len() as i64 || first_id < 1 {
        return Err(damaged(format!(
            "{} events for ids {first_id} to {last_id}",
            packed.len()
        )));
    }
    packed
        .into_iter()
        .zip(first_id as u64..)
        .map(|((code, at, queue, job_id, schedule_id, data), id)| {
            let kind = EventType::from_code(code)
                .ok_or_else(|| damaged(format!("unknown event type code {code}")))?;
            let at = Timestamp::from_microsecond(at)
                .map_err(|e| damaged(format!("event {id}'s time: {e}")))?;
            let stored = String::from(Box::<str>::from(data));
            let data = shown_data(kind, job_id, queue.as_deref(), stored)
                .map_err(|e| damaged(format!("event {id}'s data: {e}")))?;
            Ok(Event {
                id,
                kind,
                at,
                queue,
                job_id,
                schedule_id,
                data,
            })
        })
        .collect()
}

/// Events pruned per commit.
pub const PRUNE_EVENTS_BATCH: u32 = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::event::EventQuery;

    fn filter(after: u64, limit: u32) -> EventFilter {
        EventQuery {
            after: Some(after),
            limit: Some(limit),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn a_window_starts_at_the_oldest_kept_and_spans_the_scan_window() {
        assert_eq!(
            window(&filter(0, 10), Some(5_000)),
            Window {
                after: 4_999,
                upto: 4_999 + EVENT_SCAN_WINDOW
            }
        );
        assert_eq!(
            window(&filter(7_000, 10), Some(5_000)),
            Window {
                after: 7_000,
                upto: 7_000 + EVENT_SCAN_WINDOW
            }
        );
        assert_eq!(window(&filter(3, 10), None).after, 3);
    }

    #[test]
    fn the_next_page_starts_after_what_this_one_looked_at() {
        let f = filter(0, 2);
        let w = window(&f, Some(1));
        // Nothing matched: the page looked up to the head.
        assert_eq!(page(&f, w, 40, vec![]).next_after, 40);
        // A head past the window: up to the window's end.
        assert_eq!(page(&f, w, u64::MAX, vec![]).next_after, EVENT_SCAN_WINDOW);
        // A client ahead of the head stays where it is.
        let ahead = filter(90, 2);
        assert_eq!(
            page(&ahead, window(&ahead, Some(1)), 40, vec![]).next_after,
            90
        );
    }
}
