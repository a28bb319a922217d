//! Workers as the server knows them: when one reads `online` or `offline`, when it is
//! forgotten, and how two sightings of one worker (by two nodes, or by a node and the
//! store) combine into one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A worker reads `offline` once unseen (no lease, ack or heartbeat) for this long.
pub const WORKER_OFFLINE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// A worker unseen for this long is forgotten.
pub const WORKER_FORGOTTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Whether a worker is heard from (`GET /v1/workers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkerState {
    /// Seen within [`WORKER_OFFLINE_AFTER`].
    Online,
    /// Not seen for longer.
    Offline,
}

impl WorkerState {
    /// The state of a worker last seen at `last_seen`, at `now`.
    pub fn of(last_seen: Timestamp, now: Timestamp) -> WorkerState {
        let quiet = now.duration_since(last_seen);
        if quiet > jiff::SignedDuration::try_from(WORKER_OFFLINE_AFTER).unwrap_or_default() {
            WorkerState::Offline
        } else {
            WorkerState::Online
        }
    }

    /// Whether a worker last seen at `last_seen` is forgotten by `now`.
    pub fn forgotten(last_seen: Timestamp, now: Timestamp) -> bool {
        now.duration_since(last_seen)
            > jiff::SignedDuration::try_from(WORKER_FORGOTTEN_AFTER).unwrap_or_default()
    }
}

/// What is known of one worker: kept in memory by each node and saved to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The name it leases, acks and heartbeats with.
    pub name: String,
    /// The queues its last lease named (empty: no lease seen yet).
    pub queues: Vec<String>,
    /// From its `X-Kairos-Worker-Hostname` header.
    pub hostname: Option<String>,
    /// From its `X-Kairos-Worker-Version` header.
    pub version: Option<String>,
    /// When it was first heard from.
    pub started_at: Timestamp,
    /// When it was last heard from.
    pub last_seen_at: Timestamp,
}

impl Sighting {
    /// Combines another sighting of the same worker into this one: the earliest start,
    /// the latest contact, and what the more recent of the two said (a sighting that did
    /// not hear queues, a hostname or a version keeps the other's). The stores' upserts
    /// apply the same rule in SQL.
    pub fn merge(&mut self, other: Sighting) {
        let newer = other.last_seen_at >= self.last_seen_at;
        self.started_at = self.started_at.min(other.started_at);
        self.last_seen_at = self.last_seen_at.max(other.last_seen_at);
        let take = |mine: &mut Option<String>, theirs: Option<String>| {
            if theirs.is_some() && (newer || mine.is_none()) {
                *mine = theirs;
            }
        };
        take(&mut self.hostname, other.hostname);
        take(&mut self.version, other.version);
        if !other.queues.is_empty() && (newer || self.queues.is_empty()) {
            self.queues = other.queues;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_goes_offline_after_a_minute_and_is_forgotten_after_a_day() {
        let seen: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| seen + jiff::SignedDuration::from_secs(s);
        assert_eq!(WorkerState::of(seen, at(60)), WorkerState::Online);
        assert_eq!(WorkerState::of(seen, at(61)), WorkerState::Offline);
        assert!(!WorkerState::forgotten(seen, at(86_400)));
        assert!(WorkerState::forgotten(seen, at(86_401)));
    }

    #[test]
    fn sightings_merge_to_the_earliest_start_the_latest_contact_and_the_newer_facts() {
        let t: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t + jiff::SignedDuration::from_secs(s);
        let mut a = Sighting {
            name: "w".into(),
            queues: vec!["mail".into()],
            hostname: Some("h1".into()),
            version: None,
            started_at: at(5),
            last_seen_at: at(10),
        };
        // Newer, but it heard only acks: no queues, no hostname; it knows the version.
        a.merge(Sighting {
            queues: vec![],
            hostname: None,
            version: Some("2.0".into()),
            started_at: at(0),
            last_seen_at: at(20),
            ..a.clone()
        });
        assert_eq!((a.started_at, a.last_seen_at), (at(0), at(20)));
        assert_eq!(a.queues, ["mail"]);
        assert_eq!(a.hostname.as_deref(), Some("h1"));
        assert_eq!(a.version.as_deref(), Some("2.0"));
        // Older facts lose to newer ones.
        a.merge(Sighting {
            queues: vec!["old".into()],
            hostname: Some("h0".into()),
            version: Some("1.0".into()),
            started_at: at(1),
            last_seen_at: at(15),
            ..a.clone()
        });
        assert_eq!(a.queues, ["mail"]);
        assert_eq!(a.hostname.as_deref(), Some("h1"));
        assert_eq!(a.version.as_deref(), Some("2.0"));
        assert_eq!((a.started_at, a.last_seen_at), (at(0), at(20)));
    }
}
