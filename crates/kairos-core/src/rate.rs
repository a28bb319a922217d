//! Rates such as `1000/s`, `10/m` or `500/h`: a count per unit of time, with a burst of
//! one second's worth (at least one) unless told otherwise. The server's per-client rate
//! limit takes one (`--rate-limit`).

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
}
