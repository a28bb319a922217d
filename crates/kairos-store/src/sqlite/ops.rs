//! The write operations of the SQLite backend. Each runs inside a writer batch
//! ([`Batch`]): it loads jobs, asks the core state machine for the transition, and
//! saves the result. All SQL of a write lives here or in [`super::rows`].

use super::read;
use super::rows::{self, Read, StoredJob};
use super::writer::Batch;
use crate::ids::lease_token;
use crate::limits::LimitColumns;
use crate::states::statement;
use crate::{
    Enqueued, Extended, IdempotencyKey, ItemError, RetriedChunk, StoreError, Tick, visible,
};
use crate::{FIRE_CHUNK, MAINTENANCE_CHUNK, StoredAnswer};
use kairos_core::api::{AckReport, Extension, LeaseSpec, LeasedJob};
use kairos_core::event::{EventType, NewEvent};
use kairos_core::machine::Happened;
use kairos_core::rate::Bucket;
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{
    AckEffect, Cutoffs, Job, JobState, Limits, NewJob, Queue, QueueChange, Timestamp,
};
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;
use uuid::Uuid;

statement!(
    UNIQUE_HOLDER = "SELECT seq FROM jobs WHERE queue = ?1 AND unique_key = ?2 \
     AND {is_unfinished}"
);
statement!(
    OTHER_UNIQUE_HOLDER = "SELECT seq FROM jobs WHERE queue = ?1 AND unique_key = ?2 \
     AND {is_unfinished} AND seq <> ?3"
);
statement!(
    /// The next jobs of one queue in lease order, by their keys (for a lease of several
    /// queues, whose candidates are merged before any row is read).
    LEASE_CANDIDATES = "SELECT priority, run_at, seq FROM jobs \
     WHERE state = {available} AND queue = ?1 ORDER BY priority DESC, run_at, seq LIMIT ?2"
);
statement!(
    /// The next jobs of one queue in lease order, whole rows: a lease of one queue reads
    /// its jobs in the index scan itself instead of once more each by key.
    LEASE_ROWS = concat!(
        "SELECT ",
        job_columns!("payload"),
        " FROM jobs WHERE state = {available} AND queue = ?1 \
         ORDER BY priority DESC, run_at, seq LIMIT ?2"
    )
);
statement!(
    DEAD_CHUNK = "SELECT seq FROM jobs WHERE queue = ?1 AND state = {dead} \
     AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4"
);
statement!(
    LAPSED_LEASES = "SELECT seq FROM jobs WHERE state = {running} \
     AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2"
);
statement!(NEXT_RUN_AT = "SELECT min(run_at) FROM jobs WHERE {is_waiting}");
statement!(NEXT_EXPIRY = "SELECT min(lease_expires_at) FROM jobs WHERE state = {running}");
statement!(
    /// An unfinished run of a schedule, for `overlap: skip`.
    UNFINISHED_RUN = "SELECT 1 FROM jobs WHERE schedule_id = ?1 AND {is_unfinished} LIMIT 1"
);

fn load(b: &Batch<'_>, id: Uuid) -> Result<StoredJob, StoreError> {
    b.load(id, Read::Full)?.ok_or(StoreError::NotFound)
}

