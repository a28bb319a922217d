//! Rates such as `1000/s`, `10/m` or `500/h`: a count per unit of time, with a burst of
//! one second's worth (at least one) unless told otherwise. The server's per-client rate
//! limit takes one (`--rate-limit`), and so does a queue's lease rate, counted in a
//! [`Bucket`] every backend keeps the same way.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A count of events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    /// Events allowed per period (at least 1).
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl Rate {
    /// The time between two events at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }

    /// One second's worth of events, at least one: the default burst.
    pub fn one_seconds_worth(&self) -> u32 {
        let per_second = u64::from(self.count) * 1000 / (self.per.as_millis().max(1) as u64);
        per_second.clamp(1, u64::from(u32::MAX)) as u32
    }

    /// Events per second, as a fraction.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

/// A token bucket for a [`Rate`]: it holds at most one second's worth of tokens (the
/// burst), refills continuously at the rate, and each event spends one whole token.
/// Backends store it (in memory or in a row) and ask it, so the arithmetic is the same
/// everywhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Tokens held when last counted (fractions accumulate towards the next token).
    pub tokens: f64,
    /// When they were counted.
    pub at: Timestamp,
}

impl Bucket {
    /// The bucket as of `now`: `kept` refilled for the time since it was counted, or a
    /// full one when there is none (a new limit, or a restart that forgot it).
    pub fn refilled(kept: Option<Bucket>, rate: Rate, now: Timestamp) -> Bucket {
        let burst = f64::from(rate.one_seconds_worth());
        match kept {
            Some(b) if b.at <= now => {
                let elapsed = now.duration_since(b.at).as_secs_f64();
                Bucket {
                    tokens: (b.tokens + elapsed * rate.per_second()).min(burst),
                    at: now,
                }
            }
            // A clock that went back: what was counted stands until it catches up.
            Some(b) => b,
            None => Bucket {
                tokens: burst,
                at: now,
            },
        }
    }

    /// Whole tokens held: how many events may happen now.
    pub fn whole(&self) -> u32 {
        self.tokens.max(0.0).floor().min(f64::from(u32::MAX)) as u32
    }

    /// Spends `n` tokens (never more than held).
    pub fn spend(&mut self, n: u32) {
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }

    /// When the next whole token is there (now, if one is).
    pub fn next_token_at(&self, rate: Rate) -> Timestamp {
        if self.tokens >= 1.0 {
            return self.at;
        }
        let missing = 1.0 - self.tokens.max(0.0);
        let micros = (missing / rate.per_second() * 1e6).ceil() as i64;
        self.at
            .checked_add(jiff::SignedDuration::from_micros(micros))
            .unwrap_or(self.at)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let why = || format!("{s:?} is not a rate like 1000/s, 10/m or 500/h");
        let (count, unit) = s.trim().split_once('/').ok_or_else(why)?;
        let count: u32 = count.trim().parse().map_err(|_| why())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(why()),
        };
        if count == 0 {
            return Err(format!("{s:?}: the count must be at least 1"));
        }
        Ok(Rate { count, per })
    }
}

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(s: String) -> Result<Rate, String> {
        s.parse()
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// In the OpenAPI document: `N/s`, `N/m` or `N/h`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::patterned_string(
            "^[0-9]+/[smh]$",
            "A rate: a count per second, minute or hour, with a burst of one second's worth.",
            &["100/s", "10/m"],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "1000/s".parse().unwrap();
        assert_eq!(
            (r.count, r.per, r.one_seconds_worth()),
            (1000, Duration::from_secs(1), 1000)
        );
        assert_eq!(r.interval(), Duration::from_millis(1));
        let m: Rate = "10/m".parse().unwrap();
        assert_eq!(
            (m.to_string(), m.one_seconds_worth()),
            ("10/m".to_string(), 1)
        );
        assert_eq!("120/m".parse::<Rate>().unwrap().one_seconds_worth(), 2);
        for bad in ["", "10", "0/s", "10/d", "-1/s", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_start_full_refill_at_the_rate_and_cap_at_the_burst() {
        let rate: Rate = "10/s".parse().unwrap();
        let t0: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut b = Bucket::refilled(None, rate, t0);
        assert_eq!(b.whole(), 10, "a new bucket holds one second's worth");
        b.spend(10);
        assert_eq!(
            (b.whole(), b.next_token_at(rate)),
            (0, t0 + jiff::SignedDuration::from_millis(100))
        );
        let later = Bucket::refilled(Some(b), rate, t0 + jiff::SignedDuration::from_millis(250));
        assert_eq!(later.whole(), 2, "2.5 tokens after 250 ms at 10/s");
        assert_eq!(
            later.next_token_at(rate),
            later.at,
            "a whole token is there now"
        );
        let idle = Bucket::refilled(Some(later), rate, t0 + jiff::SignedDuration::from_secs(60));
        assert_eq!(idle.whole(), 10, "never more than the burst");
        let slow: Rate = "30/m".parse().unwrap();
        let mut s = Bucket::refilled(None, slow, t0);
        assert_eq!(s.whole(), 1, "the burst of a slow rate is one");
        s.spend(1);
        assert_eq!(
            s.next_token_at(slow),
            t0 + jiff::SignedDuration::from_secs(2)
        );
        let back = Bucket::refilled(Some(s), slow, t0 - jiff::SignedDuration::from_secs(5));
        assert_eq!(back, s, "a clock that went back refills nothing");
    }
}
