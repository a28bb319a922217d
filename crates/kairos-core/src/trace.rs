//! W3C trace context (`traceparent`, `tracestate`) carried by a job from the producer
//! that enqueued it to the worker that runs it, so one trace runs through Kairos.
//!
//! A producer's headers are kept with the job when `traceparent` is well formed (version
//! `00`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case, ids not all
//! zero); a malformed one is ignored, as the W3C recommendation says, and `tracestate`
//! goes with it (kept when at most [`MAX_TRACESTATE`] visible ASCII bytes).

use serde::{Deserialize, Serialize};

/// Longest `tracestate` kept, in bytes (the W3C limit is 32 members of 256 bytes; 512 is
/// what its recommendation says to propagate at least).
pub const MAX_TRACESTATE: usize = 512;

/// The trace context of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trace {
    /// The producer's `traceparent`.
    pub traceparent: String,
    /// The producer's `tracestate`, if it sent one.
    pub tracestate: Option<String>,
}

fn hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `v` is a well-formed version-00 `traceparent`.
pub fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let [version, trace_id, parent_id, flags] = parts[..] else {
        return false;
    };
    version == "00"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0')
}

impl Trace {
    /// The context of a request's headers; `None` without a well-formed `traceparent`.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Trace> {
        let traceparent = traceparent?.trim();
        if !valid_traceparent(traceparent) {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_TRACESTATE
                    && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            })
            .map(String::from);
        Some(Trace {
            traceparent: traceparent.to_string(),
            tracestate,
        })
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// A `traceparent` for work done on behalf of this one: the same trace and flags, a
    /// new parent id (`span_id`, 16 hex digits, not all zero; else this one's is kept).
    pub fn child(&self, span_id: &str) -> String {
        let span = if hex(span_id, 16) && span_id.bytes().any(|b| b != b'0') {
            span_id
        } else {
            &self.traceparent[36..52]
        };
        format!(
            "00-{}-{}-{}",
            self.trace_id(),
            span,
            &self.traceparent[53..55]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn well_formed_contexts_are_kept_and_the_rest_ignored() {
        let t = Trace::from_headers(Some(GOOD), Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(Trace::from_headers(Some(bad), Some("a=b")), None, "{bad}");
        }
        let long = "x".repeat(MAX_TRACESTATE + 1);
        assert_eq!(
            Trace::from_headers(Some(GOOD), Some(&long))
                .unwrap()
                .tracestate,
            None
        );
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags() {
        let t = Trace::from_headers(Some(GOOD), None).unwrap();
        assert_eq!(
            t.child("1111111111111111"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        );
        assert_eq!(t.child("nothex"), GOOD);
    }
}
