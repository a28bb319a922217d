//! When and how long the client waits before trying a call again.
//!
//! A call is tried again when the server could not be reached, or answered 429 or 503
//! (too busy, shutting down, its database away), after an exponential backoff with full
//! jitter, or after the server's `Retry-After` when that is longer. Only calls that are
//! safe to repeat are repeated: reads, acks and heartbeats (repeating one is harmless by
//! the API's contract), leases, and enqueues, which always carry an `Idempotency-Key` so
//! a repeat answers the first one's jobs instead of creating them again.

use std::time::Duration;

/// How a [`crate::Client`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub attempts: u32,
    /// The backoff before the first retry; it doubles with each attempt.
    pub base: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 100 ms doubling up to 5 s: about 15 s of trying in all.
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Never retry: every failure is the caller's at once.
    pub const NEVER: RetryPolicy = RetryPolicy {
        attempts: 1,
        base: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// How long to wait after failed attempt number `attempt` (1-based), given the
    /// server's `Retry-After` if it sent one; `jitter` in `[0, 1)`.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        // Full jitter: many clients failing together do not come back together.
        let backoff = exp.mul_f64(jitter.clamp(0.0, 1.0));
        backoff
            .max(retry_after.unwrap_or(Duration::ZERO))
            .min(self.max_delay)
    }
}

/// Whether an answer with `status` is worth trying again.
pub(crate) fn retryable_status(status: u16) -> bool {
    // 502 and 504 come from a proxy whose server is away (Kairos itself never sends them).
    matches!(status, 429 | 502 | 503 | 504)
}

/// The `Retry-After` of an answer, in seconds (the form Kairos sends; an HTTP date is
/// ignored and the backoff used instead).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_the_cap_and_is_jittered() {
        let p = RetryPolicy::default();
        let first = p.delay(1, None, 0.999_999);
        assert!(first > Duration::from_millis(99) && first < Duration::from_millis(100));
        assert_eq!(p.delay(3, None, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(30, None, 0.5), Duration::from_millis(2_500));
        assert_eq!(p.delay(u32::MAX, None, 0.5), Duration::from_millis(2_500));
        assert_eq!(p.delay(2, None, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60)), 0.5),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn only_busy_and_unavailable_answers_are_retried() {
        for s in [429, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 404, 409, 413, 422, 500, 507] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
