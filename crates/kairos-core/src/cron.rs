//! Cron expressions: parsing, and the next matching wall-clock (civil) time.
//!
//! Syntax: five fields (`minute hour day-of-month month day-of-week`) or six with a
//! leading seconds field; `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
//! `a,b`, month and weekday names (`JAN`, `MON`, case-insensitive), `7` as Sunday, and the
//! macros `@yearly @annually @monthly @weekly @daily @midnight @hourly`. When both
//! day-of-month and day-of-week are restricted, a day matching either fires (Vixie cron:
//! a field counts as unrestricted when it starts with `*`).
//!
//! Matching here is on civil time only; [`crate::timetable`] maps civil times to instants
//! in a time zone, with the daylight-saving policies.

use jiff::civil::{Date, DateTime, Time};
use std::fmt;
use std::str::FromStr;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_star: bool,
    weekdays_star: bool,
    source: String,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    expr: String,
    reason: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead a search for the next match goes before concluding there is none
/// (covers leap days: `0 0 29 2 *` matches once in up to eight years).
const SEARCH_YEARS: i16 = 9;

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_from: u32,
}

const SECOND: FieldSpec = FieldSpec {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DAY: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &WEEKDAYS,
    names_from: 0,
};

fn value(spec: &FieldSpec, s: &str) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + spec.names_from);
    }
    let v: u32 = s.parse().map_err(|_| {
        format!(
            "{}: {s:?} is not a number{}",
            spec.name,
            if spec.names.is_empty() {
                ""
            } else {
                " or a name"
            }
        )
    })?;
    if v < spec.min || v > spec.max {
        return Err(format!(
            "{}: {v} is outside {}-{}",
            spec.name, spec.min, spec.max
        ));
    }
    Ok(v)
}

