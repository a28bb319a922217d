//! Who may do what: the one table of routes and the roles allowed on each ([`RULES`]),
//! and what a caller's token allows ([`Access`]): its role, and the queues it is
//! limited to.
//!
//! Roles: `admin` (everything, queue settings included), `producer` (enqueue, read,
//! cancel, retry and delete jobs; schedules), `worker` (lease, ack, heartbeat; read),
//! `reader` (read only). `/health/*` is always open; `/metrics` takes a token of any role
//! unless the server says it is public.
//!
//! A token's `queues` claim (names, or patterns where `*` matches any run of characters,
//! dots included) limits it on every call that names or touches a queue: naming another
//! queue is 403; a job or schedule of another queue reads as absent (404), so a token
//! never learns what it may not see; listings show only its queues. Acks and heartbeats
//! carry lease tokens, capabilities only a lease (checked) handed out.

use crate::http::problem::ApiError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Jobs and schedules.
    Producer,
    /// The worker protocol, and reads.
    Worker,
    /// Reads.
    Reader,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Producer, Role::Worker, Role::Reader];

    /// The role's name as tokens carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Producer => "producer",
            Role::Worker => "worker",
            Role::Reader => "reader",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("no role {s:?}: admin, producer, worker or reader"))
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Anyone, without a token (health probes).
    Open,
    /// A token of any role, unless the server makes metrics public.
    Metrics,
    /// A token of one of these roles.
    Roles(&'static [Role]),
}

/// Any role: reads.
pub const READ: Allowed =
    Allowed::Roles(&[Role::Admin, Role::Producer, Role::Worker, Role::Reader]);
/// Admins and producers: what changes jobs, schedules and a feature's records.
pub const PRODUCE: Allowed = Allowed::Roles(&[Role::Admin, Role::Producer]);
/// Admins and workers: the worker protocol.
pub const WORK: Allowed = Allowed::Roles(&[Role::Admin, Role::Worker]);
/// Admins only.
pub const ADMIN: Allowed = Allowed::Roles(&[Role::Admin]);

/// One route's rule: its method, its path template and who may call it.
pub type Rule = (&'static str, &'static str, Allowed);

/// Every route (method and path template) and who may call it. A route missing here
/// cannot be served: `http::app` refuses to build with a path that has no rule, and a
/// method without one is answered 405.
pub const RULES: &[Rule] = &[
    ("POST", "/v1/jobs", PRODUCE),
    ("GET", "/v1/jobs", READ),
    ("POST", "/v1/jobs/batch", PRODUCE),
    ("GET", "/v1/jobs/{id}", READ),
    ("DELETE", "/v1/jobs/{id}", PRODUCE),
    ("POST", "/v1/jobs/{id}/cancel", PRODUCE),
    ("POST", "/v1/jobs/{id}/retry", PRODUCE),
    ("POST", "/v1/lease", WORK),
    ("POST", "/v1/ack", WORK),
    ("POST", "/v1/heartbeat", WORK),
    ("GET", "/v1/queues", READ),
    ("GET", "/v1/queues/{name}", READ),
    ("PATCH", "/v1/queues/{name}", ADMIN),
    ("POST", "/v1/queues/{name}/retry-dead", ADMIN),
    ("POST", "/v1/schedules", PRODUCE),
    ("GET", "/v1/schedules", READ),
    ("POST", "/v1/schedules/preview", READ),
    ("GET", "/v1/schedules/{id}", READ),
    ("PATCH", "/v1/schedules/{id}", PRODUCE),
    ("DELETE", "/v1/schedules/{id}", PRODUCE),
    ("POST", "/v1/schedules/{id}/trigger", PRODUCE),
    ("GET", "/v1/events", READ),
    ("GET", "/v1/events/stream", READ),
    ("GET", "/v1/cluster", READ),
    ("GET", "/v1/workers", READ),
    ("GET", "/health/live", Allowed::Open),
    ("GET", "/health/ready", Allowed::Open),
    ("GET", "/health", Allowed::Open),
    ("GET", "/metrics", Allowed::Metrics),
    // The API's description and Swagger UI: nothing in them is a secret.
    ("GET", "/openapi.json", Allowed::Open),
    ("GET", "/docs", Allowed::Open),
    ("GET", "/docs/", Allowed::Open),
    ("GET", "/docs/{*rest}", Allowed::Open),
];

/// The rules a server applies: [`RULES`] and those of the features it serves.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    features: Arc<[Rule]>,
}

