//! The workers this node has heard from. Every lease, ack and heartbeat records its
//! worker here, in memory: no store write is added to those hot paths. A listing joins
//! it with the jobs each worker holds leased now, read from the store (so `running` is
//! the same through every node). Workers read `offline` after a minute unseen and are
//! forgotten after a day (the rules are `kairos_core::api::WorkerState`'s).
//!
//! Bounded: at most [`MAX_WORKERS`] names are kept; a new one past that pushes out the
//! one unseen longest. Header values are cut to [`MAX_TEXT`] bytes.

use kairos_core::Timestamp;
use kairos_core::api::{WorkerInfo, WorkerState};
use std::collections::HashMap;
use std::sync::Mutex;

/// Worker names kept at most.
pub const MAX_WORKERS: usize = 10_000;
/// Longest hostname or version kept, in bytes.
pub const MAX_TEXT: usize = 255;

/// What a worker's request says about it besides its name (from its headers).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `X-Kairos-Worker-Hostname`.
    pub hostname: Option<String>,
    /// `X-Kairos-Worker-Version`.
    pub version: Option<String>,
}

#[derive(Debug)]
struct Seen {
    queues: Vec<String>,
    hostname: Option<String>,
    version: Option<String>,
    started_at: Timestamp,
    last_seen_at: Timestamp,
}

/// The workers heard from, by name.
#[derive(Debug, Default)]
pub struct Registry {
    workers: Mutex<HashMap<String, Seen>>,
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Registry {
    /// `name` was heard from at `now`; a lease also says which `queues` it works.
    pub fn saw(&self, name: &str, queues: Option<&[String]>, caller: &Caller, now: Timestamp) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if !workers.contains_key(name) && workers.len() >= MAX_WORKERS {
            let stalest = workers
                .iter()
                .min_by_key(|(_, s)| s.last_seen_at)
                .map(|(n, _)| n.clone());
            if let Some(n) = stalest {
                workers.remove(&n);
            }
        }
        let seen = workers.entry(name.to_string()).or_insert_with(|| Seen {
            queues: Vec::new(),
            hostname: None,
            version: None,
            started_at: now,
            last_seen_at: now,
        });
        seen.last_seen_at = seen.last_seen_at.max(now);
        if let Some(q) = queues {
            seen.queues = q.to_vec();
        }
        if let Some(h) = &caller.hostname {
            seen.hostname = Some(cut(h));
        }
        if let Some(v) = &caller.version {
            seen.version = Some(cut(v));
        }
    }

    /// Every worker not forgotten by `now`, most recently seen first, with the jobs it
    /// holds (`running`, by name). Forgets the rest.
    pub fn list(&self, running: &HashMap<String, u64>, now: Timestamp) -> Vec<WorkerInfo> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|_, s| !WorkerState::forgotten(s.last_seen_at, now));
        let mut out: Vec<WorkerInfo> = workers
            .iter()
            .map(|(name, s)| WorkerInfo {
                name: name.clone(),
                queues: s.queues.clone(),
                hostname: s.hostname.clone(),
                version: s.version.clone(),
                started_at: s.started_at,
                last_seen_at: s.last_seen_at,
                running: running.get(name).copied().unwrap_or(0),
                state: WorkerState::of(s.last_seen_at, now),
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_seen_at
                .cmp(&a.last_seen_at)
                .then(a.name.cmp(&b.name))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn at(s: i64) -> Timestamp {
        "2030-01-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
    }

    #[test]
    fn workers_are_listed_with_their_state_and_forgotten_after_a_day() {
        let r = Registry::default();
        let caller = Caller {
            hostname: Some("h".repeat(1_000)),
            version: Some("1.2".into()),
        };
        r.saw("a", Some(&["mail".into()]), &caller, at(0));
        r.saw("b", None, &Caller::default(), at(10));
        r.saw("a", None, &Caller::default(), at(50));
        let running = HashMap::from([("a".to_string(), 3)]);
        let list = r.list(&running, at(100));
        assert_eq!(
            list.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a = &list[0];
        assert_eq!(
            (a.started_at, a.last_seen_at, a.running),
            (at(0), at(50), 3)
        );
        assert_eq!(
            a.queues,
            ["mail"],
            "an ack or heartbeat keeps the lease's queues"
        );
        assert_eq!(a.hostname.as_ref().unwrap().len(), MAX_TEXT);
        assert_eq!(a.state, WorkerState::Online);
        assert_eq!(list[1].state, WorkerState::Offline, "90 s unseen");
        assert!(r.list(&running, at(86_460)).iter().all(|w| w.name != "b"));
    }

    #[test]
    fn the_registry_is_bounded() {
        let r = Registry::default();
        for i in 0..MAX_WORKERS + 5 {
            r.saw(&format!("w{i}"), None, &Caller::default(), at(i as i64));
        }
        let list = r.list(&HashMap::new(), at(MAX_WORKERS as i64 + 5));
        assert_eq!(list.len(), MAX_WORKERS);
        assert!(
            list.iter().all(|w| w.name != "w0"),
            "the stalest went first"
        );
    }
}
