//! The workers this node has heard from. Every lease, ack and heartbeat records its
//! worker here, in memory: no store write is added to those hot paths. What changed is
//! saved to the store at most once every [`SAVE_EVERY`] per worker ([`keep_saved`]), so
//! every node of a cluster lists the same workers and a restart forgets none. A listing
//! merges the saved workers with this node's fresher ones and joins the jobs each holds
//! leased now, read from the store (so `running` is the same through every node).
//! Workers read `offline` after a minute unseen and are forgotten after a day (the rules
//! are `kairos_core::worker`'s, as is how two sightings of one worker merge).
//!
//! Bounded: at most [`MAX_WORKERS`] names are kept (here and in the store); a new one
//! past that pushes out the one unseen longest. Header values are cut to [`MAX_TEXT`]
//! bytes.

use kairos_core::Timestamp;
use kairos_core::api::WorkerInfo;
use kairos_core::worker::{Sighting, WorkerState};
use kairos_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Worker names kept at most.
pub const MAX_WORKERS: usize = 10_000;
/// Longest hostname or version kept, in bytes.
pub const MAX_TEXT: usize = 255;
/// A worker's changes are saved at most this often.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);
/// How often the registry looks for changes to save.
const LOOK_EVERY: Duration = Duration::from_secs(1);

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
    sighting: Sighting,
    /// Changed since it was last saved.
    changed: bool,
    saved_at: Option<Instant>,
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
                .min_by_key(|(_, s)| s.sighting.last_seen_at)
                .map(|(n, _)| n.clone());
            if let Some(n) = stalest {
                workers.remove(&n);
            }
        }
        let seen = workers.entry(name.to_string()).or_insert_with(|| Seen {
            sighting: Sighting {
                name: name.to_string(),
                queues: Vec::new(),
                hostname: None,
                version: None,
                started_at: now,
                last_seen_at: now,
            },
            changed: true,
            saved_at: None,
        });
        let w = &mut seen.sighting;
        w.last_seen_at = w.last_seen_at.max(now);
        if let Some(q) = queues {
            w.queues = q.to_vec();
        }
        if let Some(h) = &caller.hostname {
            w.hostname = Some(cut(h));
        }
        if let Some(v) = &caller.version {
            w.version = Some(cut(v));
        }
        seen.changed = true;
    }

    /// The workers changed since saved whose last save is `every` ago or more (all the
    /// changed ones, with `every` zero), marked saved.
    fn to_save(&self, every: Duration) -> Vec<Sighting> {
        let now = Instant::now();
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .values_mut()
            .filter(|s| s.changed && s.saved_at.is_none_or(|at| now - at >= every))
            .map(|s| {
                s.changed = false;
                s.saved_at = Some(now);
                s.sighting.clone()
            })
            .collect()
    }

    /// A save of these workers failed: they are saved again at the next look.
    fn unsaved(&self, failed: &[Sighting]) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for w in failed {
            if let Some(s) = workers.get_mut(&w.name) {
                s.changed = true;
                s.saved_at = None;
            }
        }
    }

    /// Every worker not forgotten by `now`, from the `saved` ones (every node's) merged
    /// with this node's, most recently seen first, with the jobs it holds (`running`, by
    /// name). Forgets the rest here.
    pub fn list(
        &self,
        saved: Vec<Sighting>,
        running: &HashMap<String, u64>,
        now: Timestamp,
    ) -> Vec<WorkerInfo> {
        let mut all: HashMap<String, Sighting> =
            saved.into_iter().map(|w| (w.name.clone(), w)).collect();
        {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            workers.retain(|_, s| !WorkerState::forgotten(s.sighting.last_seen_at, now));
            for (name, s) in workers.iter() {
                match all.get_mut(name) {
                    Some(w) => w.merge(s.sighting.clone()),
                    None => {
                        all.insert(name.clone(), s.sighting.clone());
                    }
                }
            }
        }
        let mut out: Vec<WorkerInfo> = all
            .into_values()
            .filter(|w| !WorkerState::forgotten(w.last_seen_at, now))
            .map(|w| WorkerInfo {
                running: running.get(&w.name).copied().unwrap_or(0),
                state: WorkerState::of(w.last_seen_at, now),
                name: w.name,
                queues: w.queues,
                hostname: w.hostname,
                version: w.version,
                started_at: w.started_at,
                last_seen_at: w.last_seen_at,
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_seen_at
                .cmp(&a.last_seen_at)
                .then(a.name.cmp(&b.name))
        });
        out.truncate(MAX_WORKERS);
        out
    }
}

/// Saves what changed in `registry` every [`LOOK_EVERY`] (each worker at most every
/// [`SAVE_EVERY`]) until shutdown, then everything still unsaved.
pub(super) async fn keep_saved(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        let due = registry.to_save(if stopping { Duration::ZERO } else { SAVE_EVERY });
        if !due.is_empty() {
            match store.save_workers(due.clone()).await {
                Ok(()) => failing = false,
                Err(e) => {
                    // Once per episode: the store logs its outages already.
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "could not save the workers heard from; trying again");
                    }
                    registry.unsaved(&due);
                }
            }
        }
        if stopping {
            return;
        }
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
        let list = r.list(Vec::new(), &running, at(100));
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
        assert!(
            r.list(Vec::new(), &running, at(86_460))
                .iter()
                .all(|w| w.name != "b")
        );
    }

    #[test]
    fn the_registry_is_bounded() {
        let r = Registry::default();
        for i in 0..MAX_WORKERS + 5 {
            r.saw(&format!("w{i}"), None, &Caller::default(), at(i as i64));
        }
        let list = r.list(Vec::new(), &HashMap::new(), at(MAX_WORKERS as i64 + 5));
        assert_eq!(list.len(), MAX_WORKERS);
        assert!(
            list.iter().all(|w| w.name != "w0"),
            "the stalest went first"
        );
    }

    #[test]
    fn changes_are_saved_at_most_every_few_seconds_and_merged_with_the_saved() {
        let r = Registry::default();
        r.saw("a", Some(&["q".into()]), &Caller::default(), at(0));
        assert_eq!(
            r.to_save(SAVE_EVERY).len(),
            1,
            "a new worker is saved at once"
        );
        r.saw("a", None, &Caller::default(), at(1));
        assert!(r.to_save(SAVE_EVERY).is_empty(), "not again so soon");
        assert_eq!(
            r.to_save(Duration::ZERO).len(),
            1,
            "unless it is the last save"
        );
        assert!(
            r.to_save(Duration::ZERO).is_empty(),
            "nothing changed since"
        );
        r.saw("a", None, &Caller::default(), at(2));
        let failed = r.to_save(Duration::ZERO);
        r.unsaved(&failed);
        assert_eq!(
            r.to_save(SAVE_EVERY).len(),
            1,
            "a failed save is tried again"
        );

        // Another node saved "a" with a later contact, and "z" this node never heard.
        let mut saved = failed[0].clone();
        saved.last_seen_at = at(40);
        saved.started_at = at(-5);
        let z = Sighting {
            name: "z".into(),
            last_seen_at: at(30),
            ..saved.clone()
        };
        let list = r.list(vec![saved, z], &HashMap::new(), at(50));
        let names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["a", "z"]);
        assert_eq!((list[0].started_at, list[0].last_seen_at), (at(-5), at(40)));
        assert_eq!(list[0].queues, ["q"]);
    }
}