pub(crate) fn enqueue(
    b: &mut Batch<'_>,
    jobs: Vec<NewJob>,
    idempotency: Option<IdempotencyKey>,
) -> Result<Enqueued, StoreError> {
    if let Some(key) = &idempotency {
        let found = b
            .conn
            .prepare_cached(
                "SELECT fingerprint, created_at, answer FROM idempotency_keys WHERE key = ?1",
            )?
            .query_row([&key.key], |r| {
                Ok(crate::StoredKey {
                    fingerprint: r.get(0)?,
                    created_at: rows::ts(r.get(1)?)?,
                    answer: r.get(2)?,
                })
            })
            .optional()?;
        if let Some(first) = crate::replay(key, found, b.now)? {
            return Ok(first);
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    // Unfinished jobs of each queue with a max_depth, this batch's included.
    let mut depth: HashMap<String, u64> = HashMap::new();
    for spec in jobs {
        if let Some(unique_key) = &spec.unique_key {
            let existing: Option<i64> = b
                .conn
                .prepare_cached(&UNIQUE_HOLDER)?
                .query_row(params![spec.queue, unique_key], |r| r.get(0))
                .optional()?;
            if let Some(seq) = existing {
                out.push((visible(b.load_seq(seq, Read::Full)?.job, b.now), false));
                continue;
            }
        }
        let limits = b.limits(&spec.queue);
        if limits.max_depth.is_some() {
            let held = match depth.get(&spec.queue) {
                Some(n) => *n,
                None => b.count(&spec.queue, &JobState::UNFINISHED)?,
            };
            limits.admit(&spec.queue, held, 1)?;
            depth.insert(spec.queue.clone(), held + 1);
        }
        let id = b.next_id();
        let job = Job::new(spec, id, b.now);
        b.insert(&job)?;
        out.push((job, true));
    }
    if let Some(key) = idempotency {
        let (jobs, created): (Vec<Job>, Vec<bool>) = out.iter().cloned().unzip();
        let answer = serde_json::to_string(&StoredAnswer { created, jobs })?;
        b.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, created_at, answer) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key.key,
                key.fingerprint as i64,
                rows::us(b.now),
                answer
            ])?;
    }
    Ok(Enqueued {
        jobs: out,
        replayed: false,
    })
}

