//! Durations as the API writes them: `250ms`, `30s`, `5m`, `2h`, `1h30m`, `1d`.
//!
//! One type serves requests, responses and storage, so a duration always reads back
//! the way it is written (canonical form: largest units first, zero parts left out).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A non-negative span of time with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it like 250ms, 30s, 5m, 2h or 1h30m)")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// Whole milliseconds.
    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }

    /// The same span as a standard library duration.
    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// The same span as a signed duration, for timestamp arithmetic.
    pub fn as_signed(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_millis(i64::try_from(self.as_millis()).unwrap_or(i64::MAX))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        // Truncate to the millisecond: that is the precision the API speaks.
        Duration::from_millis(d.as_millis() as u64)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let bytes = input.as_bytes();
        let mut i = 0;
        let mut total_ms: u64 = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err("expected a number"));
            }
            let n: u64 = input[start..i]
                .parse()
                .map_err(|_| err("number too large"))?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit_ms: u64 = match &input[ustart..i] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let part = n.checked_mul(unit_ms).ok_or_else(|| err("too large"))?;
            total_ms = total_ms.checked_add(part).ok_or_else(|| err("too large"))?;
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl Duration {
    /// Writes the canonical form into `buf` and returns it. Hand-rolled because every job
    /// answer carries three durations: through `fmt` they cost more than the job's insert.
    fn format<'b>(&self, buf: &'b mut [u8; 48]) -> &'b str {
        let mut ms = self.as_millis();
        let mut len = 0;
        if ms == 0 {
            buf[..2].copy_from_slice(b"0s");
            len = 2;
        }
        for (unit, size) in [("h", 3_600_000u64), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                let mut n = ms / size;
                ms %= size;
                let mut digits = [0u8; 20];
                let mut d = digits.len();
                while n > 0 || d == digits.len() {
                    d -= 1;
                    digits[d] = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                let part = &digits[d..];
                buf[len..len + part.len()].copy_from_slice(part);
                len += part.len();
                buf[len..len + unit.len()].copy_from_slice(unit.as_bytes());
                len += unit.len();
            }
        }
        std::str::from_utf8(&buf[..len]).expect("ASCII")
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format(&mut [0; 48]))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.format(&mut [0; 48]))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// In the OpenAPI document: a string of numbers with units, as the parser takes it.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Duration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::patterned_string(
            "^([0-9]+(ms|s|m|h|d))+$",
            "A duration: numbers with units ms, s, m, h, d, summed (`250ms`, `30s`, `1h30m`, `2d`).",
            &["30s", "1h30m"],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Duration {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (s, ms) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("0s", 0),
            ("1d", 86_400_000),
            ("1s500ms", 1_500),
        ] {
            assert_eq!(s.parse::<Duration>().unwrap().as_millis(), ms, "{s}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for s in [
            "",
            "30",
            "s",
            "3x",
            "1.5s",
            "-1s",
            " 1s",
            "1s ",
            "99999999999999999999s",
        ] {
            assert!(s.parse::<Duration>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (ms, s) in [
            (0, "0s"),
            (1_500, "1s500ms"),
            (5_400_000, "1h30m"),
            (90_000, "1m30s"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(d.to_string(), s);
            assert_eq!(s.parse::<Duration>().unwrap(), d);
        }
    }
}
