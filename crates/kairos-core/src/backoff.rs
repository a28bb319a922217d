//! Backoff: how long a failed job waits before its next attempt. A pure function of the
//! attempt number (and, with jitter, of a random sample the caller supplies).

use crate::duration::Duration;
use serde::{Deserialize, Serialize};

/// The shape of the delay curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BackoffKind {
    /// `base * factor^(attempt-1)`.
    Exponential,
    /// `base * attempt`.
    Linear,
    /// Always `base`.
    Fixed,
}

/// A backoff policy, as stored on each job. Missing fields take the defaults
/// (`exponential`, `2s`, factor `2`, max `1h`, no jitter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backoff {
    /// The curve.
    #[serde(rename = "type")]
    pub kind: BackoffKind,
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Growth factor for `exponential`.
    pub factor: f64,
    /// Upper bound on any delay.
    pub max: Duration,
    /// Spread delays over `[d/2, d]` so failed jobs don't retry in lockstep.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: Duration::from_secs(2),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: false,
        }
    }
}

impl Backoff {
    /// How a background duty (a sink, a feature's subscriber) retries what keeps
    /// failing: 200 ms doubling to 30 s, with jitter so many never retry in step.
    pub fn reconnect() -> Backoff {
        Backoff {
            kind: BackoffKind::Exponential,
            base: Duration::from_millis(200),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: true,
        }
    }

    /// The delay after failed attempt number `attempt` (1-based). `sample` is a uniform
    /// random number in `[0, 1)`, used only when `jitter` is on.
    pub fn delay(&self, attempt: u32, sample: f64) -> Duration {
        let n = attempt.max(1);
        let base = self.base.as_millis() as f64;
        let raw = match self.kind {
            BackoffKind::Exponential => base * self.factor.powi((n - 1).min(1_000) as i32),
            BackoffKind::Linear => base * n as f64,
            BackoffKind::Fixed => base,
        };
        let capped = raw.min(self.max.as_millis() as f64);
        let ms = if self.jitter {
            capped / 2.0 + capped / 2.0 * sample.clamp(0.0, 1.0)
        } else {
            capped
        };
        Duration::from_millis(ms.max(0.0) as u64)
    }

    /// Checks the policy's numbers; returns a message per offending field.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(self.factor.is_finite() && (1.0..=100.0).contains(&self.factor)) {
            out.push(("factor", "must be a number from 1 to 100".to_string()));
        }
        if self.max < self.base {
            out.push(("max", "must not be less than base".to_string()));
        }
        if self.max > Duration::from_secs(30 * 86_400) {
            out.push(("max", "must be at most 30d".to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_doubles_from_two_seconds() {
        let b = Backoff::default();
        let got: Vec<u64> = (1..=4).map(|a| b.delay(a, 0.0).as_millis()).collect();
        assert_eq!(got, vec![2_000, 4_000, 8_000, 16_000]);
    }

    #[test]
    fn caps_at_max() {
        let b = Backoff::default();
        assert_eq!(b.delay(40, 0.0), Duration::from_secs(3600));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(3600));
    }

    #[test]
    fn linear_and_fixed() {
        let lin = Backoff {
            kind: BackoffKind::Linear,
            ..Backoff::default()
        };
        assert_eq!(lin.delay(3, 0.0), Duration::from_secs(6));
        let fixed = Backoff {
            kind: BackoffKind::Fixed,
            ..Backoff::default()
        };
        assert_eq!(fixed.delay(7, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let b = Backoff {
            jitter: true,
            ..Backoff::default()
        };
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(2, 0.999_999).as_millis(), 3_999);
    }
}
