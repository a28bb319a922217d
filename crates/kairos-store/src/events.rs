//! Pages of the event log, the same in every backend. Event ids are dense (each commit
//! numbers its events one after another), so a page looks through an id window: from
//! `after` (or just before the oldest event kept, whichever is later) to at most
//! [`EVENT_SCAN_WINDOW`] ids on. A filter that matches rarely so costs bounded work per
//! page, and `next_after` says how far the page looked.

use kairos_core::event::{EVENT_SCAN_WINDOW, Event, EventFilter, EventPage};

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
