//! Pages of a job listing, the same in every backend: newest first by the internal key,
//! `c<seq>` cursors, and a page that stops early once its payloads and results pass
//! [`MAX_PAGE_BYTES`] (500 jobs of 1 MiB each must not become one 500 MiB answer). A
//! search's page looks at [`SEARCH_WINDOW`] jobs at most, and goes on from the last one
//! it looked at ([`continue_search`]).

use crate::{StoreError, visible};
use kairos_core::api::JobPage;
use kairos_core::validate::{MAX_PAGE_BYTES, MAX_SEARCH_SCAN};
use kairos_core::{Job, Timestamp};

/// Jobs a search's page looks at, at most (newest first, after the other filters): the
/// work of one page is bounded however rare the matches are.
pub(crate) const SEARCH_WINDOW: u32 = MAX_SEARCH_SCAN;

/// A search page that ran out of matches: when it looked at a whole window (`looked`
/// jobs, down to the key `lowest`), older jobs remain, and its cursor goes on below them.
pub(crate) fn continue_search(page: &mut JobPage, looked: i64, lowest: Option<i64>) {
    if looked >= i64::from(SEARCH_WINDOW)
        && let Some(seq) = lowest
    {
        page.next_cursor = Some(format!("c{seq}"));
    }
}

/// The internal key a cursor continues after (exclusive).
pub(crate) fn cursor_seq(cursor: &str) -> Result<i64, StoreError> {
    cursor
        .strip_prefix('c')
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .ok_or(StoreError::InvalidCursor)
}

/// A page from rows `(seq, job)`, newest first, read with `LIMIT limit + 1`.
pub(crate) fn page(
    rows: impl Iterator<Item = Result<(i64, Job), StoreError>>,
    limit: usize,
    now: Timestamp,
) -> Result<JobPage, StoreError> {
    let mut kept: Vec<(i64, Job)> = Vec::new();
    let mut bytes = 0;
    let mut more = false;
    for row in rows {
        if kept.len() == limit || (bytes >= MAX_PAGE_BYTES && !kept.is_empty()) {
            more = true;
            break;
        }
        let (seq, job) = row?;
        bytes += job.payload.get().len() + job.result.as_ref().map_or(0, |r| r.get().len());
        kept.push((seq, job));
    }
    let next_cursor = if more {
        kept.last().map(|(seq, _)| format!("c{seq}"))
    } else {
        None
    };
    Ok(JobPage {
        jobs: kept.into_iter().map(|(_, j)| visible(j, now)).collect(),
        next_cursor,
    })
}