impl Rules {
    /// [`RULES`] and `features`' rules.
    pub fn with(features: Vec<Rule>) -> Rules {
        Rules {
            features: features.into(),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Rule> {
        RULES.iter().chain(self.features.iter())
    }

    /// Who may call `method` on the route `path` (a template); `None`: nobody (405).
    /// HEAD is answered like GET.
    pub fn rule(&self, method: &str, path: &str) -> Option<Allowed> {
        let method = if method == "HEAD" { "GET" } else { method };
        self.all()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, a)| *a)
    }

    /// The methods that have a rule on `path`, for an `Allow` header.
    pub fn methods(&self, path: &str) -> Vec<&'static str> {
        self.all()
            .filter(|(_, p, _)| *p == path)
            .map(|(m, _, _)| *m)
            .collect()
    }
}

/// Who may call `method` on the route `path` of [`RULES`] (see [`Rules::rule`]).
pub fn rule(method: &str, path: &str) -> Option<Allowed> {
    Rules::default().rule(method, path)
}

/// What the caller of a request may do (a request extension, set by the auth layer).
#[derive(Debug, Clone)]
pub struct Access {
    /// The token's subject; `None` without auth.
    pub subject: Option<Arc<str>>,
    /// The token's role; `None` without auth (everything is allowed).
    pub role: Option<Role>,
    /// The queues the token is limited to (patterns); `None`: every queue.
    pub queues: Option<Arc<[String]>>,
}

impl Access {
    /// No auth configured: everything is allowed.
    pub fn everything() -> Access {
        Access {
            subject: None,
            role: None,
            queues: None,
        }
    }

    /// Whether the caller may see and use `queue`.
    pub fn sees(&self, queue: &str) -> bool {
        match &self.queues {
            None => true,
            Some(patterns) => patterns.iter().any(|p| matches(p, queue)),
        }
    }

    /// Whether the caller may see `worker`: one that leased from a queue it sees.
    pub fn sees_worker(&self, worker: &kairos_core::api::WorkerInfo) -> bool {
        !self.is_limited() || worker.queues.iter().any(|q| self.sees(q))
    }

    /// Whether the caller is limited to some queues.
    pub fn is_limited(&self) -> bool {
        self.queues.is_some()
    }

    /// `queue`, named by the caller in `field`, is allowed; else 403 naming the field.
    pub fn check(&self, field: &str, queue: &str) -> Result<(), ApiError> {
        if self.sees(queue) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{field}: this token is not allowed queue {queue:?}"
            )))
        }
    }

    /// A listing over every queue, narrowed by the optional `queue` filter (named
    /// `field`): a token limited to some queues must name one it may see (403 else).
    pub fn check_listing(&self, field: &str, queue: Option<&str>) -> Result<(), ApiError> {
        if !self.is_limited() {
            return Ok(());
        }
        match queue {
            Some(q) => self.check(field, q),
            None => Err(ApiError::Forbidden(format!(
                "{field}: this token is limited to some queues; name one"
            ))),
        }
    }

    /// A resource of `queue` found by id reads as absent (404) unless the caller may
    /// see it.
    pub fn reveal(&self, queue: &str) -> Result<(), ApiError> {
        if self.sees(queue) {
            Ok(())
        } else {
            Err(ApiError::NotFound)
        }
    }

    /// Idempotency keys are the caller's own: two subjects never share one.
    pub fn key_scope(&self, scope: &str) -> String {
        match &self.subject {
            Some(s) => format!("{scope}:{s}"),
            None => scope.to_string(),
        }
    }
}

/// Whether `queue` matches `pattern`, where `*` matches any run of characters (none
/// included) and everything else itself.
pub fn matches(pattern: &str, queue: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = queue.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole name
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_runs_of_any_characters() {
        assert!(matches("email", "email"));
        assert!(!matches("email", "emails"));
        assert!(matches("email.*", "email.eu.west"));
        assert!(matches("email.*", "email."));
        assert!(!matches("email.*", "email"));
        assert!(matches("*", "anything"));
        assert!(matches("*.high", "billing.high"));
        assert!(!matches("*.high", "billing.low"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c"));
        assert!(!matches("ab*ba", "aba"), "the ends may not overlap");
    }

    #[test]
    fn every_rule_names_a_known_method_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, p, _) in RULES {
            assert!(["GET", "POST", "PATCH", "DELETE"].contains(m), "{m}");
            assert!(seen.insert((m, p)), "{m} {p} twice");
        }
        assert_eq!(rule("HEAD", "/v1/jobs"), rule("GET", "/v1/jobs"));
        assert_eq!(rule("PUT", "/v1/jobs"), None);
    }
}
