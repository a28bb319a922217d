//! How a queue's limits are stored, the same in every backend: `max_depth` and
//! `concurrency` as integers, the rate as its text (`"100/s"`), each NULL when unset.
//! Reading them back refuses values no valid change could have written.

use crate::StoreError;
use kairos_core::QueueLimits;
use kairos_core::api::QueuePatch;

/// A queue's limits as three columns.
pub(crate) struct LimitColumns {
    pub max_depth: Option<i64>,
    pub concurrency: Option<i64>,
    pub rate: Option<String>,
}

impl LimitColumns {
    /// The columns of `limits`.
    pub(crate) fn of(limits: &QueueLimits) -> LimitColumns {
        LimitColumns {
            max_depth: limits.max_depth.map(|d| d.min(i64::MAX as u64) as i64),
            concurrency: limits.concurrency.map(i64::from),
            rate: limits.rate.map(|r| r.to_string()),
        }
    }

    /// The limits these columns hold, checked as a change would be.
    pub(crate) fn limits(self) -> Result<QueueLimits, StoreError> {
        let damaged = |what: &str| StoreError::Damaged(format!("a queue's stored {what}"));
        let max_depth = match self.max_depth {
            Some(d) => Some(u64::try_from(d).map_err(|_| damaged("max_depth"))?),
            None => None,
        };
        let concurrency = match self.concurrency {
            Some(c) => Some(u32::try_from(c).map_err(|_| damaged("concurrency"))?),
            None => None,
        };
        let patch = QueuePatch {
            paused: None,
            max_depth: Some(max_depth),
            concurrency: Some(concurrency),
            rate: Some(self.rate),
        };
        let change = patch.validate().map_err(|_| damaged("limits"))?;
        let mut q = kairos_core::Queue::new("");
        change.apply(&mut q);
        Ok(q.limits)
    }
}
