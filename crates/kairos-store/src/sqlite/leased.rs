//! The jobs the writer leased, as their rows stand: an ack or a heartbeat of a running
//! job reads it here instead of looking it up by id and decoding its row, which was
//! about two fifths of an ack's work. The writer is the only connection that writes, and
//! every write of a job row passes through [`super::writer::Batch`]: a save or a removal
//! tells this cache of it (an insert need not: a new job is never running). Only
//! committed batches change it, so a rolled back batch leaves it as the rows are. Jobs
//! running before a restart, or past [`MAX_LEASED`], are read from their rows as before.

use super::rows::StoredJob;
use kairos_core::{Job, JobState, RawValue};
use std::collections::HashMap;
use uuid::Uuid;

/// Most running jobs kept (each a few hundred bytes, payload left out).
pub(crate) const MAX_LEASED: usize = 8_192;

/// Running jobs by id, without their payloads (as [`super::rows::Read::WithoutPayload`]
/// reads them).
#[derive(Default)]
pub(crate) struct Leased {
    jobs: HashMap<Uuid, Box<StoredJob>>,
}

/// What a batch did to job rows, for the cache: the row as saved while it runs, `None`
/// once it runs no more (or is gone). Boxed: a batch moves hundreds of them.
pub(crate) type LeasedChanges = HashMap<Uuid, Option<Box<StoredJob>>>;

impl Leased {
    /// The running job `id` as its row stands, if kept.
    pub(crate) fn get(&self, id: &Uuid) -> Option<&StoredJob> {
        self.jobs.get(id).map(|j| &**j)
    }

    /// Takes in a committed batch's changes.
    pub(crate) fn apply(&mut self, changes: LeasedChanges) {
        for (id, row) in changes {
            match row {
                Some(row) if self.jobs.len() < MAX_LEASED || self.jobs.contains_key(&id) => {
                    self.jobs.insert(id, row);
                }
                _ => {
                    self.jobs.remove(&id);
                }
            }
        }
    }
}

/// What the cache learns from a job row just written at `seq`: the row while the job
/// runs, else that it is not to be kept.
pub(crate) fn change(seq: i64, job: &Job) -> Option<Box<StoredJob>> {
    (job.state == JobState::Running).then(|| {
        Box::new(StoredJob {
            seq,
            stored_state: job.state,
            job: without_payload(job),
        })
    })
}

/// `job` as a read without its payload answers it. Every field is listed, so that a
/// field added to jobs is a compile error here rather than a cache that forgets it.
fn without_payload(job: &Job) -> Job {
    let Job {
        id,
        queue,
        kind,
        payload: _,
        priority,
        state,
        attempt,
        max_attempts,
        run_at,
        created_at,
        started_at,
        finished_at,
        unique_key,
        tags,
        errors,
        failures,
        result,
        timeout,
        backoff,
        cancel_requested,
        schedule_id,
        scheduled_for,
        trace,
        lease,
    } = job;
    Job {
        id: *id,
        queue: queue.clone(),
        kind: kind.clone(),
        payload: RawValue::from_string("null".into()).expect("null is JSON"),
        priority: *priority,
        state: *state,
        attempt: *attempt,
        max_attempts: *max_attempts,
        run_at: *run_at,
        created_at: *created_at,
        started_at: *started_at,
        finished_at: *finished_at,
        unique_key: unique_key.clone(),
        tags: tags.clone(),
        errors: errors.clone(),
        failures: *failures,
        result: result.clone(),
        timeout: *timeout,
        backoff: backoff.clone(),
        cancel_requested: *cancel_requested,
        schedule_id: *schedule_id,
        scheduled_for: *scheduled_for,
        trace: trace.clone(),
        lease: lease.clone(),
    }
}
