//! The one closed table of problem codes. Every refused request is answered with an
//! RFC 9457 problem whose `type` is `urn:kairos:problem:<code>`, and every code has one
//! HTTP status and one title, written down here once. The server's edge maps its errors
//! onto these codes; clients branch on [`ProblemCode`] instead of matching strings.

use std::fmt;
use std::str::FromStr;

/// The prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "urn:kairos:problem:";

/// Every kind of problem the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    /// 400: the body is not JSON.
    MalformedJson,
    /// 400: the HTTP request itself is malformed (request line, header syntax).
    BadRequest,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 413: a payload, result or body over its configured limit.
    TooLarge,
    /// 414: the request target (path and query) is too long.
    UriTooLong,
    /// 422: fields missing, unknown, mistyped or out of range (named in `errors`).
    Validation,
    /// 422: an `Idempotency-Key` first used for a different request.
    IdempotencyKeyReused,
    /// 431: the request's headers are too large or too many.
    HeadersTooLarge,
    /// 401: no bearer token, or one that does not verify (expired, wrongly signed, …).
    Unauthorized,
    /// 403: the token's role or queues do not allow this.
    Forbidden,
    /// 429: this client sent more requests than its rate limit allows; retry later.
    RateLimited,
    /// 404: no such job, queue or schedule.
    NotFound,
    /// 404: no such route.
    NoRoute,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 409: the lease token is not the job's current lease.
    StaleLease,
    /// 409: the lease ran out before this report.
    LeaseExpired,
    /// 409: the lease was already reported with a different outcome.
    AlreadyReported,
    /// 409: the job's state does not allow this.
    WrongState,
    /// 409: something with this name or unique key already exists.
    Duplicate,
    /// 503: too much work is waiting (writes queued, connections open); retry later.
    Overloaded,
    /// 503: the server could not answer within its request timeout.
    Timeout,
    /// 503: the server is shutting down, or not ready.
    Unavailable,
    /// 507: the store's disk is full; nothing was written; retry later.
    StorageFull,
    /// 500: the store failed (I/O, corruption, a bug).
    StorageFailure,
    /// 503: the queue holds its `max_depth` of unfinished jobs (backpressure).
    QueueFull,
}

impl ProblemCode {
    /// Every code, in the order the documentation lists them.
    pub const ALL: [ProblemCode; 25] = [
        ProblemCode::MalformedJson,
        ProblemCode::BadRequest,
        ProblemCode::RequestTimeout,
        ProblemCode::TooLarge,
        ProblemCode::UriTooLong,
        ProblemCode::Validation,
        ProblemCode::IdempotencyKeyReused,
        ProblemCode::HeadersTooLarge,
        ProblemCode::Unauthorized,
        ProblemCode::Forbidden,
        ProblemCode::RateLimited,
        ProblemCode::NotFound,
        ProblemCode::NoRoute,
        ProblemCode::MethodNotAllowed,
        ProblemCode::StaleLease,
        ProblemCode::LeaseExpired,
        ProblemCode::AlreadyReported,
        ProblemCode::WrongState,
        ProblemCode::Duplicate,
        ProblemCode::Overloaded,
        ProblemCode::QueueFull,
        ProblemCode::Timeout,
        ProblemCode::Unavailable,
        ProblemCode::StorageFull,
        ProblemCode::StorageFailure,
    ];

    /// The table: code, HTTP status, title.
    const fn row(self) -> (&'static str, u16, &'static str) {
        match self {
            ProblemCode::MalformedJson => ("malformed-json", 400, "Malformed JSON"),
            ProblemCode::BadRequest => ("bad-request", 400, "Malformed request"),
            ProblemCode::RequestTimeout => ("request-timeout", 408, "Request timeout"),
            ProblemCode::TooLarge => ("too-large", 413, "Payload too large"),
            ProblemCode::UriTooLong => ("uri-too-long", 414, "URI too long"),
            ProblemCode::Validation => ("validation", 422, "Invalid request"),
            ProblemCode::IdempotencyKeyReused => {
                ("idempotency-key-reused", 422, "Idempotency-Key reused")
            }
            ProblemCode::HeadersTooLarge => ("headers-too-large", 431, "Request headers too large"),
            ProblemCode::Unauthorized => ("unauthorized", 401, "Unauthorized"),
            ProblemCode::Forbidden => ("forbidden", 403, "Forbidden"),
            ProblemCode::RateLimited => ("rate-limited", 429, "Too many requests"),
            ProblemCode::NotFound => ("not-found", 404, "Not found"),
            ProblemCode::NoRoute => ("no-route", 404, "Not found"),
            ProblemCode::MethodNotAllowed => ("method-not-allowed", 405, "Method not allowed"),
            ProblemCode::StaleLease => ("stale-lease", 409, "Conflict with the job's state"),
            ProblemCode::LeaseExpired => ("lease-expired", 409, "Conflict with the job's state"),
            ProblemCode::AlreadyReported => {
                ("already-reported", 409, "Conflict with the job's state")
            }
            ProblemCode::WrongState => ("wrong-state", 409, "Conflict with the job's state"),
            ProblemCode::Duplicate => ("duplicate", 409, "Already exists"),
            ProblemCode::Overloaded => ("overloaded", 503, "Overloaded"),
            ProblemCode::QueueFull => ("queue-full", 503, "Queue full"),
            ProblemCode::Timeout => ("timeout", 503, "Request timed out"),
            ProblemCode::Unavailable => ("unavailable", 503, "Service unavailable"),
            ProblemCode::StorageFull => ("storage-full", 507, "Storage full"),
            ProblemCode::StorageFailure => ("storage-failure", 500, "Storage failure"),
        }
    }

    /// The code as written after [`TYPE_PREFIX`], like `stale-lease`.
    pub const fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status every answer with this code has.
    pub const fn status(self) -> u16 {
        self.row().1
    }

    /// The fixed, short summary of the code.
    pub const fn title(self) -> &'static str {
        self.row().2
    }

    /// The problem `type`: `urn:kairos:problem:<code>`.
    pub fn type_uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.as_str())
    }

    /// The code of a problem `type`, if it is one of ours.
    pub fn from_type_uri(uri: &str) -> Option<ProblemCode> {
        uri.strip_prefix(TYPE_PREFIX)?.parse().ok()
    }

    /// Whether the same request may succeed later without change (the client should
    /// retry with backoff, honouring `Retry-After`).
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ProblemCode::Overloaded
                | ProblemCode::QueueFull
                | ProblemCode::RateLimited
                | ProblemCode::Timeout
                | ProblemCode::Unavailable
                | ProblemCode::StorageFull
        )
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProblemCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProblemCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown problem code {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for c in ProblemCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(ProblemCode::from_type_uri(&c.type_uri()), Some(c));
            assert!((400..600).contains(&c.status()));
        }
        assert_eq!(ProblemCode::from_type_uri("urn:other:stale-lease"), None);
        assert_eq!(ProblemCode::from_type_uri("urn:kairos:problem:nope"), None);
    }
}