pub(crate) fn lease(b: &mut Batch<'_>, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError> {
    b.promote_due()?;
    // (priority, run_at, seq) of the best candidates of each queue, merged in lease order.
    let mut candidates: Vec<(i32, i64, i64)> = Vec::new();
    // The jobs to lease, in lease order.
    let mut chosen: Vec<StoredJob> = Vec::new();
    // Queues whose limits bound this lease, with their rate buckets refilled to now.
    let mut limited: Vec<(&str, Option<Bucket>)> = Vec::new();
    for queue in &spec.queues {
        if b.is_paused(queue) {
            continue;
        }
        let limits = b.limits(queue);
        let mut take = spec.max;
        if limits.limits_leasing() {
            let running = match limits.concurrency {
                Some(_) => b.count(queue, &[JobState::Running])?,
                None => 0,
            };
            let bucket = limits.rate.map(|r| b.bucket(queue, r));
            match limits.lease_room(running, bucket.as_ref()) {
                Ok(room) => take = take.min(room),
                Err(held) => {
                    b.held(queue, Some(held));
                    continue;
                }
            }
            b.held(queue, None);
            limited.push((queue, bucket));
        }
        if spec.queues.len() == 1 {
            // One queue: its rows come in lease order already, read in the scan.
            let mut stmt = b.conn.prepare_cached(&LEASE_ROWS)?;
            for row in stmt.query_map(params![queue, take], rows::job_from_row)? {
                chosen.push(row?);
            }
            break;
        }
        let mut stmt = b.conn.prepare_cached(&LEASE_CANDIDATES)?;
        let rows = stmt.query_map(params![queue, take], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        for row in rows {
            candidates.push(row?);
        }
    }
    if !candidates.is_empty() {
        // Several queues: the best of all, and only those read whole.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        candidates.truncate(spec.max as usize);
        for (_, _, seq) in candidates {
            chosen.push(b.load_seq(seq, Read::Full)?);
        }
    }
    let mut out = Vec::with_capacity(chosen.len());
    for mut stored in chosen {
        let token = lease_token();
        let happened = stored.job.lease(&spec.worker, token, spec.lease, b.now)?;
        b.save(&stored, happened)?;
        let expires = stored.job.lease.as_ref().map_or(b.now, |l| l.expires_at);
        out.push(LeasedJob {
            job: stored.job,
            lease_token: token,
            lease_expires_at: expires,
        });
    }
    for (queue, bucket) in limited {
        if let Some(mut bucket) = bucket {
            let taken = out.iter().filter(|l| l.job.queue == queue).count();
            bucket.spend(taken as u32);
            b.set_bucket(queue, bucket);
        }
    }
    Ok(out)
}

pub(crate) fn ack(
    b: &mut Batch<'_>,
    reports: Vec<AckReport>,
) -> Result<Vec<Result<JobState, ItemError>>, StoreError> {
    let mut out = Vec::with_capacity(reports.len());
    for report in reports {
        let Some(mut stored) = b.load(report.id, Read::WithoutPayload)? else {
            out.push(Err(ItemError::NotFound));
            continue;
        };
        match stored
            .job
            .ack(report.lease_token, report.outcome, b.now, fastrand::f64())
        {
            Ok(effect) => {
                if let AckEffect::Applied(_) = effect {
                    b.save(&stored, effect.happened())?;
                }
                out.push(Ok(stored.job.effective_state(b.now)));
            }
            Err(e) => out.push(Err(ItemError::Conflict(e))),
        }
    }
    Ok(out)
}

pub(crate) fn heartbeat(
    b: &mut Batch<'_>,
    extensions: Vec<Extension>,
) -> Result<Vec<Result<Extended, ItemError>>, StoreError> {
    let mut out = Vec::with_capacity(extensions.len());
    for ext in extensions {
        let Some(mut stored) = b.load(ext.id, Read::WithoutPayload)? else {
            out.push(Err(ItemError::NotFound));
            continue;
        };
        match stored.job.heartbeat(ext.lease_token, ext.extend, b.now) {
            Ok(until) => {
                b.save(&stored, Happened::NOTHING)?;
                out.push(Ok(Extended {
                    lease_expires_at: until,
                    cancel_requested: stored.job.cancel_requested,
                }));
            }
            Err(e) => out.push(Err(ItemError::Conflict(e))),
        }
    }
    Ok(out)
}

pub(crate) fn cancel(b: &mut Batch<'_>, id: Uuid) -> Result<Job, StoreError> {
    let mut stored = load(b, id)?;
    let happened = stored.job.cancel(b.now)?;
    b.save(&stored, happened)?;
    Ok(visible(stored.job, b.now))
}

/// Whether another unfinished job of the queue holds `job`'s unique key (a finished job
/// brought back to life must not make two unfinished jobs share one).
fn unique_key_taken(b: &Batch<'_>, stored: &StoredJob) -> Result<bool, StoreError> {
    let Some(key) = stored.job.unique_key_to_reclaim() else {
        return Ok(false);
    };
    let holder: Option<i64> = b
        .conn
        .prepare_cached(&OTHER_UNIQUE_HOLDER)?
        .query_row(params![stored.job.queue, key, stored.seq], |r| r.get(0))
        .optional()?;
    Ok(holder.is_some())
}

pub(crate) fn retry(b: &mut Batch<'_>, id: Uuid) -> Result<Job, StoreError> {
    let mut stored = load(b, id)?;
    if unique_key_taken(b, &stored)? {
        return Err(StoreError::Duplicate(
            "an unfinished job of this queue holds the same unique_key".to_string(),
        ));
    }
    stored.job.promote(b.now);
    let happened = stored.job.retry(b.now)?;
    b.save(&stored, happened)?;
    Ok(stored.job)
}

pub(crate) fn delete(b: &mut Batch<'_>, id: Uuid) -> Result<(), StoreError> {
    let stored = load(b, id)?;
    let happened = stored.job.check_delete()?;
    b.remove(&stored, happened)
}

pub(crate) fn change_queue(
    b: &mut Batch<'_>,
    name: &str,
    change: QueueChange,
) -> Result<Queue, StoreError> {
    let mut queue = read::queue(b.conn, name)?.unwrap_or_else(|| Queue::new(name));
    let was_paused = queue.paused;
    change.apply(&mut queue);
    if let Some(kind) = queue.pause_event(was_paused) {
        b.event(NewEvent::queue(kind, name, b.now));
    }
    let limits = LimitColumns::of(&queue.limits);
    b.conn
        .prepare_cached(
            "INSERT INTO queues (name, paused, created_at, max_depth, concurrency, rate) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET \
             paused = excluded.paused, max_depth = excluded.max_depth, \
             concurrency = excluded.concurrency, rate = excluded.rate",
        )?
        .execute(params![
            name,
            queue.paused,
            rows::us(b.now),
            limits.max_depth,
            limits.concurrency,
            limits.rate
        ])?;
    b.queue_changed(name, queue.paused, queue.limits, change.changes_rate());
    Ok(queue)
}

/// Moves up to `chunk` dead jobs of `queue` with `after < seq <= last` back to available.
pub(crate) fn retry_dead(
    b: &mut Batch<'_>,
    queue: &str,
    after: i64,
    last: i64,
    chunk: i64,
) -> Result<RetriedChunk, StoreError> {
    let seqs: Vec<i64> = b
        .conn
        .prepare_cached(&DEAD_CHUNK)?
        .query_map(params![queue, after, last, chunk], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let next = (seqs.len() as i64 == chunk).then(|| seqs[seqs.len() - 1]);
    let mut retried = 0;
    for seq in seqs {
        let mut stored = b.load_seq(seq, Read::WithoutPayload)?;
        // A dead job whose unique key an unfinished job now holds stays dead.
        if unique_key_taken(b, &stored)? {
            continue;
        }
        let happened = stored.job.retry(b.now)?;
        b.save(&stored, happened)?;
        retried += 1;
    }
    Ok(RetriedChunk { retried, next })
}

pub(crate) fn tick(b: &mut Batch<'_>) -> Result<Tick, StoreError> {
    let promoted = b.promote_due()?;
    let seqs: Vec<i64> = b
        .conn
        .prepare_cached(&LAPSED_LEASES)?
        .query_map(params![rows::us(b.now), MAINTENANCE_CHUNK], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut expired = 0;
    for seq in seqs {
        let mut stored = b.load_seq(seq, Read::WithoutPayload)?;
        if let Ok(happened) = stored.job.expire(b.now, fastrand::f64()) {
            b.save(&stored, happened)?;
            expired += 1;
        }
    }
    let next_run: Option<i64> = b
        .conn
        .prepare_cached(&NEXT_RUN_AT)?
        .query_row([], |r| r.get(0))?;
    let next_expiry: Option<i64> = b
        .conn
        .prepare_cached(&NEXT_EXPIRY)?
        .query_row([], |r| r.get(0))?;
    let fired = fire_schedules(b)?;
    let next_schedule: Option<i64> = b
        .conn
        .prepare_cached("SELECT min(next_due) FROM schedules WHERE next_due IS NOT NULL")?
        .query_row([], |r| r.get(0))?;
    let next_due = [next_run, next_expiry, next_schedule]
        .into_iter()
        .flatten()
        .min()
        .map(rows::ts)
        .transpose()?;
    b.set_next_due(next_due);
    Ok(Tick {
        promoted,
        expired,
        fired,
        next_due,
    })
}

/// Deletes finished jobs past their retention (see [`crate::PRUNABLE`]), finished as the
/// `jobs_finished` index spells it.
pub(crate) static PRUNE_FINISHED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "DELETE FROM jobs WHERE seq IN ({}) RETURNING queue, state",
        crate::prunable('?', &crate::states::render("{is_finished}"))
    )
});

