//! Validation rules: names, sizes and ranges, reported per field so the HTTP edge can name
//! the offending field (`jobs[3].kind`). The limits live here, in one place.

use crate::duration::Duration;
use std::fmt;

/// Largest `limit` a job listing accepts.
pub const MAX_LIST_LIMIT: u32 = 500;
/// A listing page stops adding jobs once their payloads and results reach this many
/// bytes (it holds at least one job, and gives `next_cursor` for the rest).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Longest job search text (`q`), in bytes.
pub const MAX_SEARCH_LEN: usize = 128;
/// Most jobs one page of a search looks at (newest first, after the other filters): past
/// them the page ends, and its cursor goes on from there.
pub const MAX_SEARCH_SCAN: u32 = 10_000;
/// Largest `max` a lease request accepts.
pub const MAX_LEASE_MAX: u32 = 1000;
/// Longest long-poll `wait` of a lease request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most jobs in one batch enqueue, and most items in one ack or heartbeat.
pub const MAX_BATCH: usize = 1000;
/// Longest lease, heartbeat extension or job timeout.
pub const MAX_LEASE: Duration = Duration::from_secs(7 * 86_400);
/// Longest `delay` of an enqueue (ten years).
pub const MAX_DELAY: Duration = Duration::from_secs(3650 * 86_400);
/// Longest worker name.
pub const MAX_WORKER_LEN: usize = 256;
/// Highest `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 10_000;
/// Priority bounds (inclusive).
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -100..=100;
/// Longest queue, kind or tag name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest unique key.
pub const MAX_UNIQUE_KEY_LEN: usize = 255;
/// Most tags on one job.
pub const MAX_TAGS: usize = 32;
/// Longest error message kept per failed attempt (longer ones are cut, not refused).
pub const MAX_ERROR_LEN: usize = 16 * 1024;
/// Most failed attempts kept in a job's `errors` (the most recent ones; `failures`
/// counts them all).
pub const MAX_ERRORS_KEPT: usize = 20;
/// Most queues one lease request may name.
pub const MAX_LEASE_QUEUES: usize = 100;
/// Deepest nesting of arrays and objects in a payload or result. Answers wrap payloads a
/// few levels deeper (`{"jobs":[{"payload":…}]}`), and common parsers stop at 128 levels
/// (serde_json) or overflow their stack: 64 leaves room for both.
pub const MAX_JSON_DEPTH: usize = 64;

/// Limits an operator may configure.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload (or result) in bytes; larger ones are refused with 413.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// What kind of problem a field has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// Missing, malformed or out of range.
    Invalid,
    /// Over a configured size limit.
    TooLarge,
}

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, like `jobs[3].kind`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
    /// Invalid or too large.
    pub kind: FieldErrorKind,
}

/// A request refused for one or more fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// A single-field refusal.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
            kind: FieldErrorKind::Invalid,
        }])
    }

    /// Whether any field is over a size limit (the whole request is then "too large").
    pub fn is_too_large(&self) -> bool {
        self.0.iter().any(|e| e.kind == FieldErrorKind::TooLarge)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Collects field errors under a path prefix (`""` or `jobs[3].`).
#[derive(Debug)]
pub struct Checker<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    /// A checker naming fields under `prefix`.
    pub fn new(prefix: &'a str) -> Self {
        Checker {
            prefix,
            errors: Vec::new(),
        }
    }

    /// Records a problem with `field`.
    pub fn invalid(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, message.into(), FieldErrorKind::Invalid);
    }

    /// Records a size-limit problem with `field`.
    pub fn too_large(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, message.into(), FieldErrorKind::TooLarge);
    }

    fn push(&mut self, field: &str, message: String, kind: FieldErrorKind) {
        self.errors.push(FieldError {
            field: format!("{}{}", self.prefix, field),
            message,
            kind,
        });
    }

    /// Checks a queue, kind or worker name: `[A-Za-z0-9_.:-]{1,128}`.
    pub fn name(&mut self, field: &str, value: &str) {
        if let Err(m) = check_name(value) {
            self.invalid(field, m);
        }
    }

    /// Checks a worker's self-chosen name: 1 to 256 bytes, no control characters (looser
    /// than queue names: `worker-7@host`, `pid 1234` are fine).
    pub fn worker(&mut self, field: &str, value: &str) {
        if value.is_empty() || value.len() > MAX_WORKER_LEN || value.chars().any(char::is_control) {
            self.invalid(
                field,
                format!("must be 1 to {MAX_WORKER_LEN} bytes without control characters"),
            );
        }
    }

    /// Checks that a JSON value nests at most [`MAX_JSON_DEPTH`] levels deep.
    pub fn json_depth(&mut self, field: &str, json: &str) {
        if json_depth(json) > MAX_JSON_DEPTH {
            self.invalid(
                field,
                format!("nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"),
            );
        }
    }

    /// Checks a duration against an inclusive range.
    pub fn duration(&mut self, field: &str, d: Duration, min: Duration, max: Duration) {
        if d < min || d > max {
            self.invalid(field, format!("must be from {min} to {max}"));
        }
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<(), Invalid> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.errors))
        }
    }

    /// Moves this checker's errors into `all`.
    pub fn drain_into(self, all: &mut Vec<FieldError>) {
        all.extend(self.errors);
    }
}

/// How deeply arrays and objects nest in `json` (valid JSON text): `1` for `[]` or `{}`,
/// `0` for a scalar. One pass over the bytes, without parsing.
pub fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The rule for queue, kind and worker names: `[A-Za-z0-9_.:-]{1,128}`.
pub fn check_name(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err("may only contain letters, digits and _ . : -".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_ignores_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth("{}"), 1);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(json_depth(r#"["[[[[", "\"", "\\", {"x": "}}}"}]"#), 2);
        assert_eq!(
            json_depth(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
            200
        );
    }

    #[test]
    fn names() {
        assert!(check_name("emails.send:v2-high_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name("ünïcode").is_err());
        assert!(check_name(&"a".repeat(128)).is_ok());
        assert!(check_name(&"a".repeat(129)).is_err());
    }
}