/// Parses one field into a bit set (bit n = value n).
fn field(spec: &FieldSpec, text: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(format!("{}: empty list item", spec.name));
        }
        let values = spec.max - spec.min + 1;
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| (1..=values).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "{}: step {s:?} must be a number from 1 to {values}",
                            spec.name
                        )
                    })?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(spec, a)?, value(spec, b)?);
            if a > b {
                return Err(format!("{}: range {range:?} runs backwards", spec.name));
            }
            (a, b)
        } else {
            let a = value(spec, range)?;
            // `a/n` means from a to the end, every n (as in Vixie cron).
            (a, if part.contains('/') { spec.max } else { a })
        };
        // `step_by` cannot wrap, whatever the step.
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let masked = bits & (!0u64 << from);
    (masked != 0).then(|| masked.trailing_zeros())
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(input: &str) -> Result<Cron, CronError> {
        let err = |reason: String| CronError {
            expr: input.to_string(),
            reason,
        };
        let text = input.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => {
                return Err(err(format!(
                    "unknown macro {text:?}; one of @yearly @annually @monthly @weekly @daily @midnight @hourly"
                )));
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(err(format!(
                    "expected 5 fields (or 6 with seconds), found {n}"
                )));
            }
        };
        let weekdays = field(&WEEKDAY, rest[4]).map_err(err)?;
        let weekdays = ((weekdays | (weekdays >> 7)) & 0x7F) as u8;
        let cron = Cron {
            seconds: field(&SECOND, sec).map_err(err)?,
            minutes: field(&MINUTE, rest[0]).map_err(err)?,
            hours: field(&HOUR, rest[1]).map_err(err)? as u32,
            days: field(&DAY, rest[2]).map_err(err)? as u32,
            months: field(&MONTH, rest[3]).map_err(err)? as u16,
            weekdays,
            days_star: rest[2].starts_with('*'),
            weekdays_star: rest[4].starts_with('*'),
            source: text.to_string(),
        };
        if cron
            .next_after(DateTime::constant(2000, 1, 1, 0, 0, 0, 0))
            .is_none()
        {
            return Err(err("it never fires (no date matches)".to_string()));
        }
        Ok(cron)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Cron {
    /// Whether the expression has a seconds field that fires more than once a minute.
    pub fn has_seconds(&self) -> bool {
        self.seconds != 1
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether civil time `t` (to the second) matches.
    pub fn matches(&self, t: DateTime) -> bool {
        t.subsec_nanosecond() == 0
            && self.months & (1 << t.month()) != 0
            && self.day_matches(t.date())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.seconds & (1 << t.second()) != 0
    }

    /// The first matching civil time strictly after `t`, if any within nine years.
    pub fn next_after(&self, t: DateTime) -> Option<DateTime> {
        let limit = t.year().saturating_add(SEARCH_YEARS);
        // Start at the next whole second.
        let mut date = t.date();
        let mut time = Time::new(t.hour(), t.minute(), t.second(), 0).ok()?;
        let (mut h, mut m, mut s) = (
            time.hour() as u32,
            time.minute() as u32,
            time.second() as u32 + 1,
        );
        loop {
            if date.year() > limit {
                return None;
            }
            if self.months & (1 << date.month()) == 0 {
                // First day of the next month.
                date = date
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.tomorrow().ok()?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            if s > 59 {
                (m, s) = (m + 1, 0);
            }
            if m > 59 {
                (h, m) = (h + 1, 0);
            }
            let Some(hh) = next_bit(self.hours as u64, h).filter(|x| *x <= 23) else {
                date = date.tomorrow().ok()?;
                (h, m, s) = (0, 0, 0);
                continue;
            };
            if hh != h {
                (h, m, s) = (hh, 0, 0);
            }
            let Some(mm) = next_bit(self.minutes, m).filter(|x| *x <= 59) else {
                (h, m, s) = (h + 1, 0, 0);
                if h > 23 {
                    date = date.tomorrow().ok()?;
                    (h, m, s) = (0, 0, 0);
                }
                continue;
            };
            if mm != m {
                (m, s) = (mm, 0);
            }
            let Some(ss) = next_bit(self.seconds, s).filter(|x| *x <= 59) else {
                (m, s) = (m + 1, 0);
                continue;
            };
            time = Time::new(h as i8, m as i8, ss as i8, 0).ok()?;
            return Some(date.to_datetime(time));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DateTime {
        s.parse().unwrap()
    }

    fn nexts(expr: &str, from: &str, n: usize) -> Vec<String> {
        let c: Cron = expr.parse().unwrap();
        let mut t = dt(from);
        (0..n)
            .map(|_| {
                t = c.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn weekdays_at_nine() {
        assert_eq!(
            nexts("0 9 * * 1-5", "2026-11-20T10:00", 3),
            [
                "2026-11-23T09:00:00",
                "2026-11-24T09:00:00",
                "2026-11-25T09:00:00"
            ]
        );
        assert_eq!(
            nexts("0 9 * * MON-FRI", "2026-11-20T08:00", 1),
            ["2026-11-20T09:00:00"]
        );
    }

    #[test]
    fn seconds_field_and_steps() {
        assert_eq!(
            nexts("*/20 * * * * *", "2026-01-01T00:00:50", 3),
            [
                "2026-01-01T00:01:00",
                "2026-01-01T00:01:20",
                "2026-01-01T00:01:40"
            ]
        );
        assert_eq!(
            nexts("*/15 * * * *", "2026-01-01T23:50", 2),
            ["2026-01-02T00:00:00", "2026-01-02T00:15:00"]
        );
        assert_eq!(
            nexts("5/20 * * * *", "2026-01-01T00:00", 3),
            [
                "2026-01-01T00:05:00",
                "2026-01-01T00:25:00",
                "2026-01-01T00:45:00"
            ]
        );
    }

    #[test]
    fn macros_and_names() {
        assert_eq!(
            nexts("@yearly", "2026-06-01T00:00", 1),
            ["2027-01-01T00:00:00"]
        );
        assert_eq!(
            nexts("@monthly", "2026-01-31T00:00", 1),
            ["2026-02-01T00:00:00"]
        );
        assert_eq!(
            nexts("@weekly", "2026-11-22T00:00", 1),
            ["2026-11-29T00:00:00"]
        );
        assert_eq!(
            nexts("@hourly", "2026-11-22T10:30", 1),
            ["2026-11-22T11:00:00"]
        );
        assert_eq!(
            nexts("0 0 1 jan,Jul *", "2026-02-01T00:00", 1),
            ["2026-07-01T00:00:00"]
        );
        assert_eq!(
            nexts("0 0 * * 7", "2026-11-22T00:00", 1),
            ["2026-11-29T00:00:00"],
            "7 is Sunday"
        );
    }

    #[test]
    fn steps_cannot_wrap() {
        // A step as large as the field fires once, at the start.
        assert_eq!(
            nexts("5/60 * * * *", "2026-01-01T00:00", 2),
            ["2026-01-01T00:05:00", "2026-01-01T01:05:00"]
        );
        let msg = "5/4294967295 * * * *"
            .parse::<Cron>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("from 1 to 60"), "{msg}");
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 13th, or any Friday.
        assert_eq!(
            nexts("0 0 13 * FRI", "2026-11-01T00:00", 4),
            [
                "2026-11-06T00:00:00",
                "2026-11-13T00:00:00",
                "2026-11-20T00:00:00",
                "2026-11-27T00:00:00"
            ]
        );
        // `*` in day-of-week: only day-of-month counts.
        assert_eq!(
            nexts("0 0 13 * *", "2026-11-01T00:00", 1),
            ["2026-11-13T00:00:00"]
        );
    }

    #[test]
    fn leap_day_and_never() {
        assert_eq!(
            nexts("0 0 29 2 *", "2026-01-01T00:00", 1),
            ["2028-02-29T00:00:00"]
        );
        assert!("0 0 30 2 *".parse::<Cron>().is_err());
        assert!("0 0 31 4 *".parse::<Cron>().is_err());
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5/4294967295 * * * *",
            "3/4294967295 * * * * *",
            "*/61 * * * *",
            "0 */25 * * *",
            "*/99999999999 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "* * * FOO *",
            "@often",
            "1,,2 * * * *",
        ] {
            let e = bad.parse::<Cron>();
            assert!(e.is_err(), "{bad:?} should be refused");
        }
        let msg = "61 * * * *".parse::<Cron>().unwrap_err().to_string();
        assert!(msg.contains("minute"), "{msg}");
    }
}