/// Deletes up to `limit` finished jobs past their retention.
pub(crate) fn prune_finished(
    b: &mut Batch<'_>,
    cutoffs: Cutoffs,
    limit: u32,
) -> Result<u64, StoreError> {
    let gone: Vec<(String, u8)> = b
        .conn
        .prepare_cached(&PRUNE_FINISHED)?
        .query_map(
            params![
                rows::us(cutoffs.completed_before),
                rows::us(cutoffs.dead_before),
                limit
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    for (queue, code) in &gone {
        if let Some(state) = JobState::from_code(*code) {
            b.forget(queue, state);
        }
    }
    Ok(gone.len() as u64)
}

pub(crate) fn prune_idempotency_keys(
    b: &mut Batch<'_>,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let n = b
        .conn
        .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
        .execute([rows::us(before)])?;
    Ok(n as u64)
}

/// Saves a whole schedule and tells the timer its next fire time. `next_run_at` is
/// already `None` for an inactive schedule (the core keeps it so), and is what the timer
/// reads.
fn save_schedule(b: &mut Batch<'_>, s: &Schedule) -> Result<(), StoreError> {
    b.conn
        .prepare_cached(
            "INSERT INTO schedules (id, name, next_due, last_run, body) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             next_due = excluded.next_due, last_run = excluded.last_run, body = excluded.body",
        )?
        .execute(params![
            s.id.as_bytes(),
            s.name,
            s.next_run_at.map(rows::us),
            s.last_run_at.map(rows::us),
            serde_json::to_string(s)?
        ])?;
    if let Some(at) = s.next_run_at {
        b.due_at(at);
    }
    Ok(())
}

/// Saves a fired schedule's timing alone (its body holds everything else, unchanged by a
/// fire), and tells the timer its next fire time.
fn save_timing(b: &mut Batch<'_>, s: &Schedule) -> Result<(), StoreError> {
    b.conn
        .prepare_cached("UPDATE schedules SET next_due = ?2, last_run = ?3 WHERE id = ?1")?
        .execute(params![
            s.id.as_bytes(),
            s.next_run_at.map(rows::us),
            s.last_run_at.map(rows::us),
        ])?;
    if let Some(at) = s.next_run_at {
        b.due_at(at);
    }
    Ok(())
}

fn name_taken(b: &Batch<'_>, name: &str, except: Option<Uuid>) -> Result<bool, StoreError> {
    let owner: Option<Vec<u8>> = b
        .conn
        .prepare_cached("SELECT id FROM schedules WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    Ok(owner.is_some_and(|o| except.is_none_or(|e| o != e.as_bytes())))
}

fn duplicate(name: &str) -> StoreError {
    StoreError::Duplicate(format!("a schedule named {name:?} already exists"))
}

pub(crate) fn create_schedule(
    b: &mut Batch<'_>,
    req: ScheduleRequest,
    limits: Limits,
) -> Result<Schedule, StoreError> {
    let id = b.next_id();
    let s = req.validate(id, b.now, &limits)?;
    if name_taken(b, &s.name, None)? {
        return Err(duplicate(&s.name));
    }
    save_schedule(b, &s)?;
    b.event(NewEvent::schedule(EventType::ScheduleCreated, &s, b.now));
    Ok(s)
}

pub(crate) fn update_schedule(
    b: &mut Batch<'_>,
    id: Uuid,
    patch: SchedulePatch,
    limits: Limits,
) -> Result<Schedule, StoreError> {
    let current = read::schedule(b.conn, id)?.ok_or(StoreError::NotFound)?;
    let next = current.patch(patch, b.now, &limits)?;
    if next.name != current.name && name_taken(b, &next.name, Some(id))? {
        return Err(duplicate(&next.name));
    }
    save_schedule(b, &next)?;
    b.event(NewEvent::schedule(EventType::ScheduleUpdated, &next, b.now));
    Ok(next)
}

pub(crate) fn delete_schedule(b: &mut Batch<'_>, id: Uuid) -> Result<(), StoreError> {
    let s = read::schedule(b.conn, id)?.ok_or(StoreError::NotFound)?;
    b.conn
        .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
        .execute([id.as_bytes()])?;
    b.timetables().forget(id);
    b.event(NewEvent::schedule(EventType::ScheduleDeleted, &s, b.now));
    Ok(())
}

/// Makes the run of `s` for `scheduled_for` unless it exists, or the schedule's overlap
/// rule forbids it (`manual`: a trigger, outside the rule). Returns the job when made.
fn make_run(
    b: &mut Batch<'_>,
    s: &Schedule,
    scheduled_for: Timestamp,
    manual: bool,
) -> Result<Option<Job>, StoreError> {
    let exists: Option<i64> = b
        .conn
        .prepare_cached("SELECT 1 FROM jobs WHERE schedule_id = ?1 AND scheduled_for = ?2")?
        .query_row(params![s.id.as_bytes(), rows::us(scheduled_for)], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_some() {
        return Ok(None);
    }
    let admitted = s.admits_run(manual, || -> Result<bool, StoreError> {
        let unfinished: Option<i64> = b
            .conn
            .prepare_cached(&UNFINISHED_RUN)?
            .query_row([s.id.as_bytes()], |r| r.get(0))
            .optional()?;
        Ok(unfinished.is_some())
    })?;
    if !admitted {
        return Ok(None);
    }
    let id = b.next_id();
    let job = Job::new(s.run(scheduled_for), id, b.now);
    b.insert(&job)?;
    Ok(Some(job))
}

/// Fires due schedules (per their misfire and overlap policies), the most overdue first,
/// up to [`FIRE_CHUNK`]. Returns the runs made.
fn fire_schedules(b: &mut Batch<'_>) -> Result<u64, StoreError> {
    static DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT id, {} FROM schedules WHERE next_due IS NOT NULL AND next_due <= ?1 \
             ORDER BY next_due LIMIT ?2",
            read::SCHEDULE_COLUMNS
        )
    });
    let due: Vec<(Uuid, read::ScheduleRow)> = b
        .conn
        .prepare_cached(&DUE)?
        .query_map(params![rows::us(b.now), FIRE_CHUNK], |r| {
            let id: [u8; 16] = r.get(0)?;
            Ok((Uuid::from_bytes(id), read::ScheduleRow::from_row_at(r, 1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut made = 0;
    for (id, row) in due {
        let parsed = b.timetables().parse(id, &row.body)?;
        let mut s = parsed.schedule.clone();
        row.time(&mut s)?;
        let was_active = s.active;
        for slot in s.fire_by(parsed.timetable.as_ref(), b.now, b.up_since) {
            if let Some(run) = make_run(b, &s, slot, false)? {
                made += 1;
                s.record_run(slot);
                b.event(NewEvent::fired(&s, &run, slot, false, b.now));
            }
        }
        if let Some(why) = &s.last_error
            && !s.active
        {
            tracing::warn!(schedule = %s.id, name = %s.name, error = %why, "schedule deactivated");
        }
        if s.active == was_active {
            save_timing(b, &s)?;
        } else {
            // Deactivated (its cron or zone no longer parses): the body says so.
            save_schedule(b, &s)?;
        }
    }
    Ok(made)
}

pub(crate) fn trigger_schedule(b: &mut Batch<'_>, id: Uuid) -> Result<Job, StoreError> {
    let mut s = read::schedule(b.conn, id)?.ok_or(StoreError::NotFound)?;
    // Two triggers in one commit share the batch's clock reading.
    for at in Schedule::trigger_instants(b.now) {
        if let Some(job) = make_run(b, &s, at, true)? {
            s.record_run(at);
            save_schedule(b, &s)?;
            b.event(NewEvent::fired(&s, &job, at, true, b.now));
            return Ok(job);
        }
    }
    Err(crate::triggers_exhausted())
}

/// Saves sightings of workers, merged as `Sighting::merge` says (in SQL, one statement
/// per worker).
pub(crate) fn save_workers(
    b: &mut Batch<'_>,
    workers: &[kairos_core::worker::Sighting],
) -> Result<(), StoreError> {
    let mut upsert = b.conn.prepare_cached(
        "INSERT INTO workers (name, queues, hostname, version, started_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET
           queues = CASE WHEN excluded.queues <> '[]'
               AND (excluded.last_seen_at >= workers.last_seen_at OR workers.queues = '[]')
               THEN excluded.queues ELSE workers.queues END,
           hostname = CASE WHEN excluded.hostname IS NOT NULL
               AND (excluded.last_seen_at >= workers.last_seen_at OR workers.hostname IS NULL)
               THEN excluded.hostname ELSE workers.hostname END,
           version = CASE WHEN excluded.version IS NOT NULL
               AND (excluded.last_seen_at >= workers.last_seen_at OR workers.version IS NULL)
               THEN excluded.version ELSE workers.version END,
           started_at = min(workers.started_at, excluded.started_at),
           last_seen_at = max(workers.last_seen_at, excluded.last_seen_at)",
    )?;
    for w in workers {
        upsert.execute(params![
            w.name,
            serde_json::to_string(&w.queues)?,
            w.hostname,
            w.version,
            rows::us(w.started_at),
            rows::us(w.last_seen_at),
        ])?;
    }
    Ok(())
}

/// Forgets workers unseen since `before`, and all but the `keep` seen last.
pub(crate) fn forget_workers(
    b: &mut Batch<'_>,
    before: Timestamp,
    keep: usize,
) -> Result<u64, StoreError> {
    let n = b
        .conn
        .prepare_cached(
            "DELETE FROM workers WHERE last_seen_at < ?1 OR name NOT IN
               (SELECT name FROM workers ORDER BY last_seen_at DESC LIMIT ?2)",
        )?
        .execute(params![rows::us(before), keep as i64])?;
    Ok(n as u64)
}
